//! The one [`Store`] implementation the SQL backends share: [`SqlStore`], over any
//! sqlx database that says what differs about it through [`Dialect`] (placeholder
//! syntax, which errors are transient). Each backend only opens its pool and
//! applies its migrations.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
use sqlx::{
    Connection as _, Database, Encode, Executor, FromRow, IntoArguments, Pool, Type,
    error::DatabaseError, migrate::MigrateError, pool::PoolConnection, query::QueryAs,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    Inserted, ListPage, ListQuery, Store, StoreError,
    sql::{Bind, COLUMNS, Where, order_by},
};
use crate::domain::{Assignment, AssignmentId, DateTimeOffset};

/// What differs between the sqlx databases a [`SqlStore`] runs on.
pub trait Dialect: Database {
    /// The n-th (1-based) placeholder: `?` or `$n`.
    fn placeholder(n: usize) -> String;

    /// What goes before `INTO` and after `VALUES (...)` in an insert that leaves a
    /// row with the same id as it is.
    const INSERT_KEEPING_EXISTING: (&'static str, &'static str);

    /// Whether an error the database reported may go away on a retry (it is busy,
    /// shutting down, or a transaction lost a conflict).
    fn transient(error: &dyn DatabaseError) -> bool;

    /// How many rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// Sorts a driver error into "retry may help" ([`StoreError::Unavailable`]) and
    /// "it will not" ([`StoreError::Internal`]).
    fn classify(error: sqlx::Error) -> StoreError {
        let transient = match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
            sqlx::Error::Database(db) => Self::transient(db.as_ref()),
            _ => false,
        };
        if transient {
            StoreError::Unavailable(Box::new(error))
        } else {
            StoreError::Internal(Box::new(error))
        }
    }

    /// A migration failure: transient when the database failed under it.
    fn migrate_failed(error: MigrateError) -> StoreError {
        match error {
            MigrateError::Execute(e) => Self::classify(e),
            other => StoreError::Internal(Box::new(other)),
        }
    }
}

/// Assignments in a SQL database reached through a sqlx pool.
#[derive(Debug)]
pub struct SqlStore<DB: Database> {
    pool: Pool<DB>,
    statements: Arc<Statements>,
    /// With group commit: the queue of the one task that writes inserts.
    writer: Option<mpsc::Sender<InsertJob>>,
}

/// One insert waiting for the group-commit writer.
#[derive(Debug)]
struct InsertJob {
    assignment: Assignment,
    done: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// The most inserts one group commit carries.
const MAX_GROUP: usize = 256;

/// How the group-commit writer makes its commits durable: its connection first
/// runs `relax` (a statement that lets a commit return once it is written, without
/// waiting for the disk), and a sync thread fsyncs `file` (the write-ahead log)
/// before it acknowledges the inserts of the commits written so far. The writer
/// goes on with the next group during that fsync, so the disk's sync time overlaps
/// the next commit instead of leaving the machine idle, and one fsync can cover
/// several commits.
#[derive(Debug)]
pub(super) struct SyncAfterCommit {
    pub relax: &'static str,
    pub file: PathBuf,
}

/// The outcome of each insert of one committed group, waiting for its fsync.
type Committed = Vec<(oneshot::Sender<Result<Inserted, StoreError>>, Inserted)>;

/// How many committed groups may wait for the sync thread while it syncs: one, so
/// that while a sync runs the next inserts gather into one group, not many small ones.
const SYNC_QUEUE: usize = 1;

/// The fixed statements, written once in the backend's placeholder syntax.
#[derive(Debug)]
struct Statements {
    /// Inserts of 1, 2, 4, ... [`MAX_GROUP`] rows that leave an existing row alone
    /// and return the ids they inserted.
    insert: Vec<String>,
    select_by_id: String,
    delete_by_id: String,
}

impl Statements {
    fn new<DB: Dialect>() -> Self {
        let insert = |rows: usize| {
            let values: Vec<String> = (0..rows)
                .map(|row| {
                    let columns: Vec<String> =
                        (1..=10).map(|n| DB::placeholder(row * 10 + n)).collect();
                    format!("({})", columns.join(", "))
                })
                .collect();
            format!(
                "{} INTO assignments ({COLUMNS}) VALUES {} {} RETURNING id",
                DB::INSERT_KEEPING_EXISTING.0,
                values.join(", "),
                DB::INSERT_KEEPING_EXISTING.1,
            )
        };
        Self {
            insert: (0..=MAX_GROUP.ilog2())
                .map(|size| insert(1 << size))
                .collect(),
            select_by_id: format!(
                "SELECT {COLUMNS} FROM assignments WHERE id = {}",
                DB::placeholder(1)
            ),
            delete_by_id: format!("DELETE FROM assignments WHERE id = {}", DB::placeholder(1)),
        }
    }
}

impl<DB: Dialect> SqlStore<DB> {
    /// A store over `pool`, whose database is already migrated.
    pub(super) fn new(pool: Pool<DB>) -> Self {
        Self {
            pool,
            statements: Arc::new(Statements::new::<DB>()),
            writer: None,
        }
    }
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            statements: self.statements.clone(),
            writer: self.writer.clone(),
        }
    }
}

/// An assignment as stored: the columns of [`COLUMNS`], in order.
#[derive(sqlx::FromRow)]
pub struct Row {
    id: String,
    catalog_id: Option<String>,
    access_package_id: String,
    assignment_policy_id: String,
    target_id: String,
    assignment_status: Option<String>,
    assignment_state: Option<String>,
    is_extended: Option<bool>,
    expired_ticks: Option<i64>,
    expired_offset_minutes: Option<i32>,
}

impl TryFrom<Row> for Assignment {
    type Error = StoreError;

    fn try_from(row: Row) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Internal(format!("stored {what} is invalid").into());
        let expired_date_time = match (row.expired_ticks, row.expired_offset_minutes) {
            (Some(ticks), Some(offset)) => Some(
                DateTimeOffset::from_ticks(ticks, offset)
                    .map_err(|_| corrupt("expiredDateTime"))?,
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

/// Adds the binds of a [`Where`] clause to a query, in placeholder order.
fn bind_all<'q, DB, O>(
    mut query: QueryAs<'q, DB, O, DB::Arguments<'q>>,
    binds: Vec<Bind>,
) -> QueryAs<'q, DB, O, DB::Arguments<'q>>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    bool: Encode<'q, DB> + Type<DB>,
{
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Int(int) => query.bind(int),
            Bind::Bool(b) => query.bind(b),
        };
    }
    query
}

/// How many times an insert is tried when the row it conflicted with is gone by
/// the time it is read (deleted in between).
const INSERT_ATTEMPTS: usize = 3;

/// Adds the ten column values of `a` to an insert, in [`COLUMNS`] order.
fn bind_row<'q, DB>(
    query: QueryAs<'q, DB, (String,), DB::Arguments<'q>>,
    a: &Assignment,
) -> QueryAs<'q, DB, (String,), DB::Arguments<'q>>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    Option<i32>: Encode<'q, DB> + Type<DB>,
    Option<bool>: Encode<'q, DB> + Type<DB>,
{
    let expired = a.expired_date_time.as_ref();
    query
        .bind(a.id.to_string())
        .bind(a.catalog_id.clone())
        .bind(a.access_package_id.clone())
        .bind(a.assignment_policy_id.clone())
        .bind(a.target_id.clone())
        .bind(a.assignment_status.clone())
        .bind(a.assignment_state.clone())
        .bind(a.is_extended)
        .bind(expired.map(DateTimeOffset::ticks))
        .bind(expired.map(DateTimeOffset::offset_minutes))
}

/// Inserts `rows` on `connection` (inside one transaction, for group commit) with
/// as few statements as it takes: multi-row inserts of power-of-two sizes, so that
/// each size is prepared once. An id that was already stored, or that comes again
/// later in `rows`, reads back the row that is there.
async fn insert_rows<DB>(
    connection: &mut DB::Connection,
    statements: &Statements,
    rows: &[&Assignment],
) -> Result<Vec<Inserted>, sqlx::Error>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> Row: FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<bool>: Encode<'q, DB> + Type<DB>,
{
    let mut created = HashSet::with_capacity(rows.len());
    let mut rest = rows;
    while !rest.is_empty() {
        let size = (rest.len().ilog2() as usize).min(statements.insert.len() - 1);
        let (chunk, after) = rest.split_at(1 << size);
        let query = chunk.iter().fold(
            sqlx::query_as::<DB, (String,)>(&statements.insert[size]),
            |query, a| bind_row(query, a),
        );
        for (id,) in query.fetch_all(&mut *connection).await? {
            created.insert(id);
        }
        rest = after;
    }
    let mut outcomes = Vec::with_capacity(rows.len());
    for a in rows {
        let id = a.id.to_string();
        // Only the first of repeated ids was the one inserted.
        if created.remove(&id) {
            outcomes.push(Inserted::Created);
            continue;
        }
        let row: Row = sqlx::query_as(&statements.select_by_id)
            .bind(id)
            .fetch_one(&mut *connection)
            .await?;
        let existing = Assignment::try_from(row).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        outcomes.push(Inserted::Existing(existing));
    }
    Ok(outcomes)
}

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> Row: FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<bool>: Encode<'q, DB> + Type<DB>,
{
    /// Group commit: inserts go through one writer task, which puts every insert
    /// that queued up while the previous commit was being synced into one
    /// transaction, so concurrent creates share one commit (and one fsync)
    /// instead of each paying for its own.
    ///
    /// # Errors
    /// When the sync thread cannot be started.
    pub(super) fn with_group_commit(mut self, sync: SyncAfterCommit) -> Result<Self, StoreError> {
        let (queue, jobs) = mpsc::channel(MAX_GROUP * 4);
        let (committed, groups) = mpsc::channel(SYNC_QUEUE);
        let SyncAfterCommit { relax, file } = sync;
        std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || sync_groups(&file, groups))
            .map_err(|e| StoreError::Internal(Box::new(e)))?;
        tokio::spawn(write_groups::<DB>(
            self.pool.clone(),
            self.statements.clone(),
            jobs,
            relax,
            committed,
        ));
        self.writer = Some(queue);
        Ok(self)
    }
}

/// The sync thread of [`Durability::SyncFile`]: takes every group committed since
/// its last fsync, fsyncs `file` once for all of them, then acknowledges their
/// inserts. Runs until the writer is gone.
fn sync_groups(file: &Path, mut groups: mpsc::Receiver<Committed>) {
    let mut waiting = Vec::with_capacity(SYNC_QUEUE);
    while let Some(group) = groups.blocking_recv() {
        waiting.push(group);
        while let Ok(group) = groups.try_recv() {
            waiting.push(group);
        }
        // Opened each time: the writer's open connection keeps the file in place,
        // and a reopened connection could otherwise leave a stale handle here.
        let synced = std::fs::File::open(file).and_then(|f| f.sync_data());
        if let Err(error) = &synced {
            tracing::error!(%error, file = %file.display(), "fsync of committed inserts failed");
        }
        for (done, inserted) in waiting.drain(..).flatten() {
            let outcome = match &synced {
                Ok(()) => Ok(inserted),
                Err(_) => Err(StoreError::Unavailable(
                    "the commit of this insert could not be synced to disk (logged where it happened)"
                        .into(),
                )),
            };
            let _ = done.send(outcome);
        }
    }
}

/// The group-commit writer: runs until every store handle is gone.
async fn write_groups<DB>(
    pool: Pool<DB>,
    statements: Arc<Statements>,
    mut jobs: mpsc::Receiver<InsertJob>,
    relax: &'static str,
    synced: mpsc::Sender<Committed>,
) where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> Row: FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<bool>: Encode<'q, DB> + Type<DB>,
{
    // The writer keeps one connection: its page cache stays warm, where a pool's
    // connections would each reload the pages another one changed.
    let mut connection: Option<PoolConnection<DB>> = None;
    let mut group = Vec::with_capacity(MAX_GROUP);
    while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
        // Callers that gave up (timed out, disconnected) need no write.
        group.retain(|job: &InsertJob| !job.done.is_closed());
        if group.is_empty() {
            continue;
        }
        let outcome: Result<Vec<Inserted>, sqlx::Error> = async {
            let connection = match &mut connection {
                Some(connection) => connection,
                None => {
                    let mut fresh = pool.acquire().await?;
                    sqlx::query::<DB>(relax).execute(&mut *fresh).await?;
                    connection.insert(fresh)
                }
            };
            let mut transaction = connection.begin().await?;
            let rows: Vec<&Assignment> = group.iter().map(|job| &job.assignment).collect();
            let outcomes = insert_rows::<DB>(&mut transaction, &statements, &rows).await?;
            transaction.commit().await?;
            Ok(outcomes)
        }
        .await;
        if outcome.is_err() {
            // A connection that failed mid-transaction is not used again, nor given
            // back to the pool with the writer's relaxed sync setting.
            if let Some(failed) = connection.take() {
                let _ = failed.detach().close().await;
            }
        }
        match outcome {
            Ok(outcomes) => {
                tracing::trace!(inserts = outcomes.len(), "group committed");
                let committed = group.drain(..).map(|job| job.done).zip(outcomes);
                // Acknowledged by the sync thread once on disk. (It only goes away
                // with a panic; the callers then see the store as unavailable.)
                let _ = synced.send(committed.collect()).await;
            }
            Err(error) => {
                // Nothing of the group was committed; each caller gets the error.
                let transient = matches!(DB::classify(error), StoreError::Unavailable(_));
                let message = "the group commit of this insert failed (logged where it happened)";
                tracing::error!(inserts = group.len(), transient, "group commit failed");
                for job in group.drain(..) {
                    let error = if transient {
                        StoreError::Unavailable(message.into())
                    } else {
                        StoreError::Internal(message.into())
                    };
                    let _ = job.done.send(Err(error));
                }
            }
        }
    }
}

#[async_trait]
impl<DB> Store for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> Row: FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<bool>: Encode<'q, DB> + Type<DB>,
{
    async fn insert(&self, a: &Assignment) -> Result<Inserted, StoreError> {
        if let Some(writer) = &self.writer {
            let (done, outcome) = oneshot::channel();
            let job = InsertJob {
                assignment: a.clone(),
                done,
            };
            writer
                .send(job)
                .await
                .map_err(|_| StoreError::Unavailable("the store is shutting down".into()))?;
            return outcome
                .await
                .map_err(|_| StoreError::Unavailable("the store is shutting down".into()))?;
        }
        for _ in 0..INSERT_ATTEMPTS {
            let mut connection = self.pool.acquire().await.map_err(DB::classify)?;
            match insert_rows::<DB>(&mut connection, &self.statements, &[a]).await {
                Ok(mut inserted) => return Ok(inserted.remove(0)),
                // The conflicting row was deleted between the insert and the read.
                Err(sqlx::Error::RowNotFound) => continue,
                Err(e) => return Err(DB::classify(e)),
            }
        }
        Err(StoreError::Unavailable(
            "the id kept being inserted and deleted concurrently".into(),
        ))
    }

    async fn get(&self, id: &AssignmentId) -> Result<Option<Assignment>, StoreError> {
        let row: Option<Row> = sqlx::query_as(&self.statements.select_by_id)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(DB::classify)?;
        row.map(Assignment::try_from).transpose()
    }

    async fn list(&self, query: ListQuery<'_>) -> Result<ListPage, StoreError> {
        let mut page = Where::new(DB::placeholder);
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
            .map_err(DB::classify)?;
        let items = rows
            .into_iter()
            .map(Assignment::try_from)
            .collect::<Result<_, _>>()?;

        let total = if query.count {
            let mut all = Where::new(DB::placeholder);
            all.push(query.filter, None);
            let sql = format!("SELECT COUNT(*) FROM assignments WHERE {}", all.sql);
            let (count,): (i64,) = bind_all(sqlx::query_as(&sql), all.binds)
                .fetch_one(&self.pool)
                .await
                .map_err(DB::classify)?;
            Some(count.unsigned_abs())
        } else {
            None
        };
        Ok(ListPage { items, total })
    }

    async fn delete(&self, id: &AssignmentId) -> Result<bool, StoreError> {
        let result = sqlx::query(&self.statements.delete_by_id)
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(DB::classify)?;
        Ok(DB::rows_affected(&result) > 0)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(DB::classify)
    }
}
