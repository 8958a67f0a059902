//! The project's benchmark: `cargo bench --bench gateway`.
//!
//! In one process tree, against the real release binary, it measures side by side:
//!
//! 1. the ceiling: a minimal axum handler compiled into this benchmark (run as a child
//!    process of it) that parses the seed JSON into a struct, adds a UUID and answers
//!    201 with the JSON: no gRPC, no storage;
//! 2. direct gRPC `CreateAssignment` (all-in-one process, durable SQLite);
//! 3. the HTTP create through the gateway (all-in-one);
//! 4. the same with split roles: `--role gateway` in front of `--role grpc` over loopback;
//! 5. GET by id through the gateway, and a filtered list page.
//!
//! For each, at every concurrency level (keep-alive HTTP/1.1, one connection per
//! client): requests/s, p50/p99/p99.9 latency, errors, the CPU per request of the
//! server process(es) and of this load generator (utime+stime from /proc), and the
//! server's peak RSS (VmHWM). The table goes to stdout and to `BENCHMARKS.md`.
//!
//! Then how cost grows with data ("Scaling with stored rows", a second table): for
//! 10 thousand and for `BENCH_SCALE_ROWS` (default 1 million) stored assignments, a
//! fresh all-in-one server whose SQLite database holds that many rows (the two run
//! side by side), and through its HTTP face: GET by id of a random stored
//! assignment, the first page of a list filtered on one access package (`$top=50`),
//! a page of the same list deep inside it (the `@odata.nextLink` reached by walking
//! half the package's rows), and then the create (POST of the seed body), each at 1
//! and 16 connections for a short fixed time, in [`SCALE_ROUNDS`] rounds that take
//! the two sizes in turn. The rows are seeded in bulk, not through the API: the binary is started once
//! on the empty data dir to create and migrate the database and stopped (SIGTERM),
//! then this benchmark writes the rows into the database file directly (sorted by id,
//! multi-row INSERTs in large transactions, no journal or sync: setup, not
//! measured, and timed separately), leaves it in WAL mode, and starts the binary on
//! it again. The rows are spread evenly over [`SCALE_PACKAGES`] access packages, so a
//! package holds 1/[`SCALE_PACKAGES`] of them and the deep page lies further from
//! the start as the store grows. Flat latency from the small size to the big one is
//! what an index per filterable property and keyset paging promise; the ratios of
//! the p50s, round by round (median and range), are printed under the table.
//!
//! Settings (environment): `BENCH_WARMUP_SECS` (default 1), `BENCH_SECS` (default 3),
//! `BENCH_CONCURRENCY` (comma-separated levels, default `1,16,64,256`),
//! `BENCH_SCALE_ROWS` (the big size of the scaling section, default 1000000; 0 skips
//! the section). The scaling section warms up for at most 0.5 s and measures for at
//! most 2 s per operation and level (less when the two settings above are lower).
//! There are no assertions on timings.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use entitlement_gateway::proto::v1::{
    AccessPackageAssignment, CreateAssignmentRequest,
    entitlement_management_client::EntitlementManagementClient,
};
use prost_types::Timestamp;
use serde::{Deserialize, Serialize};
use tempfile::TempDir;
use tonic::{metadata::MetadataValue, transport::Channel};

/// The seed request of the Graph documentation, as the tests send it.
const SEED_REQUEST: &str = include_str!("../tests/fixtures/seed/request.json");
const COLLECTION: &str = "/beta/identityGovernance/entitlementManagement/accessPackageAssignments";
const BINARY: &str = env!("CARGO_BIN_EXE_entitlement-gateway");
/// Set in the environment of the child that serves the ceiling.
const CEILING_ENV: &str = "ENTITLEMENT_GATEWAY_BENCH_CEILING";
/// Assignments seeded for the GET and list scenarios, spread over this many packages.
const SEED_ROWS: usize = 10_000;
const SEED_PACKAGES: usize = 10;
/// gRPC channels (HTTP/2 connections) the direct gRPC load spreads over.
const GRPC_CHANNELS: usize = 4;
/// The small size of the scaling section; the big one is `BENCH_SCALE_ROWS`.
const SCALE_SMALL_ROWS: usize = 10_000;
const SCALE_ROWS_DEFAULT: usize = 1_000_000;
/// Access packages the scaling rows are spread over, evenly (`pkg-000`...).
const SCALE_PACKAGES: usize = 100;
/// The package whose list pages the scaling section reads.
const SCALE_PACKAGE: usize = 42;
/// `$top` of the scaling section's list pages.
const SCALE_PAGE: usize = 50;
/// Connections of the scaling section, and its longest warm-up and measurement.
const SCALE_LEVELS: [usize; 2] = [1, 16];
const SCALE_WARMUP: Duration = Duration::from_millis(500);
const SCALE_MEASURE: Duration = Duration::from_secs(2);
/// Stored ids the scaling GETs pick from, at most.
const SCALE_GET_IDS: usize = 100_000;
/// Rounds of the scaling section at each operation and level (see [`scaling`]).
const SCALE_ROUNDS: usize = 4;
/// Rows per INSERT statement (10 binds each, under SQLite's 32766) and per
/// transaction, when seeding the scaling databases.
const BULK_STATEMENT_ROWS: usize = 500;
const BULK_TRANSACTION_ROWS: usize = 100_000;

fn main() {
    if std::env::var_os(CEILING_ENV).is_some() {
        ceiling::serve();
        return;
    }
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(settings));
}

struct Settings {
    warmup: Duration,
    measure: Duration,
    levels: Vec<usize>,
    /// The big size of the scaling section (0: no scaling section).
    scale_rows: usize,
    /// Rounds of the alternating target measurement (0: none).
    paired_rounds: usize,
}

impl Settings {
    fn from_env() -> Self {
        let secs = |name: &str, default: f64| {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.parse::<f64>()
                        .unwrap_or_else(|_| panic!("{name}: seconds"))
                })
                .unwrap_or(default)
        };
        let levels = std::env::var("BENCH_CONCURRENCY")
            .unwrap_or_else(|_| "1,16,64,256".into())
            .split(',')
            .map(|v| v.trim().parse().expect("BENCH_CONCURRENCY: numbers"))
            .collect();
        let scale_rows = std::env::var("BENCH_SCALE_ROWS").map_or(SCALE_ROWS_DEFAULT, |v| {
            v.trim()
                .parse()
                .expect("BENCH_SCALE_ROWS: a number of rows")
        });
        Self {
            warmup: Duration::from_secs_f64(secs("BENCH_WARMUP_SECS", 1.0)),
            measure: Duration::from_secs_f64(secs("BENCH_SECS", 3.0)),
            levels,
            scale_rows,
            paired_rounds: std::env::var("BENCH_PAIRED_ROUNDS").map_or(9, |v| {
                v.trim()
                    .parse()
                    .expect("BENCH_PAIRED_ROUNDS: a number of rounds")
            }),
        }
    }
}

/// The minimal HTTP service the gateway is compared with.
mod ceiling {
    use super::*;
    use axum::{
        Router,
        body::Bytes,
        http::{StatusCode, header},
        response::{IntoResponse, Response},
        routing::post,
        serve::ListenerExt as _,
    };

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
    pub fn serve() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
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
        });
    }
}

/// A server process under test, killed when dropped.
struct Server {
    child: Child,
    http: Option<String>,
    grpc: Option<String>,
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

    fn product(dir: &Path, name: &str, args: &[&str]) -> Self {
        let mut command = Command::new(BINARY);
        // The admin listener (metrics, health) on a free port: its fixed default port
        // would clash between the processes of one run.
        command
            .env("ENTITLEMENT_GATEWAY_ADMIN_ADDR", "127.0.0.1:0")
            .arg("serve")
            .args(args);
        Self::start(command, &dir.join(format!("{name}.log")))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server as an operator would (SIGTERM) and waits until it has exited.
    fn stop(mut self) {
        let signalled = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(signalled.success(), "kill -TERM failed: {signalled}");
        let exit = self.child.wait().expect("wait for the server");
        assert!(exit.success(), "the server did not stop cleanly: {exit}");
    }

    fn http_url(&self) -> String {
        format!("http://{}", self.http.as_deref().expect("an HTTP address"))
    }

    fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc.as_deref().expect("a gRPC address"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mint_token(data_dir: &Path) -> String {
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

/// CPU time (utime + stime, in clock ticks) of a process.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: field 3 (state) is index 0; utime is 14, stime 15.
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

/// Peak resident set size of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// What one load-generating client does, again and again.
enum Target {
    /// POST the seed body; expects 201. Over HTTP/2 (prior knowledge) when `h2`.
    HttpCreate {
        url: String,
        token: String,
        h2: bool,
    },
    /// GET one of these ids; expects 200.
    HttpGet {
        base: String,
        ids: Vec<String>,
        token: String,
    },
    /// GET this list URL; expects 200.
    HttpList { url: String, token: String },
    /// gRPC CreateAssignment over one of these channels.
    GrpcCreate {
        channels: Vec<Channel>,
        token: MetadataValue<tonic::metadata::Ascii>,
    },
}

/// The documented assignment as protobuf (2017-01-01T00:03:03.9221806+03:00).
fn documented(access_package_id: &str) -> AccessPackageAssignment {
    AccessPackageAssignment {
        catalog_id: Some("Catalog Id value".into()),
        access_package_id: Some(access_package_id.into()),
        assignment_policy_id: Some("Assignment Policy Id value".into()),
        target_id: Some("Target Id value".into()),
        assignment_status: Some("Assignment Status value".into()),
        assignment_state: Some("Assignment State value".into()),
        is_extended: Some(true),
        expired_date_time: Some(Timestamp {
            seconds: 1_483_218_183,
            nanos: 922_180_600,
        }),
        expired_date_time_offset_minutes: Some(180),
        ..Default::default()
    }
}

fn grpc_create(
    assignment: AccessPackageAssignment,
    token: &MetadataValue<tonic::metadata::Ascii>,
) -> tonic::Request<CreateAssignmentRequest> {
    let mut request = tonic::Request::new(CreateAssignmentRequest {
        assignment: Some(assignment),
    });
    request
        .metadata_mut()
        .insert("authorization", token.clone());
    request
}

fn bearer(token: &str) -> MetadataValue<tonic::metadata::Ascii> {
    format!("Bearer {token}").parse().expect("ascii token")
}

async fn grpc_channels(url: &str, n: usize) -> Vec<Channel> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        channels.push(
            Channel::from_shared(url.to_owned())
                .expect("gRPC URL")
                .connect()
                .await
                .expect("gRPC connect"),
        );
    }
    channels
}

fn http_client(h2: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder();
    let builder = if h2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    };
    builder
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .build()
        .expect("HTTP client")
}

/// The samples of one client: latencies (ns) of the requests completed inside the
/// measured window, and its errors there.
#[derive(Default)]
struct Samples {
    latencies: Vec<u64>,
    errors: u64,
}

async fn client(
    target: Arc<Target>,
    index: usize,
    measure_from: Instant,
    until: Instant,
) -> Samples {
    let http = http_client(matches!(&*target, Target::HttpCreate { h2: true, .. }));
    let mut grpc = match &*target {
        Target::GrpcCreate { channels, .. } => Some(EntitlementManagementClient::new(
            channels[index % channels.len()].clone(),
        )),
        _ => None,
    };
    let mut samples = Samples::default();
    let mut turn = index;
    while Instant::now() < until {
        let start = Instant::now();
        let ok = match &*target {
            Target::HttpCreate { url, token, .. } => {
                let response = http
                    .post(url)
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(SEED_REQUEST)
                    .send()
                    .await;
                http_ok(response, 201).await
            }
            Target::HttpGet { base, ids, token } => {
                turn = turn.wrapping_add(7919);
                let url = format!("{base}/{}", ids[turn % ids.len()]);
                http_ok(http.get(url).bearer_auth(token).send().await, 200).await
            }
            Target::HttpList { url, token } => {
                http_ok(http.get(url).bearer_auth(token).send().await, 200).await
            }
            Target::GrpcCreate { token, .. } => {
                let grpc = grpc.as_mut().expect("a gRPC client");
                grpc.create_assignment(grpc_create(documented("Access Package Id value"), token))
                    .await
                    .is_ok()
            }
        };
        let end = Instant::now();
        if end >= measure_from && end < until {
            if ok {
                samples
                    .latencies
                    .push(u64::try_from((end - start).as_nanos()).unwrap_or(u64::MAX));
            } else {
                samples.errors += 1;
            }
        } else if !ok && end < measure_from {
            // Do not spin on a failing target during the warm-up.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    samples
}

async fn http_ok(response: reqwest::Result<reqwest::Response>, status: u16) -> bool {
    match response {
        Ok(r) => {
            let expected = r.status().as_u16() == status;
            r.bytes().await.is_ok() && expected
        }
        Err(_) => false,
    }
}

/// One row of the table.
struct Row {
    scenario: String,
    concurrency: usize,
    requests_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    errors: u64,
    server_cpu: String,
    server_cpu_total_us: f64,
    /// Server CPU per request of each server, in the order given.
    server_cpu_us: Vec<f64>,
    loadgen_cpu_us: f64,
    peak_rss: String,
}

struct Bench {
    settings: Settings,
    ticks_per_sec: u64,
    rows: Vec<Row>,
}

impl Bench {
    /// Runs `target` at every concurrency level against `servers` (name, pid).
    async fn scenario(&mut self, name: &str, target: Target, servers: &[(&str, u32)]) {
        let target = Arc::new(target);
        for &concurrency in &self.settings.levels.clone() {
            let row = self.level(name, &target, servers, concurrency).await;
            eprintln!(
                "{name} c={concurrency}: {:.0} req/s, p50 {:.0} us, errors {}",
                row.requests_per_sec, row.p50_us, row.errors
            );
            self.rows.push(row);
        }
    }

    async fn level(
        &self,
        name: &str,
        target: &Arc<Target>,
        servers: &[(&str, u32)],
        concurrency: usize,
    ) -> Row {
        let started = Instant::now();
        let measure_from = started + self.settings.warmup;
        let until = measure_from + self.settings.measure;
        let clients: Vec<_> = (0..concurrency)
            .map(|i| tokio::spawn(client(Arc::clone(target), i, measure_from, until)))
            .collect();
        tokio::time::sleep_until(measure_from.into()).await;
        let cpu_before: Vec<u64> = servers
            .iter()
            .map(|(_, pid)| cpu_ticks(&pid.to_string()))
            .collect();
        let self_before = cpu_ticks("self");
        tokio::time::sleep_until(until.into()).await;
        let cpu_after: Vec<u64> = servers
            .iter()
            .map(|(_, pid)| cpu_ticks(&pid.to_string()))
            .collect();
        let self_after = cpu_ticks("self");

        let mut latencies = Vec::new();
        let mut errors = 0;
        for task in clients {
            let samples = task.await.expect("client task");
            latencies.extend(samples.latencies);
            errors += samples.errors;
        }
        latencies.sort_unstable();
        let requests = latencies.len() as f64;
        let at = |q: f64| {
            let i = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
            latencies.get(i).map_or(f64::NAN, |&ns| ns as f64 / 1000.0)
        };
        let us_per_request = |ticks: u64| {
            if requests == 0.0 {
                f64::NAN
            } else {
                ticks as f64 * 1e6 / self.ticks_per_sec as f64 / requests
            }
        };
        let per_server: Vec<f64> = cpu_before
            .iter()
            .zip(&cpu_after)
            .map(|(b, a)| us_per_request(a.saturating_sub(*b)))
            .collect();
        let total: f64 = per_server.iter().sum();
        let server_cpu = if servers.len() == 1 {
            format!("{total:.0}")
        } else {
            let parts: Vec<String> = servers
                .iter()
                .zip(&per_server)
                .map(|((n, _), us)| format!("{n} {us:.0}"))
                .collect();
            format!("{total:.0} ({})", parts.join(" + "))
        };
        let peak_rss = servers
            .iter()
            .map(|(n, pid)| {
                let mib = peak_rss_kib(*pid) as f64 / 1024.0;
                if servers.len() == 1 {
                    format!("{mib:.1}")
                } else {
                    format!("{n} {mib:.1}")
                }
            })
            .collect::<Vec<_>>()
            .join(" + ");
        Row {
            scenario: name.to_owned(),
            concurrency,
            requests_per_sec: requests / self.settings.measure.as_secs_f64(),
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
            errors,
            server_cpu,
            server_cpu_total_us: total,
            server_cpu_us: per_server,
            loadgen_cpu_us: us_per_request(self_after.saturating_sub(self_before)),
            peak_rss,
        }
    }

    fn find(&self, scenario: &str, concurrency: usize) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.concurrency == concurrency)
    }
}

const CEILING: &str = "1. ceiling (axum + serde, in-bench)";
const GRPC_CREATE: &str = "2. gRPC create (all-in-one)";
const HTTP_CREATE: &str = "3. HTTP create (all-in-one)";
const HTTP2_CREATE: &str = "3b. HTTP/2 create (all-in-one)";
const SPLIT_CREATE: &str = "4. HTTP create (split roles)";
const HTTP_GET: &str = "5a. HTTP get by id (all-in-one)";
const HTTP_LIST: &str = "5b. HTTP list, filter, $top=50 (all-in-one)";

async fn run(settings: Settings) {
    let tmp = TempDir::new().expect("temp dir");
    let mut bench = Bench {
        settings,
        ticks_per_sec: clock_ticks_per_sec(),
        rows: Vec::new(),
    };

    // 1. The ceiling.
    {
        let (server, target) = start_ceiling(tmp.path());
        bench
            .scenario(CEILING, target, &[("ceiling", server.pid())])
            .await;
    }

    // 2. Direct gRPC create, all-in-one.
    {
        let data = data_dir(tmp.path(), "grpc");
        let server = Server::product(tmp.path(), "grpc", &all_in_one(&data));
        let target = grpc_create_target(&server, &mint_token(&data)).await;
        bench
            .scenario(GRPC_CREATE, target, &[("all", server.pid())])
            .await;
    }

    // 3. HTTP create through the gateway, all-in-one.
    {
        let (server, target) = start_all_in_one(tmp.path(), "http", false);
        bench
            .scenario(HTTP_CREATE, target, &[("all", server.pid())])
            .await;
    }

    // 3b. The same over HTTP/2 (h2c, prior knowledge), one connection per client.
    {
        let (server, target) = start_all_in_one(tmp.path(), "http2", true);
        bench
            .scenario(HTTP2_CREATE, target, &[("all", server.pid())])
            .await;
    }

    // 4. Split roles: a gateway process in front of a gRPC process, over loopback.
    {
        let (gateway, service, target) = start_split(tmp.path(), "split");
        bench
            .scenario(
                SPLIT_CREATE,
                target,
                &[("gw", gateway.pid()), ("grpc", service.pid())],
            )
            .await;
    }

    // 5. GET by id and a filtered list page, all-in-one, over seeded assignments.
    {
        let data = data_dir(tmp.path(), "read");
        let server = Server::product(tmp.path(), "read", &all_in_one(&data));
        let token = mint_token(&data);
        let ids = seed(&server.grpc_url(), &bearer(&token)).await;
        let base = format!("{}{COLLECTION}", server.http_url());
        let target = Target::HttpGet {
            base: base.clone(),
            ids,
            token: token.clone(),
        };
        bench
            .scenario(HTTP_GET, target, &[("all", server.pid())])
            .await;
        let target = Target::HttpList {
            url: format!("{base}?$filter=accessPackageId%20eq%20%27pkg-3%27&$top=50"),
            token,
        };
        bench
            .scenario(HTTP_LIST, target, &[("all", server.pid())])
            .await;
    }

    // The target ratios again, from rounds that alternate the scenarios.
    let paired = if bench.settings.paired_rounds > 0 {
        Some(paired(&bench, tmp.path()).await)
    } else {
        None
    };

    // How cost grows with stored rows.
    let scaling = if bench.settings.scale_rows > 0 {
        let mut sizes = vec![SCALE_SMALL_ROWS, bench.settings.scale_rows];
        sizes.dedup();
        Some(scaling(&bench.settings, bench.ticks_per_sec, tmp.path(), &sizes).await)
    } else {
        None
    };

    let report = report(&bench, paired.as_ref(), scaling.as_ref());
    println!("{report}");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    fs::write(&path, &report).expect("write BENCHMARKS.md");
    eprintln!("wrote {}", path.display());
}

/// Starts the ceiling; the target POSTs the documented body to it.
fn start_ceiling(tmp: &Path) -> (Server, Target) {
    let mut command = Command::new(std::env::current_exe().expect("this benchmark"));
    command.env(CEILING_ENV, "1");
    let server = Server::start(command, &tmp.join("ceiling.log"));
    let target = Target::HttpCreate {
        url: format!("{}{COLLECTION}", server.http_url()),
        token: "unused".into(),
        h2: false,
    };
    (server, target)
}

/// Starts an all-in-one server named `name`; the target creates over HTTP/1.1, or
/// HTTP/2 when `h2`.
fn start_all_in_one(tmp: &Path, name: &str, h2: bool) -> (Server, Target) {
    let data = data_dir(tmp, name);
    let server = Server::product(tmp, name, &all_in_one(&data));
    let target = Target::HttpCreate {
        url: format!("{}{COLLECTION}", server.http_url()),
        token: mint_token(&data),
        h2,
    };
    (server, target)
}

/// Direct gRPC creates to `server`'s gRPC port, with `token`.
async fn grpc_create_target(server: &Server, token: &str) -> Target {
    Target::GrpcCreate {
        channels: grpc_channels(&server.grpc_url(), GRPC_CHANNELS).await,
        token: bearer(token),
    }
}

/// Starts a `--role gateway` process in front of a `--role grpc` process; the
/// target creates through the gateway.
fn start_split(tmp: &Path, name: &str) -> (Server, Server, Target) {
    let (service_name, gateway_name) = (format!("{name}-grpc"), format!("{name}-gateway"));
    let data = data_dir(tmp, &service_name);
    let service = Server::product(
        tmp,
        &service_name,
        &[
            "--role",
            "grpc",
            "--grpc-addr",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().expect("utf-8 path"),
        ],
    );
    let gateway_data = data_dir(tmp, &gateway_name);
    let upstream = service.grpc_url();
    let gateway = Server::product(
        tmp,
        &gateway_name,
        &[
            "--role",
            "gateway",
            "--upstream",
            &upstream,
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            gateway_data.to_str().expect("utf-8 path"),
        ],
    );
    let target = Target::HttpCreate {
        url: format!("{}{COLLECTION}", gateway.http_url()),
        token: mint_token(&data),
        h2: false,
    };
    (gateway, service, target)
}

/// An all-in-one server's listeners: free ports.
const LOCAL: [&str; 4] = ["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"];

/// The concurrency the targets are set at.
const TARGET_CONNS: usize = 64;

/// The target ratios, one per round of [`paired`].
struct Paired {
    /// HTTP create all-in-one / ceiling, split roles / ceiling (requests/s);
    /// all-in-one server CPU / ceiling's, split gateway process CPU / ceiling's, and
    /// (all-in-one CPU per HTTP create − its CPU per direct gRPC create) / ceiling's
    /// (per request).
    rounds: Vec<[f64; 5]>,
}

/// Runs the ceiling, the all-in-one HTTP create, the split-roles HTTP create and
/// direct gRPC creates to the same all-in-one process one after the other at
/// [`TARGET_CONNS`], round after round on the same servers: a slow spell of a shared
/// machine then falls on all of a round, not on one scenario of the run.
async fn paired(bench: &Bench, tmp: &Path) -> Paired {
    let (ceiling, ceiling_target) = start_ceiling(tmp);
    let (all, all_target) = start_all_in_one(tmp, "paired", false);
    let Target::HttpCreate { token, .. } = &all_target else {
        unreachable!("an HTTP create target")
    };
    let grpc_target = grpc_create_target(&all, token).await;
    let (gateway, service, split_target) = start_split(tmp, "paired-split");
    let mut rounds = Vec::new();
    let scenarios = [
        (
            CEILING,
            Arc::new(ceiling_target),
            vec![("ceiling", ceiling.pid())],
        ),
        (HTTP_CREATE, Arc::new(all_target), vec![("all", all.pid())]),
        (
            SPLIT_CREATE,
            Arc::new(split_target),
            vec![("gw", gateway.pid()), ("grpc", service.pid())],
        ),
        (GRPC_CREATE, Arc::new(grpc_target), vec![("all", all.pid())]),
    ];
    for round in 0..bench.settings.paired_rounds {
        let mut rows = Vec::with_capacity(scenarios.len());
        for (name, target, servers) in &scenarios {
            rows.push(bench.level(name, target, servers, TARGET_CONNS).await);
        }
        let [c, a, s, g] = rows.as_slice() else {
            unreachable!("four scenarios a round")
        };
        let ratios = [
            a.requests_per_sec / c.requests_per_sec,
            s.requests_per_sec / c.requests_per_sec,
            a.server_cpu_total_us / c.server_cpu_total_us,
            s.server_cpu_us[0] / c.server_cpu_total_us,
            (a.server_cpu_total_us - g.server_cpu_total_us) / c.server_cpu_total_us,
        ];
        eprintln!(
            "paired round {round}: ceiling {:.0}, all-in-one {:.0} (gRPC {:.0}), split {:.0} req/s",
            c.requests_per_sec, a.requests_per_sec, g.requests_per_sec, s.requests_per_sec
        );
        rounds.push(ratios);
    }
    Paired { rounds }
}

/// The median, minimum and maximum of `values` (none when there are none).
fn spread(mut values: Vec<f64>) -> Option<(f64, f64, f64)> {
    values.sort_by(f64::total_cmp);
    let median = *values.get(values.len() / 2)?;
    Some((median, values[0], values[values.len() - 1]))
}

impl Paired {
    /// The [`spread`] of one column of the rounds.
    fn spread(&self, column: usize) -> (f64, f64, f64) {
        spread(self.rounds.iter().map(|r| r[column]).collect()).unwrap_or((
            f64::NAN,
            f64::NAN,
            f64::NAN,
        ))
    }
}

/// The scaling section's results at one size.
struct Scale {
    rows: usize,
    seed_time: Duration,
    database_mib: f64,
    /// The rows of the package before the deep page.
    deep_offset: usize,
    /// Per operation and level, the round with the median p50.
    results: Vec<Row>,
}

/// The scaling section: each size's results, and the p50 ratios of the big size
/// to the small one, round by round.
struct Scaling {
    sizes: Vec<Scale>,
    warmup: Duration,
    measure: Duration,
    /// (operation, connections, median, lowest, highest) of the rounds' ratios.
    ratios: Vec<(&'static str, usize, f64, f64, f64)>,
}

const SCALE_CREATE: &str = "create (POST)";
const SCALE_GET: &str = "get by id";
const SCALE_FIRST_PAGE: &str = "list, filter, $top=50: first page";
const SCALE_DEEP_PAGE: &str = "list, filter, $top=50: deep page";
/// In the order they run: the reads first, so that they see exactly the seeded
/// rows; the creates add rows.
const SCALE_OPERATIONS: [&str; 4] = [SCALE_GET, SCALE_FIRST_PAGE, SCALE_DEEP_PAGE, SCALE_CREATE];

/// One size of the scaling section: its running server and what to send it.
struct ScaleServer {
    rows: usize,
    seed_time: Duration,
    database_mib: f64,
    deep_offset: usize,
    data: PathBuf,
    server: Server,
    /// The targets of [`SCALE_OPERATIONS`], in that order.
    targets: Vec<Arc<Target>>,
}

/// Starts an all-in-one server whose database holds `rows` assignments, seeded in
/// bulk while it was stopped.
async fn scale_server(tmp: &Path, rows: usize) -> ScaleServer {
    eprintln!("scaling: {rows} stored rows");
    let name = format!("scale-{rows}");
    let data = data_dir(tmp, &name);
    let args = all_in_one(&data);

    // The product creates and migrates its database; the rows go in while it is down.
    let setup = Server::product(tmp, &format!("{name}-setup"), &args);
    let token = mint_token(&data);
    setup.stop();
    let database = data.join(entitlement_gateway::DATABASE_FILE);
    let started = Instant::now();
    let ids = bulk_seed(&database, rows).await;
    let seed_time = started.elapsed();
    let database_mib = fs::metadata(&database).map_or(f64::NAN, |m| m.len() as f64 / 1048576.0);
    eprintln!("scaling: seeded {rows} rows in {seed_time:.1?} ({database_mib:.0} MiB)");

    let server = Server::product(tmp, &name, &args);
    let base = format!("{}{COLLECTION}", server.http_url());
    let first_page = format!(
        "{base}?$filter=accessPackageId%20eq%20%27{}%27&$top={SCALE_PAGE}",
        package_id(SCALE_PACKAGE)
    );
    // Half way through the package's rows: further from the start the more rows.
    let deep_pages = rows / SCALE_PACKAGES / 2 / SCALE_PAGE;
    let deep_page = follow_next_links(&first_page, &token, deep_pages).await;
    let step = (ids.len() / SCALE_GET_IDS).max(1);
    let targets = vec![
        Target::HttpGet {
            base: base.clone(),
            ids: ids.iter().step_by(step).map(ToString::to_string).collect(),
            token: token.clone(),
        },
        Target::HttpList {
            url: first_page,
            token: token.clone(),
        },
        Target::HttpList {
            url: deep_page,
            token: token.clone(),
        },
        Target::HttpCreate {
            url: base,
            token,
            h2: false,
        },
    ];
    ScaleServer {
        rows,
        seed_time,
        database_mib,
        deep_offset: deep_pages * SCALE_PAGE,
        data,
        server,
        targets: targets.into_iter().map(Arc::new).collect(),
    }
}

/// Measures the scaling operations with one server per size, running side by side:
/// at each level, [`SCALE_ROUNDS`] rounds each run the operation on every size in
/// turn (the order flipping each round), so a slow spell of this shared machine
/// falls on both sizes alike. Each
/// size keeps its median round; the ratio of big to small is taken round by round.
async fn scaling(settings: &Settings, ticks_per_sec: u64, tmp: &Path, sizes: &[usize]) -> Scaling {
    let mut servers = Vec::new();
    for &rows in sizes {
        servers.push(scale_server(tmp, rows).await);
    }
    let bench = Bench {
        settings: Settings {
            warmup: settings.warmup.min(SCALE_WARMUP),
            measure: settings.measure.min(SCALE_MEASURE),
            levels: SCALE_LEVELS.to_vec(),
            scale_rows: settings.scale_rows,
            paired_rounds: 0,
        },
        ticks_per_sec,
        rows: Vec::new(),
    };
    let mut results: Vec<Vec<Row>> = servers.iter().map(|_| Vec::new()).collect();
    let mut ratios = Vec::new();
    for (index, operation) in SCALE_OPERATIONS.into_iter().enumerate() {
        for concurrency in SCALE_LEVELS {
            let mut rounds: Vec<Vec<Row>> = servers.iter().map(|_| Vec::new()).collect();
            for round in 0..SCALE_ROUNDS {
                // Every other round goes the other way, so neither size always runs
                // right after the other.
                let mut order: Vec<usize> = (0..servers.len()).collect();
                if round % 2 == 1 {
                    order.reverse();
                }
                for size in order {
                    let server = &servers[size];
                    let pid = [("all", server.server.pid())];
                    let row = bench
                        .level(operation, &server.targets[index], &pid, concurrency)
                        .await;
                    eprintln!(
                        "{operation} at {} rows c={concurrency}: {:.0} req/s, p50 {:.0} us, errors {}",
                        server.rows, row.requests_per_sec, row.p50_us, row.errors
                    );
                    rounds[size].push(row);
                }
            }
            if let [small, .., big] = rounds.as_slice() {
                let round_ratios = small
                    .iter()
                    .zip(big)
                    .filter(|(a, _)| a.p50_us > 0.0)
                    .map(|(a, b)| b.p50_us / a.p50_us)
                    .collect();
                if let Some((median, low, high)) = spread(round_ratios) {
                    ratios.push((operation, concurrency, median, low, high));
                }
            }
            for (size, mut rows) in rounds.into_iter().enumerate() {
                rows.sort_by(|a, b| a.p50_us.total_cmp(&b.p50_us));
                let middle = rows.len() / 2;
                results[size].push(rows.swap_remove(middle));
            }
        }
    }
    let sizes = servers
        .into_iter()
        .zip(results)
        .map(|(server, results)| {
            drop(server.server);
            // The big database is not needed any more: give its disk space back now.
            let _ = fs::remove_dir_all(&server.data);
            Scale {
                rows: server.rows,
                seed_time: server.seed_time,
                database_mib: server.database_mib,
                deep_offset: server.deep_offset,
                results,
            }
        })
        .collect();
    Scaling {
        sizes,
        warmup: bench.settings.warmup,
        measure: bench.settings.measure,
        ratios,
    }
}

/// The access package id of the scaling rows' package `index`.
fn package_id(index: usize) -> String {
    format!("pkg-{index:03}")
}

/// Writes `rows` assignments straight into the (migrated, unused) SQLite database at
/// `path`, spread evenly over [`SCALE_PACKAGES`] packages; returns their ids, sorted.
///
/// The ids are random (v4) but inserted in key order, so every B-tree grows at its
/// end or at a few points; no journal and no sync while inserting, since a failed
/// seed is simply run again, and one sync of the file at the end. The database is
/// left in WAL mode, as the server keeps it.
async fn bulk_seed(path: &Path, rows: usize) -> Vec<uuid::Uuid> {
    use sqlx::{
        Connection as _,
        sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous},
    };

    let mut ids: Vec<uuid::Uuid> = (0..rows).map(|_| uuid::Uuid::new_v4()).collect();
    ids.sort_unstable();
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Off)
        .synchronous(SqliteSynchronous::Off)
        // 512 MiB of page cache: the indexes stay in memory while they grow.
        .pragma("cache_size", "-524288");
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .expect("open the database to seed");
    let insert = |rows: usize| {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
        format!(
            "INSERT INTO assignments (id, catalog_id, access_package_id, assignment_policy_id, \
             target_id, assignment_status, assignment_state, is_extended, expired_ticks, \
             expired_offset_minutes) VALUES {values}"
        )
    };
    let full = insert(BULK_STATEMENT_ROWS);
    // About ten assignments per target.
    let targets = (rows / 10).max(1);
    // 2017-01-01T00:03:03.9221806Z, in 100 ns ticks since the Unix epoch.
    let ticks = 14_832_181_839_221_806_i64;
    let mut index = 0;
    for transaction_ids in ids.chunks(BULK_TRANSACTION_ROWS) {
        let mut transaction = connection.begin().await.expect("begin the seed");
        for statement_ids in transaction_ids.chunks(BULK_STATEMENT_ROWS) {
            let partial;
            let sql = if statement_ids.len() == BULK_STATEMENT_ROWS {
                &full
            } else {
                partial = insert(statement_ids.len());
                &partial
            };
            let mut query = sqlx::query(sql);
            for id in statement_ids {
                let package = index % SCALE_PACKAGES;
                // Every other one expires, on one of ten years of days.
                let day = (index % 3650) as i64;
                let expired = (index % 2 == 0).then(|| ticks + day * 864_000_000_000);
                query = query
                    .bind(id.to_string())
                    .bind(format!("catalog-{}", package % 10))
                    .bind(package_id(package))
                    .bind(format!("policy-{package:03}"))
                    .bind(format!("user-{:07}", index % targets))
                    .bind("Delivered")
                    .bind("Delivered")
                    .bind(index % 3 == 0)
                    .bind(expired)
                    .bind(expired.map(|_| 0_i32));
                index += 1;
            }
            query
                .execute(&mut *transaction)
                .await
                .expect("insert seed rows");
        }
        transaction.commit().await.expect("commit the seed");
    }
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&mut connection)
        .await
        .expect("back to WAL mode");
    connection.close().await.expect("close the seeded database");
    // Written without sync, the seed would still be going to disk while the server
    // is measured: the first checkpoint's fsync would flush hundreds of MiB.
    fs::File::open(path)
        .and_then(|file| file.sync_all())
        .expect("sync the seeded database");
    ids
}

/// The URL of the list page `pages` pages after `first`: the `@odata.nextLink` of
/// each page followed in turn.
async fn follow_next_links(first: &str, token: &str, pages: usize) -> String {
    let http = http_client(false);
    let mut url = first.to_owned();
    for _ in 0..pages {
        let page: serde_json::Value = http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("a list page")
            .json()
            .await
            .expect("a JSON list page");
        url = page["@odata.nextLink"]
            .as_str()
            .expect("a next page")
            .to_owned();
    }
    url
}

fn data_dir(tmp: &Path, name: &str) -> PathBuf {
    let dir = tmp.join(name);
    fs::create_dir_all(&dir).expect("data dir");
    dir
}

fn all_in_one(data: &Path) -> Vec<&str> {
    let mut args = LOCAL.to_vec();
    args.extend(["--data-dir", data.to_str().expect("utf-8 path")]);
    args
}

/// Creates [`SEED_ROWS`] assignments over gRPC, spread over [`SEED_PACKAGES`]
/// access packages (`pkg-0`...); returns their ids.
async fn seed(url: &str, token: &MetadataValue<tonic::metadata::Ascii>) -> Vec<String> {
    let channels = grpc_channels(url, GRPC_CHANNELS).await;
    let workers = 64;
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let mut client = EntitlementManagementClient::new(channels[w % channels.len()].clone());
            let token = token.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in (w..SEED_ROWS).step_by(workers) {
                    let assignment = documented(&format!("pkg-{}", i % SEED_PACKAGES));
                    let created = client
                        .create_assignment(grpc_create(assignment, &token))
                        .await
                        .expect("seed create")
                        .into_inner();
                    ids.push(created.id.expect("an id"));
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(SEED_ROWS);
    for task in tasks {
        ids.extend(task.await.expect("seed task"));
    }
    ids
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    format!("{cores} cores (nproc), {cpu}, Linux {kernel}")
}

fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn report(bench: &Bench, paired: Option<&Paired>, scaling: Option<&Scaling>) -> String {
    let s = &bench.settings;
    let levels: Vec<String> = s.levels.iter().map(ToString::to_string).collect();
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Command: `BENCH_WARMUP_SECS={} BENCH_SECS={} BENCH_CONCURRENCY={} BENCH_SCALE_ROWS={} cargo bench --bench gateway`  ",
        s.warmup.as_secs_f64(),
        s.measure.as_secs_f64(),
        levels.join(","),
        s.scale_rows
    );
    let _ = writeln!(out, "Machine: {}  ", machine());
    let _ = writeln!(out, "Date: {}\n", date());
    let _ = writeln!(
        out,
        "Keep-alive HTTP/1.1, one connection per client; direct gRPC over {GRPC_CHANNELS} HTTP/2 \
         channels. Durable SQLite, default log settings. The load generator shares the machine. \
         Server CPU is utime+stime of the server process(es) over the measured window, per \
         request; peak RSS is VmHWM, the process's peak so far (levels run in order, on one \
         process per scenario). Reads run over {SEED_ROWS} seeded assignments ({} per package).\n",
        SEED_ROWS / SEED_PACKAGES
    );
    let _ = writeln!(
        out,
        "| scenario | conns | req/s | p50 µs | p99 µs | p99.9 µs | errors | server CPU µs/req | loadgen CPU µs/req | server peak RSS MiB |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &bench.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {:.0} | {} |",
            r.scenario,
            r.concurrency,
            r.requests_per_sec,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.errors,
            r.server_cpu,
            r.loadgen_cpu_us,
            r.peak_rss
        );
    }
    let _ = writeln!(out);
    let ratio = |a: &str, b: &str, c: usize| match (bench.find(a, c), bench.find(b, c)) {
        (Some(a), Some(b)) if b.requests_per_sec > 0.0 => {
            format!("{:.1}%", 100.0 * a.requests_per_sec / b.requests_per_sec)
        }
        _ => "n/a".into(),
    };
    let cpu_ratio = |a: &str, b: &str, c: usize| match (bench.find(a, c), bench.find(b, c)) {
        (Some(a), Some(b)) if b.server_cpu_total_us > 0.0 => {
            format!("{:.1}x", a.server_cpu_total_us / b.server_cpu_total_us)
        }
        _ => "n/a".into(),
    };
    let p50_gap = match (bench.find(HTTP_CREATE, 1), bench.find(GRPC_CREATE, 1)) {
        (Some(h), Some(g)) => format!("{:+.0} µs", h.p50_us - g.p50_us),
        _ => "n/a".into(),
    };
    let _ = writeln!(
        out,
        "Ratios at 64 connections: HTTP create all-in-one / ceiling = {} (target ≥ 35%); \
         split roles / ceiling = {} (target ≥ 22%); all-in-one server CPU per create / ceiling's = {}. \
         At 1 connection: HTTP create p50 − gRPC create p50 = {} (target ≤ 100 µs).",
        ratio(HTTP_CREATE, CEILING, 64),
        ratio(SPLIT_CREATE, CEILING, 64),
        cpu_ratio(HTTP_CREATE, CEILING, 64),
        p50_gap
    );
    if let Some(paired) = paired {
        let percent = |column| {
            let (median, min, max) = paired.spread(column);
            format!(
                "**{:.1}%** ({:.1}–{:.1}%)",
                100.0 * median,
                100.0 * min,
                100.0 * max
            )
        };
        let times = |column| {
            let (median, min, max) = paired.spread(column);
            format!("**{median:.1}x** ({min:.1}–{max:.1}x)")
        };
        let _ = writeln!(
            out,
            "\n## The targets, from alternating rounds\n\n\
             {} rounds on the same servers, each running the ceiling, the all-in-one HTTP create, \
             the split-roles HTTP create, and direct gRPC creates to that same all-in-one \
             process one after the other at {TARGET_CONNS} connections ({} s warm-up and {} s \
             measured each); the median of the rounds' ratios, then their range. A slow spell \
             of the shared machine falls on all the scenarios of a round instead of on one \
             scenario of the table above.\n\n\
             | measure | median (min–max) | target |\n|---|---|---|\n\
             | HTTP create all-in-one / ceiling, req/s | {} | ≥ 35% |\n\
             | HTTP create split roles / ceiling, req/s | {} | ≥ 22% |\n\
             | split roles: gateway process CPU per request / ceiling's | {} | ≤ 2x |\n\
             | all-in-one process CPU per create / ceiling's (front, service and store) | {} | |\n\
             | all-in-one process: CPU per HTTP create − CPU per direct gRPC create, / ceiling's | {} | |\n\n\
             The last row is what taking a create as Graph JSON over HTTP/1.1 adds to taking \
             it as gRPC over HTTP/2, in one process: the HTTP front's parsing, JSON mapping, \
             access line and in-memory gRPC client, less the HTTP/2 server framing that the \
             in-memory call does not need. The split gateway process, which also runs the \
             gRPC client's HTTP/2 connections, is the row the ≤ 2x target is read on.",
            paired.rounds.len(),
            s.warmup.as_secs_f64(),
            s.measure.as_secs_f64(),
            percent(0),
            percent(1),
            times(3),
            times(2),
            times(4),
        );
    }
    if let Some(scaling) = scaling {
        scaling_report(&mut out, scaling);
    }
    out
}

fn conns(n: usize) -> &'static str {
    if n == 1 { "conn" } else { "conns" }
}

impl Scale {
    fn find(&self, operation: &str, concurrency: usize) -> Option<&Row> {
        self.results
            .iter()
            .find(|r| r.scenario == operation && r.concurrency == concurrency)
    }
}

/// The "Scaling with stored rows" section of the report.
fn scaling_report(out: &mut String, scaling: &Scaling) {
    let _ = writeln!(out, "\n## Scaling with stored rows\n");
    let warmup = scaling.warmup.as_secs_f64();
    let measure = scaling.measure.as_secs_f64();
    let _ = writeln!(
        out,
        "One all-in-one server (durable SQLite) per size, running side by side, each database \
         seeded in bulk while its server was stopped; the assignments are spread evenly over \
         {SCALE_PACKAGES} access packages, and the lists filter on one of them \
         (`$filter=accessPackageId eq '{}'&$top={SCALE_PAGE}`). The deep page is the one the \
         `@odata.nextLink` chain reaches after half the package's rows. The reads run before the \
         creates, so they see exactly the seeded rows. Each operation at each level runs in \
         {SCALE_ROUNDS} rounds that take the sizes in turn, the order flipping each round ({warmup} s \
         warm-up, {measure} s measured each); the table shows each size's round with the median p50.\n",
        package_id(SCALE_PACKAGE)
    );
    let _ = writeln!(
        out,
        "| operation | stored rows | conns | req/s | p50 µs | p99 µs | p99.9 µs | errors | server CPU µs/req |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for operation in SCALE_OPERATIONS {
        for concurrency in SCALE_LEVELS {
            for scale in &scaling.sizes {
                let Some(r) = scale.find(operation, concurrency) else {
                    continue;
                };
                let name = if operation == SCALE_DEEP_PAGE {
                    format!("{operation} (after {} rows)", scale.deep_offset)
                } else {
                    operation.to_owned()
                };
                let _ = writeln!(
                    out,
                    "| {name} | {} | {concurrency} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} |",
                    scale.rows,
                    r.requests_per_sec,
                    r.p50_us,
                    r.p99_us,
                    r.p999_us,
                    r.errors,
                    r.server_cpu
                );
            }
        }
    }
    let seeding: Vec<String> = scaling
        .sizes
        .iter()
        .map(|s| {
            format!(
                "{} rows in {:.1} s ({:.0} MiB)",
                s.rows,
                s.seed_time.as_secs_f64(),
                s.database_mib
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "\nSeeding (bulk INSERTs into the stopped server's database file, not measured above): {}.",
        seeding.join("; ")
    );
    let (Some(small), Some(big)) = (scaling.sizes.first(), scaling.sizes.last()) else {
        return;
    };
    if scaling.ratios.is_empty() {
        return;
    }
    let ratios: Vec<String> = SCALE_OPERATIONS
        .iter()
        .map(|&operation| {
            let levels: Vec<String> = scaling
                .ratios
                .iter()
                .filter(|r| r.0 == operation)
                .map(|&(_, c, median, low, high)| {
                    format!("{median:.2}x ({low:.2}–{high:.2}) at {c} {}", conns(c))
                })
                .collect();
            format!("{operation} {}", levels.join(", "))
        })
        .collect();
    let _ = writeln!(
        out,
        "\nRatio p50({} rows) / p50({} rows) (flat is 1.00x), median of the rounds (lowest–highest): {}.",
        big.rows,
        small.rows,
        ratios.join("; ")
    );
}
