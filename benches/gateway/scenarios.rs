//! The scenarios of the main table (the ceiling, gRPC create, HTTP/1.1 and HTTP/2
//! create, split roles, get by id and a list page over seeded assignments) and the
//! alternating rounds the target ratios are read from.

use std::{path::Path, sync::Arc};

use entitlement_gateway::proto::v1::entitlement_management_client::EntitlementManagementClient;
use tonic::metadata::MetadataValue;

use crate::{
    load::{Bench, GRPC_CHANNELS, Http, Target, bearer, documented, grpc_channels, grpc_create},
    report::spread,
    servers::{
        Server, all_in_one, data_dir, grpc_create_target, mint_token, start_all_in_one,
        start_ceiling, start_split,
    },
};

/// Assignments seeded for the GET and list scenarios, spread over this many packages.
pub const SEED_ROWS: usize = 10_000;
pub const SEED_PACKAGES: usize = 10;

pub const CEILING: &str = "1. ceiling (axum + serde, in-bench)";
pub const GRPC_CREATE: &str = "2. gRPC create (all-in-one)";
pub const HTTP_CREATE: &str = "3. HTTP create (all-in-one)";
const HTTP2_CREATE: &str = "3b. HTTP/2 create (all-in-one)";
pub const SPLIT_CREATE: &str = "4. HTTP create (split roles)";
const HTTP_GET: &str = "5a. HTTP get by id (all-in-one)";
const HTTP_LIST: &str = "5b. HTTP list, filter, $top=50 (all-in-one)";

/// The concurrency the targets are set at.
pub const TARGET_CONNS: usize = 64;

/// Runs the scenarios of the main table, each at every level, into `bench`'s rows.
pub async fn table(bench: &mut Bench, tmp: &Path) {
    // 1. The ceiling.
    {
        let (server, target) = start_ceiling(tmp);
        bench
            .scenario(CEILING, target, &[("ceiling", server.pid())])
            .await;
    }

    // 2. Direct gRPC create, all-in-one.
    {
        let data = data_dir(tmp, "grpc");
        let server = Server::product(tmp, "grpc", &all_in_one(&data));
        let target = grpc_create_target(&server, &mint_token(&data)).await;
        bench
            .scenario(GRPC_CREATE, target, &[("all", server.pid())])
            .await;
    }

    // 3. HTTP create through the gateway, all-in-one.
    {
        let (server, target) = start_all_in_one(tmp, "http", false);
        bench
            .scenario(HTTP_CREATE, target, &[("all", server.pid())])
            .await;
    }

    // 3b. The same over HTTP/2 (h2c, prior knowledge), one connection per client.
    {
        let (server, target) = start_all_in_one(tmp, "http2", true);
        bench
            .scenario(HTTP2_CREATE, target, &[("all", server.pid())])
            .await;
    }

    // 4. Split roles: a gateway process in front of a gRPC process, over loopback.
    {
        let (gateway, service, target) = start_split(tmp, "split");
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
        let data = data_dir(tmp, "read");
        let server = Server::product(tmp, "read", &all_in_one(&data));
        let token = mint_token(&data);
        let ids = seed(&server.grpc_url(), None, &bearer(&token)).await;
        let base = server.collection_url();
        let target = Target::HttpGet {
            base: base.clone(),
            ids,
            token: token.clone(),
            http: Http::default(),
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
}

/// Creates [`SEED_ROWS`] assignments over gRPC (over TLS trusting only `ca_pem`
/// when `url` is https://), spread over [`SEED_PACKAGES`] access packages
/// (`pkg-0`...); returns their ids.
pub async fn seed(
    url: &str,
    ca_pem: Option<&str>,
    token: &MetadataValue<tonic::metadata::Ascii>,
) -> Vec<String> {
    let channels = grpc_channels(url, GRPC_CHANNELS, ca_pem).await;
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

/// The target ratios, one per round of [`paired`].
pub struct Paired {
    /// HTTP create all-in-one / ceiling, split roles / ceiling (requests/s);
    /// all-in-one server CPU / ceiling's, split gateway process CPU / ceiling's, and
    /// (all-in-one CPU per HTTP create − its CPU per direct gRPC create) / ceiling's
    /// (per request).
    pub rounds: Vec<[f64; 5]>,
}

impl Paired {
    /// The [`spread`] of one column of the rounds.
    pub fn spread(&self, column: usize) -> (f64, f64, f64) {
        spread(self.rounds.iter().map(|r| r[column]).collect()).unwrap_or((
            f64::NAN,
            f64::NAN,
            f64::NAN,
        ))
    }
}

/// Runs the ceiling, the all-in-one HTTP create, the split-roles HTTP create and
/// direct gRPC creates to the same all-in-one process one after the other at
/// [`TARGET_CONNS`], round after round on the same servers: a slow spell of a shared
/// machine then falls on all of a round, not on one scenario of the run.
pub async fn paired(bench: &Bench, tmp: &Path) -> Paired {
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
