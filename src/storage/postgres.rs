//! The shared backend: a PostgreSQL database, for several instances of the service
//! at once. Commits wait for the server's WAL flush (the default
//! `synchronous_commit`), so an acknowledged write survives a crash of either side.

use std::{str::FromStr as _, time::Duration};

use sqlx::{
    Postgres,
    error::DatabaseError,
    postgres::{PgConnectOptions, PgPoolOptions, PgQueryResult},
};

use super::{
    StoreError,
    sqlx_store::{Dialect, SqlStore},
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/storage/migrations/postgres");

/// The most connections one instance holds.
const MAX_CONNECTIONS: u32 = 10;
/// How long a query waits for a free (or new) connection before it fails as
/// unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an unused connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Assignments in a PostgreSQL database.
pub type PostgresStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db?…`,
    /// as libpq takes it) and applies migrations. Migrations run under an advisory
    /// lock, so instances that start together apply them once.
    ///
    /// # Errors
    /// When the URL is invalid, or the database cannot be reached or migrated.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::Internal(Box::new(e)))?;
        Self::open_with(options).await
    }

    /// As [`PostgresStore::open`], with options already built.
    ///
    /// # Errors
    /// When the database cannot be reached or migrated.
    pub async fn open_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let options = options.application_name("entitlement-gateway");
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(IDLE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(Postgres::classify)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(Postgres::migrate_failed)?;
        Ok(Self::new(pool))
    }
}

impl Dialect for Postgres {
    // READ COMMITTED, the default, takes a snapshot per statement.
    const BEGIN_SNAPSHOT: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

    fn placeholder(n: usize) -> String {
        format!("${n}")
    }

    /// By SQLSTATE: connection exceptions (class 08), serialization failures and
    /// deadlocks, the server shutting down or starting, too many connections, and a
    /// read-only transaction (a primary that became a standby in a failover).
    fn transient(error: &dyn DatabaseError) -> bool {
        error.code().is_some_and(|code| {
            code.starts_with("08")
                || matches!(
                    &*code,
                    "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300" | "25006"
                )
        })
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}
