//! Split roles: a `gateway` process in front of a `grpc` process, and what the
//! gateway does while its upstream is down.

use std::time::Duration;

use entitlement_gateway::{Listeners, auth::SigningKey, config::Role};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::helpers::{COLLECTION, SEED_REQUEST, TestApp, assert_graph_error, serve_args};

struct Process {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Process {
    async fn start(
        role: Role,
        data_dir: &std::path::Path,
        upstreams: &[String],
        listeners: Listeners,
    ) -> Self {
        let stop = CancellationToken::new();
        let config = serve_args(role, data_dir, upstreams);
        let task = tokio::spawn(entitlement_gateway::run(
            config,
            listeners,
            stop.clone().cancelled_owned(),
        ));
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// A ReadWrite.All token for the service whose data dir is `dir`.
fn writer_token(dir: &std::path::Path) -> String {
    let key = SigningKey::load_or_create(dir).unwrap();
    let scopes = ["EntitlementManagement.ReadWrite.All".to_owned()];
    key.issue("t", &scopes, Duration::from_secs(600)).unwrap()
}

#[tokio::test]
async fn a_gateway_answers_503_while_its_upstream_is_down_and_recovers_by_itself() {
    let grpc_dir = tempfile::tempdir().unwrap();
    let gateway_dir = tempfile::tempdir().unwrap();
    let token = writer_token(grpc_dir.path());

    // The upstream's address, with nothing listening on it yet.
    let upstream_addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collection = format!("http://{}/beta{COLLECTION}", http.local_addr().unwrap());
    let gateway = Process::start(
        Role::Gateway,
        gateway_dir.path(),
        &[format!("http://{upstream_addr}")],
        Listeners {
            http: Some(http),
            grpc: None,
            admin: None,
        },
    )
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let create = || {
        client
            .post(&collection)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(SEED_REQUEST)
            .send()
    };

    let response = create().await.unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    assert_graph_error(response, 503, "ServiceUnavailable").await;
    // The failed call took the only upstream out of rotation: the gateway says it
    // is not ready (it is still alive).
    let base = collection.split("/beta").next().unwrap().to_owned();
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_graph_error(ready, 503, "ServiceUnavailable").await;
    let alive = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(alive.status().as_u16(), 200);

    // The upstream comes up on that address; the gateway is not restarted.
    let grpc = Process::start(
        Role::Grpc,
        grpc_dir.path(),
        &[],
        Listeners {
            http: None,
            grpc: Some(TcpListener::bind(upstream_addr).await.unwrap()),
            admin: None,
        },
    )
    .await;
    let response = create().await.unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let created: serde_json::Value = response.json().await.unwrap();
    let read = client
        .get(format!("{collection}/{}", created["id"].as_str().unwrap()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 200);

    // And down again: 503 again, not a hang.
    grpc.stop().await;
    assert_graph_error(create().await.unwrap(), 503, "ServiceUnavailable").await;
    gateway.stop().await;
}

#[tokio::test]
async fn a_gateway_needs_an_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = serve_args(Role::Gateway, dir.path(), &[]);
    let error = entitlement_gateway::run(
        config,
        Listeners {
            http: Some(http),
            grpc: None,
            admin: None,
        },
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("--upstream"), "{error}");
    assert!(
        !dir.path().join("signing-key").exists(),
        "a gateway keeps no key"
    );
}

#[tokio::test]
async fn oversized_headers_are_431() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .get(app.url(&format!("/beta{COLLECTION}")))
        .bearer_auth(&app.token)
        .header("x-padding", "x".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_graph_error(response, 431, "RequestHeaderFieldsTooLarge").await;
}

#[tokio::test]
async fn a_dead_upstream_among_live_ones_fails_no_request() {
    let grpc_dir = tempfile::tempdir().unwrap();
    let gateway_dir = tempfile::tempdir().unwrap();
    let token = writer_token(grpc_dir.path());

    let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live_addr = live.local_addr().unwrap();
    let dead_addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let grpc = Process::start(
        Role::Grpc,
        grpc_dir.path(),
        &[],
        Listeners {
            http: None,
            grpc: Some(live),
            admin: None,
        },
    )
    .await;
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collection = format!("http://{}/beta{COLLECTION}", http.local_addr().unwrap());
    let gateway = Process::start(
        Role::Gateway,
        gateway_dir.path(),
        &[format!("http://{dead_addr}"), format!("http://{live_addr}")],
        Listeners {
            http: Some(http),
            grpc: None,
            admin: None,
        },
    )
    .await;

    let client = reqwest::Client::new();
    for _ in 0..20 {
        let response = client
            .post(&collection)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(SEED_REQUEST)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }
    gateway.stop().await;
    grpc.stop().await;
}
