//! Load generation and measurement: what the clients send ([`Target`]), the clients
//! themselves, and one measured level of a scenario ([`Bench::level`]): requests/s,
//! latency percentiles, errors, CPU per request from /proc and peak RSS.

use std::{
    fs,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use entitlement_gateway::proto::v1::{
    AccessPackageAssignment, CreateAssignmentRequest,
    entitlement_management_client::EntitlementManagementClient,
};
use prost_types::Timestamp;
use tonic::{
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig},
};

use crate::{Settings, servers::stdout_of};

/// The seed request of the Graph documentation, as the tests send it.
const SEED_REQUEST: &str = include_str!("../../tests/fixtures/seed/request.json");
/// gRPC channels (HTTP/2 connections) the direct gRPC load spreads over.
pub const GRPC_CHANNELS: usize = 4;

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
pub fn peak_rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn clock_ticks_per_sec() -> u64 {
    stdout_of(Command::new("getconf").arg("CLK_TCK"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

/// How an HTTP client talks to the server: HTTP/1.1 or HTTP/2, and over TLS when
/// the URL is https:// (trusting only `ca`, when given). The default is
/// keep-alive HTTP/1.1.
#[derive(Clone, Default)]
pub struct Http {
    /// HTTP/2: by prior knowledge (h2c) over plaintext, by ALPN (`h2` only) over TLS.
    pub h2: bool,
    /// The CA the client trusts instead of the built-in roots.
    pub ca: Option<reqwest::Certificate>,
}

impl Http {
    pub fn h2(h2: bool) -> Self {
        Self { h2, ca: None }
    }

    /// A client of its own (so one connection per load client).
    pub fn client(&self) -> reqwest::Client {
        let builder = reqwest::Client::builder();
        let builder = if self.h2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        };
        let builder = match &self.ca {
            Some(ca) => builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca.clone()),
            None => builder,
        };
        builder
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .build()
            .expect("HTTP client")
    }
}

/// What one load-generating client does, again and again.
pub enum Target {
    /// POST the seed body; expects 201.
    HttpCreate {
        url: String,
        token: String,
        http: Http,
    },
    /// GET one of these ids; expects 200.
    HttpGet {
        base: String,
        ids: Vec<String>,
        token: String,
        http: Http,
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
pub fn documented(access_package_id: &str) -> AccessPackageAssignment {
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

pub fn grpc_create(
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

pub fn bearer(token: &str) -> MetadataValue<tonic::metadata::Ascii> {
    format!("Bearer {token}").parse().expect("ascii token")
}

/// `n` gRPC channels to `url`; over TLS (an https:// URL) trusting only `ca_pem`.
pub async fn grpc_channels(url: &str, n: usize, ca_pem: Option<&str>) -> Vec<Channel> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        let endpoint = Channel::from_shared(url.to_owned()).expect("gRPC URL");
        let endpoint = match ca_pem {
            Some(ca) => endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
                .expect("gRPC TLS"),
            None => endpoint,
        };
        channels.push(endpoint.connect().await.expect("gRPC connect"));
    }
    channels
}

pub fn http_client(h2: bool) -> reqwest::Client {
    Http::h2(h2).client()
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
    let http = match &*target {
        Target::HttpCreate { http, .. } | Target::HttpGet { http, .. } => http.client(),
        _ => Http::default().client(),
    };
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
            Target::HttpGet {
                base, ids, token, ..
            } => {
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
pub struct Row {
    pub scenario: String,
    pub concurrency: usize,
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub errors: u64,
    pub server_cpu: String,
    pub server_cpu_total_us: f64,
    /// Server CPU per request of each server, in the order given.
    pub server_cpu_us: Vec<f64>,
    pub loadgen_cpu_us: f64,
    pub peak_rss: String,
}

/// The row of `rows` for `scenario` at `concurrency`.
pub fn find_row<'a>(rows: &'a [Row], scenario: &str, concurrency: usize) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.scenario == scenario && r.concurrency == concurrency)
}

pub struct Bench {
    pub settings: Settings,
    pub ticks_per_sec: u64,
    pub rows: Vec<Row>,
}

impl Bench {
    /// Runs `target` at every concurrency level against `servers` (name, pid).
    pub async fn scenario(&mut self, name: &str, target: Target, servers: &[(&str, u32)]) {
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

    pub async fn level(
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
        let server_ticks = || -> Vec<u64> {
            servers
                .iter()
                .map(|(_, pid)| cpu_ticks(&pid.to_string()))
                .collect()
        };
        tokio::time::sleep_until(measure_from.into()).await;
        let cpu_before = server_ticks();
        let self_before = cpu_ticks("self");
        tokio::time::sleep_until(until.into()).await;
        let cpu_after = server_ticks();
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

    pub fn find(&self, scenario: &str, concurrency: usize) -> Option<&Row> {
        find_row(&self.rows, scenario, concurrency)
    }
}
