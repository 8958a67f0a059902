//! The "Scaling with stored rows" section: one all-in-one server per size over a
//! database seeded in bulk while it was stopped, and rounds that take the sizes in
//! turn at each operation and level.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    Settings,
    load::{Bench, Http, Row, Target, find_row, http_client},
    report::spread,
    servers::{Server, all_in_one, data_dir, mint_token},
};

/// The small size of the scaling section; the big one is `BENCH_SCALE_ROWS`.
pub const SCALE_SMALL_ROWS: usize = 10_000;
pub const SCALE_ROWS_DEFAULT: usize = 1_000_000;
/// Access packages the scaling rows are spread over, evenly (`pkg-000`...).
pub const SCALE_PACKAGES: usize = 100;
/// The package whose list pages the scaling section reads.
pub const SCALE_PACKAGE: usize = 42;
/// `$top` of the scaling section's list pages.
pub const SCALE_PAGE: usize = 50;
/// Connections of the scaling section, and its longest warm-up and measurement.
pub const SCALE_LEVELS: [usize; 2] = [1, 16];
const SCALE_WARMUP: Duration = Duration::from_millis(500);
const SCALE_MEASURE: Duration = Duration::from_secs(2);
/// Stored ids the scaling GETs pick from, at most.
const SCALE_GET_IDS: usize = 100_000;
/// Rounds of the scaling section at each operation and level (see [`scaling`]).
pub const SCALE_ROUNDS: usize = 4;
/// Rows per INSERT statement (10 binds each, under SQLite's 32766) and per
/// transaction, when seeding the scaling databases.
const BULK_STATEMENT_ROWS: usize = 500;
const BULK_TRANSACTION_ROWS: usize = 100_000;

/// The scaling section's results at one size.
pub struct Scale {
    pub rows: usize,
    pub seed_time: Duration,
    pub database_mib: f64,
    /// The rows of the package before the deep page.
    pub deep_offset: usize,
    /// Per operation and level, the round with the median p50.
    results: Vec<Row>,
}

impl Scale {
    pub fn find(&self, operation: &str, concurrency: usize) -> Option<&Row> {
        find_row(&self.results, operation, concurrency)
    }
}

/// The scaling section: each size's results, and the p50 ratios of the big size
/// to the small one, round by round.
pub struct Scaling {
    pub sizes: Vec<Scale>,
    pub warmup: Duration,
    pub measure: Duration,
    /// (operation, connections, median, lowest, highest) of the rounds' ratios.
    pub ratios: Vec<(&'static str, usize, f64, f64, f64)>,
}

const SCALE_CREATE: &str = "create (POST)";
const SCALE_GET: &str = "get by id";
const SCALE_FIRST_PAGE: &str = "list, filter, $top=50: first page";
pub const SCALE_DEEP_PAGE: &str = "list, filter, $top=50: deep page";
/// In the order they run: the reads first, so that they see exactly the seeded
/// rows; the creates add rows.
pub const SCALE_OPERATIONS: [&str; 4] =
    [SCALE_GET, SCALE_FIRST_PAGE, SCALE_DEEP_PAGE, SCALE_CREATE];

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
    let base = server.collection_url();
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
            http: Http::default(),
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
            http: Http::default(),
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
pub async fn scaling(
    settings: &Settings,
    ticks_per_sec: u64,
    tmp: &Path,
    sizes: &[usize],
) -> Scaling {
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
            https_rounds: 0,
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
pub fn package_id(index: usize) -> String {
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
