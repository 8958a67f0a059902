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
    StoreError,
    sqlx_store::{Dialect, SqlStore, SyncAfterCommit},
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
            .busy_timeout(Duration::from_secs(5))
            // The statement journal of a group's multi-row insert stays in memory
            // instead of spilling to a temporary file created and deleted per commit.
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            // One connection stays with the group-commit writer; four serve reads.
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
        // SQLite has one writer at a time and syncs on every commit: sharing commits
        // is what lets durable creates scale with concurrency.
        // The writer's commits return once written to the WAL; the store's sync
        // thread fsyncs the WAL before it acknowledges them (`SyncAfterCommit`).
        // Deletes and the other connections keep FULL.
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Self::new(pool).with_group_commit(SyncAfterCommit {
            relax: "PRAGMA synchronous = NORMAL",
            file: wal.into(),
        })
    }
}

impl Dialect for Sqlite {
    /// `OR IGNORE` rather than `ON CONFLICT (id) DO NOTHING`: a statement that cannot
    /// abort half-way needs no statement journal, which a group's multi-row insert
    /// would otherwise fill with a copy of every page it changes. Only the id can
    /// conflict: the service validates every other constraint first, and a row
    /// skipped for any other reason reads back as missing, which fails the insert.
    const INSERT_KEEPING_EXISTING: (&'static str, &'static str) = ("INSERT OR IGNORE", "");

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
