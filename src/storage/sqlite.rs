//! The embedded default backend: one SQLite file in WAL mode, fsynced before any
//! write is acknowledged, so an acknowledged write survives `kill -9` and power loss.

use std::{path::Path, str::FromStr as _, time::Duration};

use sqlx::{
    Sqlite,
    error::DatabaseError,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
        SqliteSynchronous,
    },
};

use super::{
    StoreError, sqlite_writer,
    sqlx_store::{Dialect, SqlStore},
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/storage/migrations/sqlite");

/// Assignments in a SQLite database file.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (creating it if needed) the database at `path` and applies migrations.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: every commit is fsynced before it returns, WAL mode included.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            // Reads and deletes; inserts have the group-commit writer's own connection.
            .max_connections(5)
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
        // SQLite has one writer at a time and syncs on every commit: inserts go
        // through the group-commit writer (its own connection), as sharing commits
        // is what lets durable creates scale with concurrency.
        Ok(Self::new(pool).with_writer(sqlite_writer::start(path)?))
    }
}

impl Dialect for Sqlite {
    // In WAL mode a (deferred) transaction reads the snapshot its first read began.
    const BEGIN_SNAPSHOT: &'static str = "BEGIN";

    fn placeholder(_: usize) -> String {
        "?".to_owned()
    }

    /// SQLITE_BUSY (5) and SQLITE_LOCKED (6), with any extended code.
    fn transient(error: &dyn DatabaseError) -> bool {
        error
            .code()
            .and_then(|code| i32::from_str(&code).ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6))
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}
