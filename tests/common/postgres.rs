//! PostgreSQL databases for the tests: each test (or app) gets a new, empty one,
//! made from the server's default database and dropped after use by the test
//! itself, whether it passed or not.
//!
//! Shared by the test targets that need PostgreSQL (include it with
//! `#[path = "common/postgres.rs"] mod postgres_db;`).
//!
//! - `ENTITLEMENT_GATEWAY_TEST_POSTGRES`: the admin URL, default
//!   `postgres://postgres@127.0.0.1:5432/postgres` (a stock server's default
//!   database); the role needs CREATEDB. The test databases are made beside it,
//!   named `eg_test_<uuid>`.
//! - A PostgreSQL test FAILS when the server cannot be reached, unless
//!   `ENTITLEMENT_GATEWAY_SKIP_POSTGRES=1`: then the PostgreSQL tests do not run
//!   at all (not even trying to connect), and each says so on stderr
//!   (`not run: ENTITLEMENT_GATEWAY_SKIP_POSTGRES=1`).

// Each test target uses its own part of this file.
#![allow(dead_code)]

use std::{future::Future, io::Write as _, time::Duration};

use sqlx::{Connection as _, PgConnection};

/// The admin URL's variable, and its default.
pub const ADMIN_URL_VAR: &str = "ENTITLEMENT_GATEWAY_TEST_POSTGRES";
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Set to 1 to not run the PostgreSQL tests (each says so on stderr).
pub const SKIP_VAR: &str = "ENTITLEMENT_GATEWAY_SKIP_POSTGRES";
/// The prefix of every database the tests make.
pub const PREFIX: &str = "eg_test_";

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin URL: `ENTITLEMENT_GATEWAY_TEST_POSTGRES`, or its default.
pub fn admin_url() -> String {
    std::env::var(ADMIN_URL_VAR).unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// Whether the PostgreSQL tests are opted out (`ENTITLEMENT_GATEWAY_SKIP_POSTGRES=1`).
/// Unset, empty or `0` is no; any other value fails the test rather than guess.
pub fn opted_out() -> bool {
    match std::env::var(SKIP_VAR) {
        Err(std::env::VarError::NotPresent) => false,
        Ok(value) if value.is_empty() || value == "0" => false,
        Ok(value) if value == "1" => true,
        other => panic!("{SKIP_VAR} is {other:?}: set it to 1 (or unset it, or 0)"),
    }
}

/// Says on stderr that the running test did not run (`scope`: "" or, say, " on
/// PostgreSQL") because of the opt-out, with a `note`. Written to the process's
/// stderr itself, so that the test harness, which captures the output of passing
/// tests, shows it.
pub fn report_not_run(scope: &str, note: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a PostgreSQL test")
        .to_owned();
    let _ = writeln!(
        std::io::stderr(),
        "{test}: not run{scope}: {SKIP_VAR}=1 ({note})"
    );
}

/// A new, empty PostgreSQL database of the test's own, dropped when this is
/// dropped (or, awaited, by [`TestDatabase::drop_now`]).
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
    /// Whether it is dropped already.
    dropped: bool,
}

impl TestDatabase {
    /// Creates a database on the server of the admin URL. Panics (the test fails)
    /// when the server cannot be reached or refuses.
    pub async fn create() -> Self {
        let admin_url = admin_url();
        let mut admin = connect(&admin_url).await.unwrap_or_else(|error| {
            panic!(
                "PostgreSQL is not reachable at {} ({error}): start it, point {ADMIN_URL_VAR} \
                 at one, or set {SKIP_VAR}=1 to not run the PostgreSQL tests",
                redact(&admin_url)
            )
        });
        let name = format!("{PREFIX}{}", uuid::Uuid::new_v4().simple());
        // template0: nobody is ever connected to it, and it takes any encoding.
        sqlx::query(&format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"
        ))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        let _ = admin.close().await;
        Self {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
            dropped: false,
        }
    }

    /// The database's URL (the admin URL's, with this database).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database now, its sessions ended first.
    ///
    /// # Errors
    /// What the server said, when it could not be dropped.
    pub async fn drop_now(mut self) -> Result<(), String> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await
    }
}

impl Drop for TestDatabase {
    /// Best effort, and only a warning on failure: this may run while a failing
    /// test unwinds. On a thread and runtime of its own, since a test's runtime
    /// may be the current thread's (and may be shutting down).
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(drop_database(&admin_url, &name))
        })
        .join();
        let error = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error,
            Err(_) => "the dropping thread panicked".to_owned(),
        };
        let _ = writeln!(
            std::io::stderr(),
            "warning: cannot drop the test database {}: {error}",
            self.name
        );
    }
}

/// Runs `case` with the URL of a new, empty PostgreSQL database, and drops the
/// database afterwards, whether the case passed or not. With
/// `ENTITLEMENT_GATEWAY_SKIP_POSTGRES=1`, does not run it, and says so.
pub async fn with_postgres<F, Fut>(case: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if opted_out() {
        report_not_run("", "a PostgreSQL test; unset the variable to run it");
        return;
    }
    let database = TestDatabase::create().await;
    // On a task of its own, so that a panicking case still comes back here.
    let outcome = tokio::spawn(case(database.url().to_owned())).await;
    let name = database.name().to_owned();
    let dropped = database.drop_now().await;
    match outcome {
        Ok(()) => {
            if let Err(error) = dropped {
                panic!("the test passed, but its database {name} was not dropped: {error}");
            }
        }
        Err(error) => {
            if let Err(error) = dropped {
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: cannot drop the test database {name}: {error}"
                );
            }
            match error.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(error) => panic!("the case did not finish: {error}"),
            }
        }
    }
}

/// A connection to `url`, within [`CONNECT_TIMEOUT`].
async fn connect(url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// Drops the database `name` through a new admin connection (the test's own may
/// have broken), ending the sessions left on it first.
async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
    let mut admin = connect(admin_url).await?;
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    let statement = if version >= 130_000 {
        // Ends the sessions (of a killed process's pool, say) and drops, at once.
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    } else {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
        format!("DROP DATABASE IF EXISTS {name}")
    };
    sqlx::query(&statement)
        .execute(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    admin.close().await.map_err(|e| e.to_string())
}

/// `url` with its database (path) replaced by `name`, the query kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// `url` with any password replaced, to print.
pub fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => match url[start..start + at].find(':') {
            Some(colon) => format!("{}***{}", &url[..start + colon + 1], &url[start + at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
