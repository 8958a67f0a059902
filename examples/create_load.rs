//! A small load generator for the HTTP create path: N keep-alive clients POST the
//! documented assignment for a while, then it prints creates per second and
//! latency percentiles. Used for quick before/after figures, e.g.
//!
//! ```sh
//! cargo run --release --example create_load -- http://127.0.0.1:8080 "$TOKEN" 64 5
//! ```
//!
//! A fifth argument, `h2`, makes each client speak HTTP/2 (prior knowledge) instead
//! of HTTP/1.1; `grpc` makes the clients call `CreateAssignment` on the gRPC port
//! that `BASE_URL` then names, over four shared channels (as the benchmark's direct
//! gRPC scenario does).

use std::time::{Duration, Instant};

use entitlement_gateway::{
    http::graph_json::parse_assignment,
    proto::v1::{
        CreateAssignmentRequest, entitlement_management_client::EntitlementManagementClient,
    },
};

const BODY: &str = include_str!("../tests/fixtures/seed/request.json");

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (base, token, clients, seconds, mode) = match args.as_slice() {
        [_, base, token, clients, seconds] => (base, token, clients, seconds, ""),
        [_, base, token, clients, seconds, mode] if mode == "h2" || mode == "grpc" => {
            (base, token, clients, seconds, mode.as_str())
        }
        _ => {
            eprintln!("usage: create_load BASE_URL TOKEN CLIENTS SECONDS [h2|grpc]");
            std::process::exit(2);
        }
    };
    let h2 = mode == "h2";
    let clients: usize = clients.parse().expect("CLIENTS");
    let duration = Duration::from_secs(seconds.parse().expect("SECONDS"));
    let url =
        format!("{base}/beta/identityGovernance/entitlementManagement/accessPackageAssignments");
    // A client (and so a connection) per task, as the benchmark's clients have.
    let client = move || {
        let builder = reqwest::Client::builder().pool_max_idle_per_host(1);
        let builder = if h2 {
            builder.http2_prior_knowledge()
        } else {
            builder
        };
        builder.build().unwrap()
    };
    let until = Instant::now() + duration;
    if mode == "grpc" {
        let tasks = grpc_tasks(base, token, clients, until).await;
        return report(tasks, clients, duration).await;
    }
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url, token) = (client(), url.clone(), token.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                while Instant::now() < until {
                    let start = Instant::now();
                    let response = http
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(BODY)
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let _ = r.bytes().await;
                            latencies.push(start.elapsed());
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    report(tasks, clients, duration).await;
}

type Task = tokio::task::JoinHandle<(Vec<Duration>, u64)>;

/// Clients that call `CreateAssignment` with the documented assignment until `until`.
async fn grpc_tasks(base: &str, token: &str, clients: usize, until: Instant) -> Vec<Task> {
    let mut channels = Vec::new();
    for _ in 0..4 {
        let channel = tonic::transport::Channel::from_shared(base.to_owned())
            .expect("gRPC URL")
            .connect()
            .await
            .expect("gRPC connect");
        channels.push(EntitlementManagementClient::new(channel));
    }
    let bearer: tonic::metadata::MetadataValue<_> =
        format!("Bearer {token}").parse().expect("ascii token");
    // The same documented assignment the HTTP clients post, through the front's mapping.
    let assignment = parse_assignment(BODY.as_bytes()).expect("the seed request");
    (0..clients)
        .map(|i| {
            let mut client = channels[i % channels.len()].clone();
            let (bearer, assignment) = (bearer.clone(), assignment.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                while Instant::now() < until {
                    let start = Instant::now();
                    let mut request = tonic::Request::new(CreateAssignmentRequest {
                        assignment: Some(assignment.clone()),
                    });
                    request
                        .metadata_mut()
                        .insert("authorization", bearer.clone());
                    match client.create_assignment(request).await {
                        Ok(_) => latencies.push(start.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect()
}

/// Prints creates per second and latency percentiles of the finished clients.
async fn report(tasks: Vec<Task>, clients: usize, duration: Duration) {
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (l, e) = task.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "clients={clients} creates={} errors={errors} creates/s={:.0} p50={:?} p99={:?}",
        latencies.len(),
        latencies.len() as f64 / duration.as_secs_f64(),
        at(0.50),
        at(0.99)
    );
}
