//! The processes under test: the product binary (all-in-one, or split into a gateway
//! in front of a gRPC service), the ceiling this benchmark serves as a child of
//! itself, and the helpers that start, stop and query them.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::load::{GRPC_CHANNELS, Http, Target, bearer, grpc_channels};

pub const COLLECTION: &str =
    "/beta/identityGovernance/entitlementManagement/accessPackageAssignments";
const BINARY: &str = env!("CARGO_BIN_EXE_entitlement-gateway");
/// Set in the environment of the child that serves the ceiling.
pub const CEILING_ENV: &str = "ENTITLEMENT_GATEWAY_BENCH_CEILING";
/// An all-in-one server's listeners: free ports.
const LOCAL: [&str; 4] = ["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"];

/// The minimal HTTP service the gateway is compared with.
pub mod ceiling {
    use axum::{
        Router,
        body::Bytes,
        http::{StatusCode, header},
        response::{IntoResponse, Response},
        routing::post,
        serve::ListenerExt as _,
    };
    use serde::{Deserialize, Serialize};

    use super::COLLECTION;

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Assignment {
        #[serde(rename = "@odata.type", skip_serializing_if = "Option::is_none")]
        odata_type: Option<String>,
        id: Option<String>,
        catalog_id: Option<String>,
        access_package_id: Option<String>,
        assignment_policy_id: Option<String>,
        target_id: Option<String>,
        assignment_status: Option<String>,
        assignment_state: Option<String>,
        is_extended: Option<bool>,
        expired_date_time: Option<String>,
    }

    async fn create(body: Bytes) -> Response {
        match serde_json::from_slice::<Assignment>(&body) {
            Ok(mut assignment) => {
                assignment.id = Some(uuid::Uuid::new_v4().to_string());
                let json = serde_json::to_vec(&assignment).expect("serializable");
                (
                    StatusCode::CREATED,
                    [(header::CONTENT_TYPE, "application/json")],
                    json,
                )
                    .into_response()
            }
            Err(_) => StatusCode::BAD_REQUEST.into_response(),
        }
    }

    /// Serves the ceiling on a free port and prints where, like the product does.
    pub async fn serve() {
        // Bound as the product binds, so that a burst of connections waits in
        // the same accept queue.
        let listener = entitlement_gateway::listen(([127, 0, 0, 1], 0).into()).expect("bind");
        println!(
            "ceiling listening http.addr={}",
            listener.local_addr().expect("addr")
        );
        let app = Router::new().route(COLLECTION, post(create));
        // Like the product's HTTP front: no Nagle delay on answers.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await.expect("serve");
    }
}

/// A server process under test, killed when dropped.
pub struct Server {
    child: Child,
    http: Option<String>,
    grpc: Option<String>,
    /// Whether its ports serve TLS (`--tls-cert`): its URLs are then https://.
    tls: bool,
}

impl Server {
    /// Starts `command` with its stdout (the log) going to `log`, and waits for its
    /// `listening` line.
    fn start(mut command: Command, log: &Path) -> Self {
        let file = fs::File::create(log).expect("log file");
        // Owned by the Server at once, so that it is killed and reaped on every path.
        let mut server = Self {
            child: command
                .stdout(file.try_clone().expect("log file"))
                .stderr(file)
                .stdin(Stdio::null())
                .spawn()
                .expect("start the server"),
            http: None,
            grpc: None,
            tls: false,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = fs::read_to_string(log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(" listening ")) {
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(name))
                        .map(str::to_owned)
                };
                server.http = field("http.addr=");
                server.grpc = field("grpc.addr=");
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn product(dir: &Path, name: &str, args: &[&str]) -> Self {
        let mut command = Command::new(BINARY);
        // The admin listener (metrics, health) on a free port: its fixed default port
        // would clash between the processes of one run.
        command
            .env("ENTITLEMENT_GATEWAY_ADMIN_ADDR", "127.0.0.1:0")
            .arg("serve")
            .args(args);
        let mut server = Self::start(command, &dir.join(format!("{name}.log")));
        server.tls = args.contains(&"--tls-cert");
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server as an operator would (SIGTERM) and waits until it has exited.
    pub fn stop(mut self) {
        let signalled = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(signalled.success(), "kill -TERM failed: {signalled}");
        let exit = self.child.wait().expect("wait for the server");
        assert!(exit.success(), "the server did not stop cleanly: {exit}");
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    pub fn http_url(&self) -> String {
        let addr = self.http.as_deref().expect("an HTTP address");
        format!("{}://{addr}", self.scheme())
    }

    pub fn grpc_url(&self) -> String {
        let addr = self.grpc.as_deref().expect("a gRPC address");
        format!("{}://{addr}", self.scheme())
    }

    /// The URL of the assignments collection on the server's HTTP listener.
    pub fn collection_url(&self) -> String {
        format!("{}{COLLECTION}", self.http_url())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn mint_token(data_dir: &Path) -> String {
    let output = Command::new(BINARY)
        .arg("token")
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run token");
    assert!(output.status.success(), "token failed: {output:?}");
    String::from_utf8(output.stdout)
        .expect("utf-8 token")
        .trim()
        .to_owned()
}

/// The trimmed standard output of `command`, if it ran and wrote UTF-8.
pub fn stdout_of(command: &mut Command) -> Option<String> {
    command
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
}

pub fn data_dir(tmp: &Path, name: &str) -> PathBuf {
    let dir = tmp.join(name);
    fs::create_dir_all(&dir).expect("data dir");
    dir
}

/// `--data-dir` and `data`, as arguments.
fn data_dir_args(data: &Path) -> [&str; 2] {
    ["--data-dir", data.to_str().expect("utf-8 path")]
}

pub fn all_in_one(data: &Path) -> Vec<&str> {
    let mut args = LOCAL.to_vec();
    args.extend(data_dir_args(data));
    args
}

/// Starts the ceiling; the target POSTs the documented body to it.
pub fn start_ceiling(tmp: &Path) -> (Server, Target) {
    let mut command = Command::new(std::env::current_exe().expect("this benchmark"));
    command.env(CEILING_ENV, "1");
    let server = Server::start(command, &tmp.join("ceiling.log"));
    let target = Target::HttpCreate {
        url: server.collection_url(),
        token: "unused".into(),
        http: Http::default(),
    };
    (server, target)
}

/// Starts an all-in-one server named `name`; the target creates over HTTP/1.1, or
/// HTTP/2 when `h2`.
pub fn start_all_in_one(tmp: &Path, name: &str, h2: bool) -> (Server, Target) {
    let data = data_dir(tmp, name);
    let server = Server::product(tmp, name, &all_in_one(&data));
    let target = Target::HttpCreate {
        url: server.collection_url(),
        token: mint_token(&data),
        http: Http::h2(h2),
    };
    (server, target)
}

/// Direct gRPC creates to `server`'s gRPC port, with `token`.
pub async fn grpc_create_target(server: &Server, token: &str) -> Target {
    Target::GrpcCreate {
        channels: grpc_channels(&server.grpc_url(), GRPC_CHANNELS, None).await,
        token: bearer(token),
    }
}

/// Starts a `--role gateway` process in front of a `--role grpc` process; the
/// target creates through the gateway.
pub fn start_split(tmp: &Path, name: &str) -> (Server, Server, Target) {
    let (service_name, gateway_name) = (format!("{name}-grpc"), format!("{name}-gateway"));
    let data = data_dir(tmp, &service_name);
    let mut service_args = vec!["--role", "grpc", "--grpc-addr", "127.0.0.1:0"];
    service_args.extend(data_dir_args(&data));
    let service = Server::product(tmp, &service_name, &service_args);
    let gateway_data = data_dir(tmp, &gateway_name);
    let upstream = service.grpc_url();
    let mut gateway_args = vec![
        "--role",
        "gateway",
        "--upstream",
        &upstream,
        "--http-addr",
        "127.0.0.1:0",
    ];
    gateway_args.extend(data_dir_args(&gateway_data));
    let gateway = Server::product(tmp, &gateway_name, &gateway_args);
    let target = Target::HttpCreate {
        url: gateway.collection_url(),
        token: mint_token(&data),
        http: Http::default(),
    };
    (gateway, service, target)
}
