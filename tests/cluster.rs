//! Split roles on one PostgreSQL database, as real processes: `--role grpc` service
//! instances (sharing a data dir, so a signing key, and the database) behind
//! `--role gateway` HTTP fronts. Kill -9 of a service instance under load loses
//! nothing acknowledged, and a gateway with a second upstream keeps answering.
//!
//! Each test creates a PostgreSQL database of its own and drops it afterwards
//! (see `common/postgres.rs`: the admin URL is `ENTITLEMENT_GATEWAY_TEST_POSTGRES`;
//! the tests fail when the server cannot be reached, and do not run, saying so,
//! with `ENTITLEMENT_GATEWAY_SKIP_POSTGRES=1`).

#[path = "common/postgres.rs"]
mod postgres_db;

use std::{
    collections::HashSet,
    fmt::Write as _,
    path::Path,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, BufReader},
    process::{Child, Command},
    sync::Notify,
    task::JoinHandle,
};

use postgres_db::with_postgres;

const BINARY: &str = env!("CARGO_BIN_EXE_entitlement-gateway");
const COLLECTION: &str = "/beta/identityGovernance/entitlementManagement/accessPackageAssignments";
/// How long a process may take to say `listening`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The concurrent HTTP clients of each load phase.
const CLIENTS: usize = 16;

/// The seed page's request body (as `tests/api/helpers.rs::SEED_REQUEST`).
const SEED_REQUEST: &str = include_str!("fixtures/seed/request.json");

/// The seed body with `accessPackageId` set to `package`, so that a test can
/// count its own assignments.
fn seed_body(package: &str) -> String {
    let mut body: Value = serde_json::from_str(SEED_REQUEST).unwrap();
    body["accessPackageId"] = Value::from(package);
    body.to_string()
}

/// One `serve` process of the binary, started on port 0; killed when dropped.
struct Server {
    name: String,
    child: Child,
    /// `host:port` from its `listening` line.
    addr: String,
    /// Its WARN and ERROR log lines and its stderr, for failure messages.
    problems: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// A `--role grpc` instance on `database_url`, with the signing key of `data_dir`.
    async fn grpc(name: &str, data_dir: &Path, database_url: &str) -> Self {
        let mut command = Command::new(BINARY);
        command
            .args(["serve", "--role", "grpc", "--grpc-addr", "127.0.0.1:0"])
            .args(["--admin-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--database-url", database_url]);
        Self::start(name, command, "grpc.addr=").await
    }

    /// A `--role gateway` front balancing over `upstreams`.
    async fn gateway(name: &str, upstreams: &[&Server]) -> Self {
        let mut command = Command::new(BINARY);
        command.args(["serve", "--role", "gateway", "--http-addr", "127.0.0.1:0"]);
        command.args(["--admin-addr", "127.0.0.1:0"]);
        for upstream in upstreams {
            command.args(["--upstream", &upstream.url()]);
        }
        Self::start(name, command, "http.addr=").await
    }

    /// Spawns `command` and waits (no sleeping) for its `listening` line, whose
    /// `field` is the bound address. Its output is drained for as long as it runs.
    async fn start(name: &str, mut command: Command, field: &str) -> Self {
        let mut child = command
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        let problems = Arc::new(Mutex::new(Vec::new()));
        let stderr = drain(child.stderr.take().unwrap(), problems.clone(), |_| true);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let listening = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(" listening ") {
                    return Some(line);
                }
                if is_problem(&line) {
                    problems.lock().unwrap().push(line);
                }
            }
            None
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: no listening line within {START_TIMEOUT:?}"));
        let Some(listening) = listening else {
            let status = child.wait().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), stderr).await;
            panic!(
                "{name} exited ({status:?}) before listening: {:?}",
                problems.lock().unwrap()
            );
        };
        // Keep draining the log so the process never blocks on a full pipe.
        let log = problems.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if is_problem(&line) {
                    log.lock().unwrap().push(line);
                }
            }
        });
        let addr = listening
            .split_whitespace()
            .find_map(|word| word.strip_prefix(field))
            .unwrap_or_else(|| panic!("{name}: no {field} in {listening}"))
            .to_owned();
        assert!(addr.starts_with("127.0.0.1:"), "{name}: {listening}");
        Self {
            name: name.to_owned(),
            child,
            addr,
            problems,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The assignments collection of a gateway.
    fn collection(&self) -> String {
        format!("{}{COLLECTION}", self.url())
    }

    /// SIGKILL (unless it is gone already), and waits for the process to be gone.
    async fn kill(&mut self) {
        if self
            .child
            .try_wait()
            .expect("the process's state")
            .is_none()
        {
            self.child.start_kill().expect("SIGKILL");
        }
        self.child
            .wait()
            .await
            .expect("the killed process is reaped");
    }

    /// Its WARN/ERROR lines that mention `needle` (a request-id).
    fn problems_about(&self, needle: &str) -> Vec<String> {
        let problems = self.problems.lock().unwrap();
        problems
            .iter()
            .filter(|line| line.contains(needle))
            .cloned()
            .collect()
    }
}

fn is_problem(line: &str) -> bool {
    line.contains(" WARN ") || line.contains(" ERROR ")
}

/// Reads `output` to its end, keeping the lines `keep` selects.
fn drain(
    output: impl AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
    keep: fn(&str) -> bool,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(output).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if keep(&line) {
                into.lock().unwrap().push(line);
            }
        }
    })
}

/// A token signed with `data_dir`'s key (which this creates when it is missing).
async fn mint(data_dir: &Path) -> String {
    let output = Command::new(BINARY)
        .args(["token", "--data-dir"])
        .arg(data_dir)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// What a gateway answered.
struct Answer {
    /// `None`: no response (the client's error is in `body`).
    status: Option<u16>,
    /// The response's `request-id`, which the gateway logs.
    request_id: Option<String>,
    body: String,
}

impl Answer {
    /// The body as JSON (`Null` when it is not).
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "{status} {}", self.body),
            None => write!(f, "no response: {}", self.body),
        }
    }
}

/// Sends `request` with the bearer token.
async fn send(request: reqwest::RequestBuilder, token: &str) -> Answer {
    let response = match request.bearer_auth(token).send().await {
        Ok(response) => response,
        Err(e) => {
            return Answer {
                status: None,
                request_id: None,
                body: format!("{e:?}"),
            };
        }
    };
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .text()
        .await
        .unwrap_or_else(|e| format!("(body not read: {e})"));
    Answer {
        status: Some(status),
        request_id,
        body,
    }
}

/// POSTs `body` to a gateway's collection: the new id, or what came back instead
/// of a 201.
async fn create(
    http: &reqwest::Client,
    collection: &str,
    token: &str,
    body: &str,
) -> Result<String, Answer> {
    let request = http
        .post(collection)
        .header("content-type", "application/json")
        .body(body.to_owned());
    let answer = send(request, token).await;
    match (answer.status, answer.json()["id"].as_str()) {
        (Some(201), Some(id)) => Ok(id.to_owned()),
        _ => Err(answer),
    }
}

/// GETs one assignment through a gateway.
async fn read(http: &reqwest::Client, gateway: &Server, token: &str, id: &str) -> Answer {
    send(http.get(format!("{}/{id}", gateway.collection())), token).await
}

/// The ids that do not read back 200 with that id through `gateway`, with what
/// came back.
async fn unreadable(
    http: &reqwest::Client,
    gateway: &Server,
    token: &str,
    ids: &[String],
) -> Vec<(String, Answer)> {
    let mut unreadable = Vec::new();
    for id in ids {
        let answer = read(http, gateway, token, id).await;
        if answer.status != Some(200) || answer.json()["id"] != id.as_str() {
            unreadable.push((id.clone(), answer));
        }
    }
    unreadable
}

/// The number of assignments of `package` (`$count` of a filtered list).
async fn count(
    http: &reqwest::Client,
    gateway: &Server,
    token: &str,
    package: &str,
) -> Result<u64, Answer> {
    // `$` literally, the rest percent-encoded (the package is a UUID: nothing to encode).
    let url = format!(
        "{}?$filter=accessPackageId%20eq%20%27{package}%27&$count=true&$top=1",
        gateway.collection()
    );
    let answer = send(http.get(url), token).await;
    match (answer.status, answer.json()["@odata.count"].as_u64()) {
        (Some(200), Some(count)) => Ok(count),
        _ => Err(answer),
    }
}

/// A list of answers, one a line, each followed by what `gateway` logged about it.
fn explain<'a>(
    gateway: &Server,
    answers: impl IntoIterator<Item = (String, &'a Answer)>,
) -> String {
    let mut out = String::new();
    for (what, answer) in answers {
        let _ = writeln!(out, "  {what}: {answer}");
        if let Some(request_id) = &answer.request_id {
            for line in gateway.problems_about(request_id) {
                let _ = writeln!(out, "    {} log: {line}", gateway.name);
            }
        }
    }
    out
}

/// A create of a load phase that did not get its 201.
struct Failure {
    client: usize,
    /// Since the phase started.
    sent_at: Duration,
    took: Duration,
    /// Sent after the kill (`None`: the kill had not happened yet).
    after_kill: Option<bool>,
    answer: Answer,
}

impl Failure {
    /// When it was sent, for a failure message.
    fn describe(&self) -> String {
        let when = match self.after_kill {
            None => "before the kill",
            Some(false) => "sent before the kill, answered after it",
            Some(true) => "after the kill",
        };
        format!(
            "client {} sent at {:?} ({when}), answered after {:?}",
            self.client, self.sent_at, self.took
        )
    }
}

/// The failures, each with what `gateway` logged about it.
fn explain_failures(gateway: &Server, failures: &[Failure]) -> String {
    explain(
        gateway,
        failures
            .iter()
            .map(|failure| (failure.describe(), &failure.answer)),
    )
}

/// The shared state of a load phase's clients.
#[derive(Default)]
struct Load {
    acknowledged: Mutex<Vec<String>>,
    failures: Mutex<Vec<Failure>>,
    /// Notified when `acknowledged` reaches `target`.
    reached: Notify,
    target: AtomicUsize,
    killed: AtomicBool,
    stop: AtomicBool,
    slowest: Mutex<Duration>,
}

impl Load {
    fn acknowledged(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Waits until at least `n` creates were acknowledged.
    /// (`gateway`: the one they call, whose log explains failures.)
    async fn until_acknowledged(&self, n: usize, within: Duration, gateway: &Server) {
        self.target.store(n, Ordering::SeqCst);
        // Notify keeps one permit: a notification between the check and the wait is
        // not lost, and a stale one only costs another check.
        let reached = async {
            while self.acknowledged() < n {
                self.reached.notified().await;
            }
        };
        tokio::time::timeout(within, reached)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{n} acknowledged creates within {within:?} (got {}); failures:\n{}",
                    self.acknowledged(),
                    explain_failures(gateway, &self.failures.lock().unwrap())
                )
            });
    }
}

/// Starts `CLIENTS` clients POSTing `body` to `gateway` until `load.stop` (or,
/// with `stop_on_failure`, until their first failure).
fn start_clients(
    load: &Arc<Load>,
    gateway: &Server,
    token: &str,
    body: &str,
    stop_on_failure: bool,
) -> Vec<JoinHandle<()>> {
    let http = http_client();
    let started = Instant::now();
    (0..CLIENTS)
        .map(|client| {
            let (load, http) = (load.clone(), http.clone());
            let (url, token, body) = (gateway.collection(), token.to_owned(), body.to_owned());
            tokio::spawn(async move {
                while !load.stop.load(Ordering::SeqCst) {
                    let sent_at = started.elapsed();
                    let killed_before = load.killed.load(Ordering::SeqCst);
                    let outcome = create(&http, &url, &token, &body).await;
                    let took = started.elapsed() - sent_at;
                    {
                        let mut slowest = load.slowest.lock().unwrap();
                        *slowest = (*slowest).max(took);
                    }
                    let answer = match outcome {
                        Ok(id) => {
                            let mut ids = load.acknowledged.lock().unwrap();
                            ids.push(id);
                            if ids.len() == load.target.load(Ordering::SeqCst) {
                                load.reached.notify_one();
                            }
                            continue;
                        }
                        Err(answer) => answer,
                    };
                    let after_kill = if killed_before {
                        Some(true)
                    } else if load.killed.load(Ordering::SeqCst) {
                        // Sent before the kill, answered after it.
                        Some(false)
                    } else {
                        None
                    };
                    load.failures.lock().unwrap().push(Failure {
                        client,
                        sent_at,
                        took,
                        after_kill,
                        answer,
                    });
                    if stop_on_failure {
                        return;
                    }
                }
            })
        })
        .collect()
}

/// Kills every process and waits for them: their database sessions end before
/// the database is dropped. (A panicking test kills them on drop, without waiting.)
async fn kill_all(servers: &mut [&mut Server]) {
    for server in servers {
        server.kill().await;
    }
}

/// Reports timings (seen with `--nocapture`).
fn report(line: &str) {
    eprintln!("cluster: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_a_grpc_instance_on_postgres_loses_nothing_acknowledged() {
    with_postgres(|database_url| async move {
        let began = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let token = mint(dir.path()).await;
        let mut grpc = Server::grpc("grpc", dir.path(), &database_url).await;
        let mut gateway = Server::gateway("gateway", &[&grpc]).await;
        let package = uuid::Uuid::new_v4().to_string();

        let load = Arc::new(Load::default());
        let load_started = Instant::now();
        let clients = start_clients(&load, &gateway, &token, &seed_body(&package), true);
        load.until_acknowledged(200, Duration::from_secs(120), &gateway)
            .await;
        // SIGKILL while the clients are still sending.
        load.killed.store(true, Ordering::SeqCst);
        let at_kill = load.acknowledged();
        grpc.kill().await;
        let killed_at = load_started.elapsed();
        // With its only upstream gone, every client soon fails, and stops.
        for client in clients {
            tokio::time::timeout(Duration::from_secs(60), client)
                .await
                .expect("the clients stop after the kill")
                .unwrap();
        }
        let acknowledged = load.acknowledged.lock().unwrap().clone();
        let failures = std::mem::take(&mut *load.failures.lock().unwrap());
        assert!(
            failures.iter().all(|failure| failure.after_kill.is_some()),
            "failures before the kill:\n{}",
            explain_failures(&gateway, &failures)
        );
        assert!(acknowledged.len() >= 200);
        let unique: HashSet<&String> = acknowledged.iter().collect();
        assert_eq!(unique.len(), acknowledged.len(), "every id unique");

        // A new instance on the same database, behind a new gateway.
        let mut restarted = Server::grpc("grpc (restarted)", dir.path(), &database_url).await;
        let mut new_gateway = Server::gateway("new gateway", &[&restarted]).await;
        let http = http_client();
        let lost = unreadable(&http, &new_gateway, &token, &acknowledged).await;
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged creates do not read back:\n{}",
            lost.len(),
            acknowledged.len(),
            explain(
                &new_gateway,
                lost.iter().map(|(id, answer)| (id.clone(), answer))
            )
        );
        // Creates in flight at the kill may have been stored unacknowledged: at most
        // one a client.
        let stored = count(&http, &new_gateway, &token, &package)
            .await
            .unwrap_or_else(|answer| panic!("count: {answer}"));
        let acked = acknowledged.len() as u64;
        assert!(
            (acked..=acked + CLIENTS as u64).contains(&stored),
            "{stored} stored, {acked} acknowledged"
        );
        kill_all(&mut [&mut gateway, &mut new_gateway, &mut restarted]).await;
        report(&format!(
            "kill -9: {acked} acknowledged ({at_kill} when killed at {killed_at:?}), \
             {} failed after the kill, {stored} stored; test took {:?}",
            failures.len(),
            began.elapsed()
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_services_on_one_database_behind_two_gateways() {
    with_postgres(|database_url| async move {
        let began = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let token = mint(dir.path()).await;
        // The same data dir: the same signing key, so both accept the token.
        let (mut grpc_a, mut grpc_b) = tokio::join!(
            Server::grpc("grpc A", dir.path(), &database_url),
            Server::grpc("grpc B", dir.path(), &database_url),
        );
        let upstreams = [&grpc_a, &grpc_b];
        let (mut gateway_1, mut gateway_2) = tokio::join!(
            Server::gateway("gateway 1", &upstreams),
            Server::gateway("gateway 2", &upstreams),
        );
        let http = http_client();

        // Written through one, read through the other, both ways (several times, so
        // that both upstreams serve both).
        let crossing = seed_body(&uuid::Uuid::new_v4().to_string());
        for (writer, reader) in [(&gateway_1, &gateway_2), (&gateway_2, &gateway_1)] {
            for _ in 0..8 {
                let request = http
                    .post(writer.collection())
                    .header("content-type", "application/json")
                    .body(crossing.clone());
                let created = send(request, &token).await;
                assert_eq!(
                    created.status,
                    Some(201),
                    "through {}: {created}",
                    writer.name
                );
                let created = created.json();
                let id = created["id"].as_str().unwrap();
                let answer = read(&http, reader, &token, id).await;
                assert_eq!(
                    answer.status,
                    Some(200),
                    "{id} through {}: {answer}",
                    reader.name
                );
                let mut read_back = answer.json();
                read_back.as_object_mut().unwrap().remove("@odata.context");
                assert_eq!(read_back, created, "through {}", reader.name);
            }
        }

        // 16 clients through gateway 1 for about 2 s; grpc A is killed in the middle.
        let package = uuid::Uuid::new_v4().to_string();
        let load = Arc::new(Load::default());
        let load_started = Instant::now();
        let clients = start_clients(&load, &gateway_1, &token, &seed_body(&package), false);
        load.until_acknowledged(100, Duration::from_secs(60), &gateway_1)
            .await;
        load.killed.store(true, Ordering::SeqCst);
        let at_kill = load.acknowledged();
        grpc_a.kill().await;
        let killed_at = load_started.elapsed();
        // Keep going: at least 100 more after the kill.
        load.until_acknowledged(at_kill + 100, Duration::from_secs(60), &gateway_1)
            .await;
        load.stop.store(true, Ordering::SeqCst);
        for client in clients {
            tokio::time::timeout(Duration::from_secs(60), client)
                .await
                .expect("the clients stop")
                .unwrap();
        }
        let load_took = load_started.elapsed();
        let acknowledged = load.acknowledged.lock().unwrap().clone();
        let failures = std::mem::take(&mut *load.failures.lock().unwrap());
        report(&format!(
            "two services: {} creates acknowledged in {load_took:?} ({at_kill} before \
             grpc A was killed, dead at {killed_at:?}), {} failed, slowest {:?}",
            acknowledged.len(),
            failures.len(),
            *load.slowest.lock().unwrap()
        ));
        let unique: HashSet<&String> = acknowledged.iter().collect();
        assert_eq!(unique.len(), acknowledged.len(), "every id unique");

        // Everything acknowledged is there, read through the other gateway (which
        // still lists the dead upstream), and nothing more. Every problem is
        // collected before failing, to be seen together.
        let mut problems = String::new();
        if !failures.is_empty() {
            let _ = write!(
                problems,
                "{} of {} creates through gateway 1 did not get 201 (grpc A killed \
                 after {at_kill} 201s, dead at {killed_at:?}):\n{}",
                failures.len(),
                failures.len() + acknowledged.len(),
                explain_failures(&gateway_1, &failures)
            );
        }
        let reading = Instant::now();
        let lost = unreadable(&http, &gateway_2, &token, &acknowledged).await;
        let read_took = reading.elapsed();
        if !lost.is_empty() {
            let _ = write!(
                problems,
                "{} of {} acknowledged creates did not read back 200 through gateway 2:\n{}",
                lost.len(),
                acknowledged.len(),
                explain(
                    &gateway_2,
                    lost.iter().map(|(id, answer)| (id.clone(), answer))
                )
            );
        }
        match count(&http, &gateway_2, &token, &package).await {
            Ok(stored) if stored == acknowledged.len() as u64 => {}
            Ok(stored) => {
                let _ = writeln!(
                    problems,
                    "{stored} assignments stored, {} acknowledged with 201 \
                     ({} creates failed)",
                    acknowledged.len(),
                    failures.len()
                );
            }
            Err(answer) => {
                let _ = write!(
                    problems,
                    "the count through gateway 2 failed:\n{}",
                    explain(&gateway_2, [("count".to_owned(), &answer)])
                );
            }
        }
        kill_all(&mut [&mut gateway_1, &mut gateway_2, &mut grpc_a, &mut grpc_b]).await;
        assert!(problems.is_empty(), "{problems}");
        report(&format!(
            "two services: read back {} through gateway 2 in {read_took:?}; test took {:?}",
            acknowledged.len(),
            began.elapsed()
        ));
    })
    .await;
}
