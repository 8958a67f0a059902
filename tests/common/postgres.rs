//! A PostgreSQL database of its own for each test, created and dropped around it.
//!
//! Shared by the test targets that need PostgreSQL (include it with
//! `#[path = "common/postgres.rs"] mod postgres_db;`).
//!
//! `ENTITLEMENT_GATEWAY_TEST_POSTGRES` is the admin URL (default
//! `postgres://postgres@127.0.0.1:5432/test`); the role needs CREATEDB. When the
//! server cannot be reached a test says `SKIPPED` on stderr and passes, unless
//! `ENTITLEMENT_GATEWAY_REQUIRE_POSTGRES=1`, when it fails.

use std::{future::Future, io::Write as _, time::Duration};

use sqlx::{Connection as _, PgConnection};

/// The admin URL's variable, and its default.
const ADMIN_URL_VAR: &str = "ENTITLEMENT_GATEWAY_TEST_POSTGRES";
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Set to 1 (as CI does) to fail instead of skipping when PostgreSQL is down.
const REQUIRE_VAR: &str = "ENTITLEMENT_GATEWAY_REQUIRE_POSTGRES";

/// Runs `case` with the URL of a new, empty PostgreSQL database, and drops the
/// database afterwards, whether the case passed or not.
pub async fn with_postgres<F, Fut>(case: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admin_url = std::env::var(ADMIN_URL_VAR).unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
    let Some(mut admin) = connect_admin(&admin_url).await else {
        return;
    };
    let name = format!("eg_test_{}", uuid::Uuid::new_v4().simple());
    // template0: nobody is ever connected to it, and it takes any encoding.
    sqlx::query(&format!(
        "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"
    ))
    .execute(&mut admin)
    .await
    .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
    // On a task of its own, so that a panicking case still comes back here.
    let outcome = tokio::spawn(case(with_database(&admin_url, &name))).await;
    drop_database(admin, &admin_url, &name).await;
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("the case did not finish: {error}"),
        }
    }
}

/// The admin connection; `None` (after saying so) when PostgreSQL is not reachable
/// and not required.
async fn connect_admin(url: &str) -> Option<PgConnection> {
    let error =
        match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url)).await {
            Ok(Ok(connection)) => return Some(connection),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within 10 s".to_owned(),
        };
    let message = format!("PostgreSQL not reachable at {} ({error})", redact(url));
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!("{message}, and {REQUIRE_VAR}=1 requires it");
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a PostgreSQL test")
        .to_owned();
    // To the process's stderr itself: the test harness captures eprintln!.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {message}: {test} did not run (set {ADMIN_URL_VAR} to point elsewhere)"
    );
    None
}

/// Drops a test database, best effort: a failure is reported, not raised.
async fn drop_database(admin: PgConnection, admin_url: &str, name: &str) {
    // The case's own connection may have broken; a fresh one is more likely to work.
    let _ = admin.close().await;
    let result = async {
        let mut admin = PgConnection::connect(admin_url).await?;
        // Sessions the dropped store left behind; DROP waits a little for them to go.
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut admin)
        .await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut admin)
            .await?;
        admin.close().await
    }
    .await;
    if let Err(e) = result {
        let _ = writeln!(
            std::io::stderr(),
            "warning: cannot drop the test database {name}: {e}"
        );
    }
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
