//! Statistics over rounds (median and range) and the report: the Markdown that is
//! printed to stdout and written to `BENCHMARKS.md`.

use std::{fmt::Write as _, fs, process::Command};

use crate::{
    https::Https,
    load::{Bench, GRPC_CHANNELS, Row},
    scaling::{
        SCALE_DEEP_PAGE, SCALE_LEVELS, SCALE_OPERATIONS, SCALE_PACKAGE, SCALE_PACKAGES, SCALE_PAGE,
        SCALE_ROUNDS, Scaling, package_id,
    },
    scenarios::{
        CEILING, GRPC_CREATE, HTTP_CREATE, Paired, SEED_PACKAGES, SEED_ROWS, SPLIT_CREATE,
        TARGET_CONNS,
    },
    servers::stdout_of,
};

/// The median, minimum and maximum of `values` (none when there are none).
pub fn spread(mut values: Vec<f64>) -> Option<(f64, f64, f64)> {
    values.sort_by(f64::total_cmp);
    let median = *values.get(values.len() / 2)?;
    Some((median, values[0], values[values.len() - 1]))
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
    stdout_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_default()
}

pub fn report(
    bench: &Bench,
    paired: Option<&Paired>,
    https: Option<&Https>,
    scaling: Option<&Scaling>,
) -> String {
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
    rows_table(&mut out, &bench.rows, true);
    let _ = writeln!(out);
    let ratio = |a, b, c| {
        compare(
            bench,
            a,
            b,
            c,
            |r| r.requests_per_sec,
            |a, b| format!("{:.1}%", 100.0 * a / b),
        )
    };
    let cpu_ratio = |a, b, c| {
        compare(
            bench,
            a,
            b,
            c,
            |r| r.server_cpu_total_us,
            |a, b| format!("{:.1}x", a / b),
        )
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
    if let Some(https) = https {
        https_report(&mut out, bench, https);
    }
    if let Some(scaling) = scaling {
        scaling_report(&mut out, scaling);
    }
    out
}

/// The "HTTPS" section of the report.
fn https_report(out: &mut String, bench: &Bench, https: &Https) {
    let s = &bench.settings;
    let _ = writeln!(out, "\n## HTTPS\n");
    let _ = writeln!(
        out,
        "Two all-in-one servers (durable SQLite, {SEED_ROWS} seeded assignments each for the \
         gets) running side by side: one plaintext, one started with `--tls-cert` and \
         `--tls-key`, which serves its HTTP port over TLS (ALPN `h2` and `http/1.1`). Its \
         certificate is a throwaway ECDSA P-256 one for 127.0.0.1, signed by a CA made for the \
         run with rcgen; the load clients trust that CA only. The TLS crypto provider is rustls \
         with ring, in the server and in the load clients (reqwest); a handshake with the HTTPS \
         port negotiated {}. {} rounds (`BENCH_HTTPS_ROUNDS`), each running the create (POST of \
         the seed body) and then the GET by id at {TARGET_CONNS} connections, one per client, \
         over keep-alive HTTP/1.1 and over HTTP/2 (h2c by prior knowledge on plaintext, `h2` by \
         ALPN over TLS), on the plaintext server and on the HTTPS one in turn, the order of each \
         pair flipping each round ({} s warm-up and {} s measured each). The clients connect at \
         the start of the warm-up, so the measured windows hold no handshakes: what TLS costs \
         here is record encryption and decryption. The table shows each scenario's round with \
         the median req/s; server CPU is the server process's, per request.\n",
        https.handshake,
        https.rounds,
        s.warmup.as_secs_f64(),
        s.measure.as_secs_f64(),
    );
    rows_table(out, &https.rows, false);
    let _ = writeln!(
        out,
        "\nTLS share of the server's CPU per request, (over HTTPS − over plaintext) / over HTTPS, \
         with the ratio HTTPS / plaintext of the CPU per request and of req/s; each the median \
         of the rounds' values (lowest–highest), the CPU per request the median of each side's \
         rounds:\n"
    );
    for share in &https.shares {
        let (median, low, high) = share.share;
        let (cpu, cpu_low, cpu_high) = share.cpu_ratio;
        let (rate, rate_low, rate_high) = share.throughput_ratio;
        let _ = writeln!(
            out,
            "- {} {}: {:.0} µs/req over plaintext, {:.0} over HTTPS; TLS share **{:.1}%** \
             ({:.1}–{:.1}%); CPU per request HTTPS / plaintext **{cpu:.2}x** \
             ({cpu_low:.2}–{cpu_high:.2}x); req/s HTTPS / plaintext {:.1}% ({:.1}–{:.1}%).",
            share.protocol,
            share.operation,
            share.plaintext_cpu_us,
            share.tls_cpu_us,
            100.0 * median,
            100.0 * low,
            100.0 * high,
            100.0 * rate,
            100.0 * rate_low,
            100.0 * rate_high,
        );
    }
    let (plain_rss, tls_rss) = https.peak_rss_mib;
    let _ = writeln!(
        out,
        "\nServer peak RSS (VmHWM) at the end of the section: plaintext {plain_rss:.1} MiB, \
         HTTPS {tls_rss:.1} MiB."
    );
}

/// `value` of scenario `a` against `value` of scenario `b`, both at `c` connections,
/// as `show` writes the two; n/a when a row is missing or `b`'s value is not positive.
/// The table of measured rows, with the server's peak RSS column when `rss`.
fn rows_table(out: &mut String, rows: &[Row], rss: bool) {
    let rss_head = if rss { " server peak RSS MiB |" } else { "" };
    let rss_rule = if rss { "---:|" } else { "" };
    let _ = writeln!(
        out,
        "| scenario | conns | req/s | p50 µs | p99 µs | p99.9 µs | errors | server CPU µs/req | loadgen CPU µs/req |{rss_head}"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|{rss_rule}"
    );
    for r in rows {
        let rss_cell = if rss {
            format!(" {} |", r.peak_rss)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {:.0} |{rss_cell}",
            r.scenario,
            r.concurrency,
            r.requests_per_sec,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.errors,
            r.server_cpu,
            r.loadgen_cpu_us,
        );
    }
}

fn compare(
    bench: &Bench,
    a: &str,
    b: &str,
    c: usize,
    value: fn(&Row) -> f64,
    show: fn(f64, f64) -> String,
) -> String {
    match (bench.find(a, c), bench.find(b, c)) {
        (Some(a), Some(b)) if value(b) > 0.0 => show(value(a), value(b)),
        _ => "n/a".into(),
    }
}

fn conns(n: usize) -> &'static str {
    if n == 1 { "conn" } else { "conns" }
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
