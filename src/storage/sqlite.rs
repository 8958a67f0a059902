//! The embedded default backend: one SQLite file, in WAL mode with full sync, so an
//! acknowledged write survives `kill -9` and power loss.

use std::{path::Path, str::FromStr as _, time::Duration};

use async_trait::async_trait;
use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use super::{
    Inserted, ListPage, ListQuery, Store, StoreError,
    sql::{Bind, COLUMNS, Where, order_by},
};
use crate::domain::{Assignment, AssignmentId, DateTimeOffset};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/storage/migrations/sqlite");

/// Assignments in a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
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
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(classify)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Internal(Box::new(e)))?;
        Ok(Self { pool })
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    catalog_id: Option<String>,
    access_package_id: String,
    assignment_policy_id: String,
    target_id: String,
    assignment_status: Option<String>,
    assignment_state: Option<String>,
    is_extended: Option<bool>,
    expired_ticks: Option<i64>,
    expired_offset_minutes: Option<i64>,
}

impl TryFrom<Row> for Assignment {
    type Error = StoreError;

    fn try_from(row: Row) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Internal(format!("stored {what} is invalid").into());
        let expired_date_time = match (row.expired_ticks, row.expired_offset_minutes) {
            (Some(ticks), Some(offset)) => Some(
                i32::try_from(offset)
                    .ok()
                    .and_then(|offset| DateTimeOffset::from_ticks(ticks, offset).ok())
                    .ok_or_else(|| corrupt("expiredDateTime"))?,
            ),
            _ => None,
        };
        Ok(Assignment {
            id: row.id.parse::<AssignmentId>().map_err(|_| corrupt("id"))?,
            catalog_id: row.catalog_id,
            access_package_id: row.access_package_id,
            assignment_policy_id: row.assignment_policy_id,
            target_id: row.target_id,
            assignment_status: row.assignment_status,
            assignment_state: row.assignment_state,
            is_extended: row.is_extended,
            expired_date_time,
        })
    }
}

fn placeholder(_: usize) -> String {
    "?".to_owned()
}

/// Runs a query with the binds of a [`Where`] clause.
fn bind_all<'q, O>(
    mut query: sqlx::query::QueryAs<'q, sqlx::Sqlite, O, sqlx::sqlite::SqliteArguments<'q>>,
    binds: Vec<Bind>,
) -> sqlx::query::QueryAs<'q, sqlx::Sqlite, O, sqlx::sqlite::SqliteArguments<'q>> {
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Int(int) => query.bind(int),
            Bind::Bool(b) => query.bind(b),
        };
    }
    query
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert(&self, a: &Assignment) -> Result<Inserted, StoreError> {
        let expired = a.expired_date_time.as_ref();
        let result = sqlx::query(
            "INSERT INTO assignments (id, catalog_id, access_package_id, assignment_policy_id, \
             target_id, assignment_status, assignment_state, is_extended, expired_ticks, \
             expired_offset_minutes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(a.id.to_string())
        .bind(a.catalog_id.as_deref())
        .bind(&a.access_package_id)
        .bind(&a.assignment_policy_id)
        .bind(&a.target_id)
        .bind(a.assignment_status.as_deref())
        .bind(a.assignment_state.as_deref())
        .bind(a.is_extended)
        .bind(expired.map(DateTimeOffset::ticks))
        .bind(expired.map(|e| i64::from(e.offset_minutes())))
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        if result.rows_affected() == 1 {
            return Ok(Inserted::Created);
        }
        match self.get(&a.id).await? {
            Some(existing) => Ok(Inserted::Existing(existing)),
            None => Err(StoreError::Internal(
                "insert conflicted but no row has the id".into(),
            )),
        }
    }

    async fn get(&self, id: &AssignmentId) -> Result<Option<Assignment>, StoreError> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM assignments WHERE id = ?"))
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
        row.map(Assignment::try_from).transpose()
    }

    async fn list(&self, query: ListQuery<'_>) -> Result<ListPage, StoreError> {
        let mut page = Where::new(placeholder);
        page.push(
            query.filter,
            query.after.as_ref().map(|cursor| (cursor, query.order)),
        );
        let sql = format!(
            "SELECT {COLUMNS} FROM assignments WHERE {} ORDER BY {} LIMIT {}",
            page.sql,
            order_by(query.order),
            query.limit
        );
        let rows: Vec<Row> = bind_all(sqlx::query_as(&sql), page.binds)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let items = rows
            .into_iter()
            .map(Assignment::try_from)
            .collect::<Result<_, _>>()?;

        let total = if query.count {
            let mut all = Where::new(placeholder);
            all.push(query.filter, None);
            let sql = format!("SELECT COUNT(*) FROM assignments WHERE {}", all.sql);
            let (count,): (i64,) = bind_all(sqlx::query_as(&sql), all.binds)
                .fetch_one(&self.pool)
                .await
                .map_err(classify)?;
            Some(count.unsigned_abs())
        } else {
            None
        };
        Ok(ListPage { items, total })
    }

    async fn delete(&self, id: &AssignmentId) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM assignments WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(result.rows_affected() > 0)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(classify)
    }
}

/// Sorts a driver error into "retry may help" and "it will not".
fn classify(error: sqlx::Error) -> StoreError {
    let transient = match &error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with any extended code.
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| i32::from_str(&code).ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    };
    if transient {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Internal(Box::new(error))
    }
}
