//! The embedded default backend: one SQLite file in WAL mode, fsynced before any
//! write is acknowledged, so an acknowledged write survives `kill -9` and power loss.
//! Reads and deletes go through the shared sqlx store; inserts through the
//! group-commit [`writer`], which has a connection of its own. Both open their
//! connections with the same [`PRAGMAS`] and sort errors with the same rule.

mod writer;

use std::{path::Path, str::FromStr as _, time::Duration};

use async_trait::async_trait;
use sqlx::{
    Sqlite,
    error::DatabaseError,
    sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteQueryResult},
};

use super::{
    Inserted, ListPage, ListQuery, Store, StoreError,
    sqlx_store::{Dialect, SqlStore},
};
use crate::domain::{Assignment, AssignmentId, filter::Filter};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/storage/migrations/sqlite");

/// The settings of every connection. `synchronous = FULL`: every commit is fsynced
/// before it returns, WAL mode included.
const PRAGMAS: [(&str, &str); 2] = [("journal_mode", "WAL"), ("synchronous", "FULL")];
/// How long a statement waits for a lock another connection holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The read pool's connections (reads and deletes).
const READ_CONNECTIONS: u32 = 5;

/// Whether an SQLite result code may pass on a retry: SQLITE_BUSY (5) and
/// SQLITE_LOCKED (6), with any extended code.
fn transient_code(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6)
}

/// Sorts an error by its SQLite result code (none: not the database's own error).
fn classify_code(code: Option<i32>, error: Box<dyn std::error::Error + Send + Sync>) -> StoreError {
    if code.is_some_and(transient_code) {
        StoreError::Unavailable(error)
    } else {
        StoreError::Internal(error)
    }
}

/// Assignments in a SQLite database file.
pub struct SqliteStore {
    reads: SqlStore<Sqlite>,
    writer: writer::Writer,
}

impl SqliteStore {
    /// Opens (creating it if needed) the database at `path`, applies migrations and
    /// starts the writer.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = PRAGMAS.iter().fold(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .busy_timeout(BUSY_TIMEOUT),
            |options, (name, value)| options.pragma(*name, *value),
        );
        let pool = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(Sqlite::classify)?;
        // sqlx takes no lock for SQLite migrations: processes that open the same new
        // file at once take turns through a lock file beside it.
        let lock_path = path.with_extension("db.migrate-lock");
        let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let file = std::fs::File::create(lock_path)?;
            file.lock()?;
            Ok(file)
        })
        .await
        .map_err(|e| StoreError::Internal(Box::new(e)))?
        .map_err(|e| StoreError::Internal(Box::new(e)))?;
        let migrated = MIGRATOR.run(&pool).await.map_err(Sqlite::migrate_failed);
        drop(lock);
        migrated?;
        Ok(Self {
            reads: SqlStore::new(pool),
            writer: writer::Writer::start(path)?,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert(&self, assignment: &Assignment) -> Result<Inserted, StoreError> {
        self.writer.insert(assignment).await
    }

    async fn get(&self, id: &AssignmentId) -> Result<Option<Assignment>, StoreError> {
        self.reads.get(id).await
    }

    async fn list(&self, query: ListQuery<'_>) -> Result<ListPage, StoreError> {
        self.reads.list(query).await
    }

    async fn count(&self, filter: Option<&Filter>) -> Result<u64, StoreError> {
        self.reads.count(filter).await
    }

    async fn delete(&self, id: &AssignmentId) -> Result<bool, StoreError> {
        self.reads.delete(id).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.reads.ping().await
    }
}

impl Dialect for Sqlite {
    // In WAL mode a (deferred) transaction reads the snapshot its first read began.
    const BEGIN_SNAPSHOT: &'static str = "BEGIN";

    fn placeholder(_: usize) -> String {
        "?".to_owned()
    }

    fn transient(error: &dyn DatabaseError) -> bool {
        error
            .code()
            .and_then(|code| i32::from_str(&code).ok())
            .is_some_and(transient_code)
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}
