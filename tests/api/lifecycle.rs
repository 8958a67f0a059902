//! The real binary: it starts on port 0 and says where, mints tokens, stops cleanly
//! on SIGTERM, loses nothing it acknowledged when killed with SIGKILL, and prints
//! shell completions.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tokio::process::Command;

use crate::helpers::{BINARY, BinaryProcess, SEED_REQUEST, mint_with_binary as mint};

/// The all-in-one binary on free ports.
async fn start(data_dir: &Path) -> BinaryProcess {
    BinaryProcess::start(
        data_dir,
        &["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"],
    )
    .await
}

#[tokio::test]
async fn the_binary_starts_on_port_zero_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = start(dir.path()).await;
    let token = mint(dir.path()).await;
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("signing-key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);

    let http = reqwest::Client::new();
    let response = http
        .post(process.collection())
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(SEED_REQUEST)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);

    let pid = process.child.id().unwrap().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(20), process.child.wait())
        .await
        .expect("exits within the drain bound")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = start(dir.path()).await;
    let token = mint(dir.path()).await;
    let http = reqwest::Client::new();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let enough = Arc::new(tokio::sync::Notify::new());

    let mut clients = Vec::new();
    for _ in 0..16 {
        let (http, url, token) = (http.clone(), process.collection(), token.clone());
        let (acknowledged, enough) = (acknowledged.clone(), enough.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let sent = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(SEED_REQUEST)
                    .send()
                    .await;
                // After the kill, requests fail: that is the end of this client.
                let Ok(response) = sent else { return };
                if response.status().as_u16() != 201 {
                    return;
                }
                let Ok(body) = response.json::<Value>().await else {
                    return;
                };
                let mut ids = acknowledged.lock().unwrap();
                ids.push(body["id"].as_str().unwrap().to_owned());
                if ids.len() == 200 {
                    enough.notify_one();
                }
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(120), enough.notified())
        .await
        .expect("200 creates within 2 minutes");
    // SIGKILL while the 16 clients are still sending.
    process.child.start_kill().unwrap();
    process.child.wait().await.unwrap();
    for client in clients {
        client.await.unwrap();
    }

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 200);
    let process = start(dir.path()).await;
    for id in &acknowledged {
        let response = http
            .get(format!("{}/{id}", process.collection()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            200,
            "acknowledged {id} was lost"
        );
    }
}

/// A burst of new connections waits in the kernel's accept queue, on every listener,
/// until the server takes it. With the 128 places `TcpListener::bind` asks for, 256
/// clients connecting at once overflowed it: the attempts beyond were dropped, and
/// each of those clients waited a second before trying again. The server is stopped
/// (SIGSTOP) while the burst arrives, so that it accepts none of it.
#[tokio::test]
async fn a_burst_of_connections_waits_in_the_accept_queue() {
    let dir = tempfile::tempdir().unwrap();
    let process = start(dir.path()).await;
    let pid = process.child.id().unwrap().to_string();
    let addresses: Vec<String> = [
        &process.http_base,
        process.grpc_addr.as_ref().unwrap(),
        &process.admin_base,
    ]
    .iter()
    .map(|a| a.trim_start_matches("http://").to_owned())
    .collect();
    // No server gets more places than the kernel allows (net.core.somaxconn).
    let most = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .map_or(4096, |text| text.trim().parse().unwrap());
    let burst: usize = most.min(600);
    assert!(
        burst > 129,
        "net.core.somaxconn {most} is too small to test"
    );

    let signal = |name: &'static str| {
        let pid = pid.clone();
        async move {
            let status = Command::new("kill")
                .args([name, &pid])
                .status()
                .await
                .unwrap();
            assert!(status.success(), "kill {name}");
        }
    };
    signal("-STOP").await;
    let connected = tokio::task::spawn_blocking(move || {
        for address in &addresses {
            let address = address.parse().unwrap();
            // Each connection completes when its handshake is queued; one that is
            // dropped would still be waiting for its retry when this gives up.
            let connections = (0..burst)
                .map(|i| {
                    std::net::TcpStream::connect_timeout(&address, Duration::from_secs(3))
                        .map_err(|e| format!("connection {} of {burst} to {address}: {e}", i + 1))
                })
                .collect::<Result<Vec<_>, _>>()?;
            drop(connections);
        }
        Ok::<_, String>(())
    })
    .await
    .unwrap();
    signal("-CONT").await;
    connected.unwrap();
    process.terminate().await;
}

#[tokio::test]
async fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _entitlement__gateway"),
        ("zsh", "#compdef entitlement-gateway"),
        ("fish", "complete -c entitlement-gateway"),
    ] {
        let output = Command::new(BINARY)
            .args(["completions", shell])
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {marker}");
        // The subcommands and a flag of serve are offered.
        for word in ["serve", "token", "upstream", "data-dir"] {
            assert!(script.contains(word), "{shell}: {word}");
        }
    }
    let output = Command::new(BINARY)
        .args(["completions", "tcsh"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("tcsh"));
}
