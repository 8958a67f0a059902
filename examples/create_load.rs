//! A small load generator for the HTTP create path: N keep-alive clients POST the
//! documented assignment for a while, then it prints creates per second and
//! latency percentiles. Used for quick before/after figures, e.g.
//!
//! ```sh
//! cargo run --release --example create_load -- http://127.0.0.1:8080 "$TOKEN" 64 5
//! ```
//!
//! A fifth argument, `h2`, makes each client speak HTTP/2 (prior knowledge) instead
//! of HTTP/1.1.

use std::time::{Duration, Instant};

const BODY: &str = include_str!("../tests/fixtures/seed/request.json");

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (base, token, clients, seconds, h2) = match args.as_slice() {
        [_, base, token, clients, seconds] => (base, token, clients, seconds, false),
        [_, base, token, clients, seconds, h2] if h2 == "h2" => {
            (base, token, clients, seconds, true)
        }
        _ => {
            eprintln!("usage: create_load BASE_URL TOKEN CLIENTS SECONDS [h2]");
            std::process::exit(2);
        }
    };
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
