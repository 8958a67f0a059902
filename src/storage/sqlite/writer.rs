//! Group commit for SQLite: one thread with its own connection writes every insert,
//! a group of them per transaction, and answers each insert once its transaction is
//! committed and synced to disk. A thread rather than the sqlx pool: a whole group
//! is one wake-up of the thread instead of a round trip per statement, and the
//! inserts that arrive while it syncs make up the next group, so concurrent creates
//! share one fsync.

use std::{collections::HashSet, path::Path};

use rusqlite::{Connection, OpenFlags, OptionalExtension as _, ToSql, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use sqlx::Sqlite;

use super::{BUSY_TIMEOUT, PRAGMAS, classify_code};
use crate::{
    domain::Assignment,
    storage::{Inserted, StoreError, sql, sql::Row, sqlx_store::Dialect as _},
};

/// One insert waiting for the writer.
#[derive(Debug)]
struct InsertJob {
    assignment: Assignment,
    done: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// The queue of the writer thread, which ends when the last handle is dropped.
pub(super) struct Writer {
    queue: mpsc::Sender<InsertJob>,
}

impl Writer {
    /// Opens the writer's own connection to the (migrated) database at `path` and
    /// starts its thread.
    ///
    /// # Errors
    /// When the database cannot be opened or the thread cannot be started.
    pub(super) fn start(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            queue: start(path)?,
        })
    }

    /// Inserts `assignment` in the next group; answers once the group is on disk.
    ///
    /// # Errors
    /// As the group's transaction failed, or `Unavailable` when the writer is gone.
    pub(super) async fn insert(&self, assignment: &Assignment) -> Result<Inserted, StoreError> {
        let gone = || StoreError::Unavailable("the store is shutting down".into());
        let (done, outcome) = oneshot::channel();
        let job = InsertJob {
            assignment: assignment.clone(),
            done,
        };
        self.queue.send(job).await.map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }
}

/// The writer's statements, in SQLite's placeholder syntax.
struct Statements {
    /// Inserts of 2^k rows (k from 8 down to 0), each returning the ids it stored.
    inserts: Vec<(usize, String)>,
    select_by_id: String,
}

/// The most inserts one transaction carries.
const MAX_GROUP: usize = 256;

/// Opens the connection and starts the thread; inserts go to the queue returned.
fn start(path: &Path) -> Result<mpsc::Sender<InsertJob>, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(classify)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    for (name, value) in PRAGMAS {
        connection
            .pragma_update(None, name, value)
            .map_err(classify)?;
    }
    let statements = Statements {
        inserts: (0..=MAX_GROUP.ilog2())
            .rev()
            .map(|k| {
                let rows = 1 << k;
                (rows, insert_returning_ids(rows))
            })
            .collect(),
        select_by_id: sql::select_by_id(Sqlite::placeholder),
    };
    // Room for every statement above: a group of any size reuses prepared ones.
    connection.set_prepared_statement_cache_capacity(16);
    let (queue, jobs) = mpsc::channel(MAX_GROUP * 4);
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || write_groups(connection, &statements, jobs))
        .map_err(|e| StoreError::Internal(Box::new(e)))?;
    Ok(queue)
}

/// Inserts `rows` rows (the [`sql::COLUMNS`], in order) and returns the id of each
/// row stored: one statement keeps its B-tree cursors open from row to row. `OR
/// IGNORE` rather than `ON CONFLICT DO NOTHING`, because a statement that cannot abort
/// needs no statement journal; a row skipped for another reason than its id is an id
/// with no row, which fails the group.
fn insert_returning_ids(rows: usize) -> String {
    // SQLite's placeholders are positional (`?`): every row's are the same.
    let row = sql::row_placeholders(Sqlite::placeholder, 1);
    format!(
        "INSERT OR IGNORE INTO assignments ({}) VALUES {} RETURNING id",
        *sql::COLUMNS,
        vec![row; rows].join(", ")
    )
}

/// The writer thread: takes every insert queued (up to [`MAX_GROUP`]), writes them
/// in one transaction and answers them once it is on disk.
fn write_groups(
    mut connection: Connection,
    statements: &Statements,
    mut jobs: mpsc::Receiver<InsertJob>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = jobs.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        // Callers that gave up (timed out, disconnected) need no write.
        group.retain(|job: &InsertJob| !job.done.is_closed());
        if group.is_empty() {
            continue;
        }
        match write_group(&mut connection, statements, &group) {
            Ok(outcomes) => {
                tracing::trace!(inserts = outcomes.len(), "group committed");
                for (job, inserted) in group.drain(..).zip(outcomes) {
                    let _ = job.done.send(Ok(inserted));
                }
            }
            Err(error) => {
                // Nothing of the group was committed; each caller gets the error.
                let transient = matches!(error, StoreError::Unavailable(_));
                tracing::error!(inserts = group.len(), %error, "group commit failed");
                let message = "the group commit of this insert failed (logged where it happened)";
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

/// Inserts `group` in one transaction. An insert whose id was already stored, or
/// came earlier in the group, reads back the row that is there.
fn write_group(
    connection: &mut Connection,
    statements: &Statements,
    group: &[InsertJob],
) -> Result<Vec<Inserted>, StoreError> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)?;
    let rows: Vec<Row> = group.iter().map(|job| Row::of(&job.assignment)).collect();
    let mut created = HashSet::with_capacity(rows.len());
    let mut rest: &[Row] = &rows;
    while !rest.is_empty() {
        // The largest statement that fits: a group goes in as few statements as its
        // size has binary digits set.
        let (size, sql) = statements
            .inserts
            .iter()
            .find(|(size, _)| *size <= rest.len())
            .expect("there is a one-row statement");
        let (chunk, after) = rest.split_at(*size);
        let params: Vec<&dyn ToSql> = chunk.iter().flat_map(Row::params).collect();
        let mut insert = transaction.prepare_cached(sql).map_err(classify)?;
        let mut ids = insert.query(params.as_slice()).map_err(classify)?;
        while let Some(id) = ids.next().map_err(classify)? {
            created.insert(id.get::<_, String>(0).map_err(classify)?);
        }
        rest = after;
    }
    let mut outcomes = Vec::with_capacity(rows.len());
    {
        let mut select = transaction
            .prepare_cached(&statements.select_by_id)
            .map_err(classify)?;
        for row in &rows {
            // The first job with a new id created it; any other reads back the row.
            if created.remove(&row.id) {
                outcomes.push(Inserted::Created);
                continue;
            }
            let stored = select
                .query_row([&row.id], Row::read)
                .optional()
                .map_err(classify)?
                .ok_or_else(|| {
                    StoreError::Internal("an insert was skipped, yet no row has its id".into())
                })?;
            outcomes.push(Inserted::Existing(Assignment::try_from(stored)?));
        }
    }
    transaction.commit().map_err(classify)?;
    Ok(outcomes)
}

/// Sorts a rusqlite error by its result code, as the sqlx store's are.
fn classify(error: rusqlite::Error) -> StoreError {
    let code = match &error {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.extended_code),
        _ => None,
    };
    classify_code(code, Box::new(error))
}
