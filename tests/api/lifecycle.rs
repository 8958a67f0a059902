//! The real binary: it starts on port 0 and says where, mints tokens, stops cleanly
//! on SIGTERM, and loses nothing it acknowledged when killed with SIGKILL.

use std::{
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

use crate::helpers::{BINARY, COLLECTION, SEED_REQUEST, mint_with_binary as mint};

/// The binary, started with `serve` on port 0.
struct Process {
    child: Child,
    http_base: String,
}

impl Process {
    /// Starts it and waits for the log line that names the bound addresses.
    async fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(BINARY)
            .args([
                "serve",
                "--http-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let listening = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains(" listening ") {
                    return line;
                }
            }
            panic!("the binary exited before listening");
        })
        .await
        .expect("a listening line within 30 s");
        // Keep draining the log so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let field = |name: &str| {
            listening
                .split_whitespace()
                .find_map(|word| word.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} in {listening}"))
                .to_owned()
        };
        assert!(field("grpc.addr=").starts_with("127.0.0.1:"));
        Self {
            child,
            http_base: format!("http://{}", field("http.addr=")),
        }
    }

    fn collection(&self) -> String {
        format!("{}/beta{COLLECTION}", self.http_base)
    }
}

#[tokio::test]
async fn the_binary_starts_on_port_zero_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = Process::start(dir.path()).await;
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
    let mut process = Process::start(dir.path()).await;
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
    let process = Process::start(dir.path()).await;
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
