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
//! Then HTTPS ("HTTPS", a section of its own): the binary with `--tls-cert` and
//! `--tls-key` (a throwaway CA and a server certificate for 127.0.0.1, made with
//! rcgen into the temp dir; the load clients trust that CA only) beside a plaintext
//! one, both all-in-one with [`scenarios::SEED_ROWS`] seeded assignments: the HTTP
//! create and GET by id at [`scenarios::TARGET_CONNS`] connections over keep-alive
//! HTTP/1.1 and over HTTP/2 (h2c on plaintext, `h2` by ALPN over TLS), in rounds
//! that alternate plaintext and HTTPS; the TLS share of the server's CPU per request
//! is taken round by round (median and range).
//!
//! Then how cost grows with data ("Scaling with stored rows", a second table): for
//! 10 thousand and for `BENCH_SCALE_ROWS` (default 1 million) stored assignments, a
//! fresh all-in-one server whose SQLite database holds that many rows (the two run
//! side by side), and through its HTTP face: GET by id of a random stored
//! assignment, the first page of a list filtered on one access package (`$top=50`),
//! a page of the same list deep inside it (the `@odata.nextLink` reached by walking
//! half the package's rows), and then the create (POST of the seed body), each at 1
//! and 16 connections for a short fixed time, in [`scaling::SCALE_ROUNDS`] rounds that take
//! the two sizes in turn. The rows are seeded in bulk, not through the API: the binary is started once
//! on the empty data dir to create and migrate the database and stopped (SIGTERM),
//! then this benchmark writes the rows into the database file directly (sorted by id,
//! multi-row INSERTs in large transactions, no journal or sync: setup, not
//! measured, and timed separately), leaves it in WAL mode, and starts the binary on
//! it again. The rows are spread evenly over [`scaling::SCALE_PACKAGES`] access packages, so a
//! package holds 1/[`scaling::SCALE_PACKAGES`] of them and the deep page lies further from
//! the start as the store grows. Flat latency from the small size to the big one is
//! what an index per filterable property and keyset paging promise; the ratios of
//! the p50s, round by round (median and range), are printed under the table.
//!
//! Settings (environment): `BENCH_WARMUP_SECS` (default 1), `BENCH_SECS` (default 3),
//! `BENCH_CONCURRENCY` (comma-separated levels, default `1,16,64,256`),
//! `BENCH_SCALE_ROWS` (the big size of the scaling section, default 1000000; 0 skips
//! the section), `BENCH_PAIRED_ROUNDS` (rounds of the alternating target measurement,
//! default 9; 0 skips it), `BENCH_HTTPS_ROUNDS` (rounds of the HTTPS section, default
//! 5; 0 skips the section). The scaling section warms up for at most 0.5 s and
//! measures for at most 2 s per operation and level (less when the first two settings
//! are lower).
//! There are no assertions on timings.
//!
//! This file is the entry: it reads the settings, runs the sections and writes the
//! report. The modules: [`servers`] (the processes under test and the ceiling),
//! [`load`] (load generation and measurement), [`scenarios`] (the main table's
//! scenarios and the alternating rounds), [`https`] (the HTTPS section), [`scaling`]
//! (the scaling section) and [`report`] (statistics and `BENCHMARKS.md`).

mod https;
mod load;
mod report;
mod scaling;
mod scenarios;
mod servers;

use std::{fs, path::PathBuf, time::Duration};

use tempfile::TempDir;

use crate::{
    load::{Bench, clock_ticks_per_sec},
    servers::CEILING_ENV,
};

fn main() {
    if std::env::var_os(CEILING_ENV).is_some() {
        runtime().block_on(servers::ceiling::serve());
        return;
    }
    let settings = Settings::from_env();
    runtime().block_on(run(settings));
}

/// The multi-threaded runtime the benchmark and the ceiling run on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub struct Settings {
    pub warmup: Duration,
    pub measure: Duration,
    pub levels: Vec<usize>,
    /// The big size of the scaling section (0: no scaling section).
    pub scale_rows: usize,
    /// Rounds of the alternating target measurement (0: none).
    pub paired_rounds: usize,
    /// Rounds of the HTTPS section (0: no HTTPS section).
    pub https_rounds: usize,
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
        let scale_rows =
            std::env::var("BENCH_SCALE_ROWS").map_or(scaling::SCALE_ROWS_DEFAULT, |v| {
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
            https_rounds: std::env::var("BENCH_HTTPS_ROUNDS").map_or(
                https::HTTPS_ROUNDS_DEFAULT,
                |v| {
                    v.trim()
                        .parse()
                        .expect("BENCH_HTTPS_ROUNDS: a number of rounds")
                },
            ),
        }
    }
}

async fn run(settings: Settings) {
    let tmp = TempDir::new().expect("temp dir");
    let mut bench = Bench {
        settings,
        ticks_per_sec: clock_ticks_per_sec(),
        rows: Vec::new(),
    };

    // The scenarios of the main table.
    scenarios::table(&mut bench, tmp.path()).await;

    // The target ratios again, from rounds that alternate the scenarios.
    let paired = if bench.settings.paired_rounds > 0 {
        Some(scenarios::paired(&bench, tmp.path()).await)
    } else {
        None
    };

    // Plaintext against HTTPS, from alternating rounds.
    let https = if bench.settings.https_rounds > 0 {
        Some(https::https(&bench, tmp.path()).await)
    } else {
        None
    };

    // How cost grows with stored rows.
    let scaling = if bench.settings.scale_rows > 0 {
        let mut sizes = vec![scaling::SCALE_SMALL_ROWS, bench.settings.scale_rows];
        sizes.dedup();
        Some(scaling::scaling(&bench.settings, bench.ticks_per_sec, tmp.path(), &sizes).await)
    } else {
        None
    };

    let report = report::report(&bench, paired.as_ref(), https.as_ref(), scaling.as_ref());
    println!("{report}");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    fs::write(&path, &report).expect("write BENCHMARKS.md");
    eprintln!("wrote {}", path.display());
}
