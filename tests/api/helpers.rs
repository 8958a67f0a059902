//! `TestApp`: the real servers on 127.0.0.1:0 with a temp data dir, and the clients
//! a caller would use (reqwest for HTTP, the generated tonic client for gRPC).

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use entitlement_gateway::{
    Listeners,
    auth::{READ_ALL, READ_WRITE_ALL, SigningKey},
    config::{LogFormat, OptionalAddr, Role, ServeArgs, Switch},
    proto::v1::entitlement_management_client::EntitlementManagementClient,
};
use serde_json::Value;
use tempfile::TempDir;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::Child,
    sync::mpsc,
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

#[path = "../common/postgres.rs"]
mod postgres_db;

use postgres_db::TestDatabase;

pub const COLLECTION: &str = "/identityGovernance/entitlementManagement/accessPackageAssignments";

/// The real binary, for tests that run it as a process.
pub const BINARY: &str = env!("CARGO_BIN_EXE_entitlement-gateway");

/// A token from the binary's `token` command, signed with `data_dir`'s key.
pub async fn mint_with_binary(data_dir: &std::path::Path) -> String {
    let output = tokio::process::Command::new(BINARY)
        .args(["token", "--data-dir"])
        .arg(data_dir)
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The seed page's request body, exactly as documented.
pub const SEED_REQUEST: &str = include_str!("../fixtures/seed/request.json");

/// The seed page's response body, exactly as documented.
pub const SEED_RESPONSE: &str = include_str!("../fixtures/seed/response.json");

pub struct TestApp {
    pub http_base: String,
    pub grpc_base: String,
    /// The admin listener: /metrics, /healthz, /readyz.
    pub admin_base: String,
    pub data_dir: Arc<TempDir>,
    pub http: reqwest::Client,
    /// A token with EntitlementManagement.ReadWrite.All.
    pub token: String,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    /// The PostgreSQL database, when not SQLite in the data dir; dropped with the
    /// app (last: after the app's task is let go).
    database: Option<TestDatabase>,
}

impl TestApp {
    /// Starts the app on a new data dir (and a new database, see [`new_database`]).
    pub async fn spawn() -> Self {
        Self::spawn_with(Arc::new(tempfile::tempdir().expect("temp dir")), |_| {}).await
    }

    /// Stops the app and starts it again on the same data dir and database.
    pub async fn restart(mut self) -> Self {
        let database = self.database.take();
        let data_dir = self.stop().await;
        Self::start(data_dir, database, |_| {}).await
    }

    /// Starts the app on `data_dir` with settings changed by `configure`.
    pub async fn spawn_with(
        data_dir: Arc<TempDir>,
        configure: impl FnOnce(&mut ServeArgs),
    ) -> Self {
        Self::start(data_dir, new_database().await, configure).await
    }

    async fn start(
        data_dir: Arc<TempDir>,
        database: Option<TestDatabase>,
        configure: impl FnOnce(&mut ServeArgs),
    ) -> Self {
        let mut config = serve_args(Role::All, data_dir.path(), &[]);
        config.database_url = database.as_ref().map(|d| d.url().to_owned());
        configure(&mut config);
        let listeners = Listeners {
            http: Some(entitlement_gateway::listen(config.http_addr).unwrap()),
            grpc: Some(entitlement_gateway::listen(config.grpc_addr).unwrap()),
            admin: Some(entitlement_gateway::listen(([127, 0, 0, 1], 0).into()).unwrap()),
        };
        let admin_base = format!(
            "http://{}",
            listeners.admin.as_ref().unwrap().local_addr().unwrap()
        );
        let http_base = format!(
            "http://{}",
            listeners.http.as_ref().unwrap().local_addr().unwrap()
        );
        let grpc_base = format!(
            "http://{}",
            listeners.grpc.as_ref().unwrap().local_addr().unwrap()
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(entitlement_gateway::run(
            config,
            listeners,
            stop.clone().cancelled_owned(),
        ));
        let mut app = Self {
            http_base,
            grpc_base,
            admin_base,
            data_dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            token: String::new(),
            stop,
            task,
            database,
        };
        app.token = app.mint(&[READ_WRITE_ALL]);
        app
    }

    /// A token signed with this app's key, granting `scopes`.
    pub fn mint(&self, scopes: &[&str]) -> String {
        self.mint_as("test", scopes)
    }

    /// A token of `subject` (its `sub` and `oid`) signed with this app's key,
    /// granting `scopes`.
    pub fn mint_as(&self, subject: &str, scopes: &[&str]) -> String {
        let key = SigningKey::load_or_create(self.data_dir.path()).unwrap();
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        key.issue(subject, &scopes, Duration::from_secs(600))
            .unwrap()
    }

    pub fn read_token(&self) -> String {
        self.mint(&[READ_ALL])
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http_base)
    }

    /// POSTs `body` as JSON to `{prefix}/…/accessPackageAssignments` with the token.
    pub async fn post_assignment(
        &self,
        prefix: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.post_assignment_with(&self.http, prefix, body).await
    }

    /// [`Self::post_assignment`] with the client `http`.
    pub async fn post_assignment_with(
        &self,
        http: &reqwest::Client,
        prefix: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        http.post(self.url(&format!("{prefix}{COLLECTION}")))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    /// Creates the seed's assignment through `{prefix}` and returns the 201's body.
    pub async fn create_seed(&self, prefix: &str) -> Value {
        let response = self.post_assignment(prefix, SEED_REQUEST).await;
        assert_eq!(response.status().as_u16(), 201);
        response.json().await.expect("a JSON body")
    }

    /// GETs one assignment with the token.
    pub async fn get_assignment(&self, prefix: &str, id: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("{prefix}{COLLECTION}/{id}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET")
    }

    /// A gRPC client on a new connection.
    pub async fn grpc(&self) -> EntitlementManagementClient<Channel> {
        EntitlementManagementClient::connect(self.grpc_base.clone())
            .await
            .expect("gRPC connect")
    }

    /// Stops the app (as SIGTERM would) and waits for it; returns its data dir.
    pub async fn stop(self) -> Arc<TempDir> {
        self.stop.cancel();
        self.task.await.expect("app task").expect("app ran cleanly");
        self.data_dir
    }
}

/// The database of a new app: SQLite in its data dir (`None`), unless
/// `ENTITLEMENT_GATEWAY_TEST_BACKEND=postgres`, which runs every app on a new
/// PostgreSQL database (`eg_test_*`) made with the admin URL
/// `ENTITLEMENT_GATEWAY_TEST_POSTGRES` (default
/// `postgres://postgres@127.0.0.1:5432/postgres`), and dropped when the app is
/// (see `common/postgres.rs`). An unreachable server fails the test; with
/// `ENTITLEMENT_GATEWAY_SKIP_POSTGRES=1` the app runs on SQLite instead, and the
/// test says on stderr that it did not run on PostgreSQL.
pub async fn new_database() -> Option<TestDatabase> {
    if std::env::var("ENTITLEMENT_GATEWAY_TEST_BACKEND").as_deref() != Ok("postgres") {
        return None;
    }
    if postgres_db::opted_out() {
        postgres_db::report_not_run(" on PostgreSQL", "its app runs on SQLite instead");
        return None;
    }
    Some(TestDatabase::create().await)
}

/// The settings of a process with this role, on 127.0.0.1 port 0.
pub fn serve_args(role: Role, data_dir: &std::path::Path, upstreams: &[String]) -> ServeArgs {
    ServeArgs {
        role,
        upstreams: upstreams.to_vec(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        database_url: None,
        request_timeout_secs: 30,
        shutdown_timeout_secs: 10,
        keepalive_secs: 20,
        oidc_issuer: None,
        oidc_audiences: Vec::new(),
        oidc_jwks_url: None,
        oidc_jwks_file: None,
        oidc_jwks_refresh_secs: 3600,
        clock_skew_secs: 60,
        admin_addr: OptionalAddr(None),
        log_format: LogFormat::Text,
        access_log: Switch::On,
        otlp_endpoint: None,
        cors_origins: Vec::new(),
        tls_cert: None,
        tls_key: None,
        grpc_tls_cert: None,
        grpc_tls_key: None,
        tls_client_ca: None,
        upstream_ca: None,
        upstream_client_cert: None,
        upstream_client_key: None,
        public_url: None,
        trusted_proxies: Vec::new(),
    }
}

/// A gRPC request with the bearer token in its metadata.
pub fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Asserts that `response` is a Graph error with this status and code, whose
/// innerError ids match the headers; returns the message.
pub async fn assert_graph_error(response: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(response.status().as_u16(), status, "status");
    let request_id = response.headers()["request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let client_request_id = response.headers()["client-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "content-type"
    );
    let body: Value = response.json().await.expect("a JSON error body");
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert_eq!(error["innerError"]["request-id"], request_id.as_str());
    assert_eq!(
        error["innerError"]["client-request-id"],
        client_request_id.as_str()
    );
    let date = error["innerError"]["date"].as_str().unwrap();
    assert_eq!(date.len(), 19, "{date}");
    let message = error["message"].as_str().expect("a message").to_owned();
    assert!(!message.is_empty());
    message
}

/// The body as JSON with `id` removed, and the id.
pub fn split_id(mut body: Value) -> (Value, String) {
    let id = body
        .as_object_mut()
        .unwrap()
        .remove("id")
        .and_then(|id| id.as_str().map(str::to_owned))
        .expect("an id");
    (body, id)
}

/// Whether `id` is a lower-case hyphenated GUID.
pub fn is_lower_guid(id: &str) -> bool {
    id.len() == 36
        && id.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}

/// The binary, started with `serve` and JSON logs; its log lines arrive on `lines`.
pub struct BinaryProcess {
    pub child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
    pub http_base: String,
    pub grpc_addr: Option<String>,
    pub admin_base: String,
}

impl BinaryProcess {
    pub async fn start(data_dir: &Path, args: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(BINARY)
            .arg("serve")
            .args(["--admin-addr", "127.0.0.1:0", "--log-format", "json"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        let mut reader = BufReader::new(child.stdout.take().unwrap()).lines();
        let (send, mut lines) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                kept.lock().unwrap().push(line.clone());
                let _ = send.send(line);
            }
        });
        let listening = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let line = lines
                    .recv()
                    .await
                    .expect("the binary exited before listening");
                let json: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("a JSON log line ({e}): {line}"));
                if json["message"] == "listening" {
                    return json;
                }
            }
        })
        .await
        .expect("a listening line within 30 s");
        let addr = |name: &str| listening[name].as_str().map(str::to_owned);
        Self {
            child,
            lines,
            log,
            reader,
            http_base: addr("http.addr").map_or_else(String::new, |a| format!("http://{a}")),
            grpc_addr: addr("grpc.addr"),
            admin_base: format!("http://{}", addr("admin.addr").expect("admin.addr")),
        }
    }

    /// Waits for the first log line (as JSON) that `wanted` accepts.
    pub async fn line(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let line = self.lines.recv().await.expect("the log ended");
                let json: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("a JSON log line ({e}): {line}"));
                if wanted(&json) {
                    return json;
                }
            }
        })
        .await
        .expect("the log line within 20 s")
    }

    /// Stops it with SIGTERM and waits for it to exit.
    pub async fn terminate(mut self) -> Vec<String> {
        let pid = self.child.id().unwrap().to_string();
        let status = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits within 30 s")
            .unwrap();
        assert!(exit.success(), "{exit:?}");
        // Everything it wrote, to the end.
        self.reader.await.unwrap();
        self.log.lock().unwrap().clone()
    }

    /// The collection's URL on its HTTP face.
    pub fn collection(&self) -> String {
        format!("{}/beta{COLLECTION}", self.http_base)
    }
}
