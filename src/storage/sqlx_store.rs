//! The one [`Store`] implementation the SQL backends share: [`SqlStore`], over any
//! sqlx database that says what differs about it through [`Dialect`] (placeholder
//! syntax, which errors are transient). Each backend only opens its pool and
//! applies its migrations.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{
    Database, Encode, Executor, FromRow, IntoArguments, Pool, Type, error::DatabaseError,
    migrate::MigrateError, query::QueryAs,
};

use super::{
    Inserted, ListPage, ListQuery, Store, StoreError,
    sql::{self, Bind, COLUMNS, Row, Where, order_by},
};
use crate::domain::{Assignment, AssignmentId, filter::Filter};

/// What differs between the sqlx databases a [`SqlStore`] runs on.
pub trait Dialect: Database {
    /// The n-th (1-based) placeholder: `?` or `$n`.
    fn placeholder(n: usize) -> String;

    /// Whether an error the database reported may go away on a retry (it is busy,
    /// shutting down, or a transaction lost a conflict).
    fn transient(error: &dyn DatabaseError) -> bool;

    /// How many rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// The statement that begins a read-only transaction whose reads all see one
    /// snapshot.
    const BEGIN_SNAPSHOT: &'static str;

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
}

/// The fixed statements, written once in the backend's placeholder syntax.
#[derive(Debug)]
struct Statements {
    /// Inserts one row, leaving an existing row with its id alone, and returns the
    /// id when it inserted.
    insert: String,
    select_by_id: String,
    delete_by_id: String,
}

impl Statements {
    fn new<DB: Dialect>() -> Self {
        Self {
            insert: format!(
                "{} RETURNING id",
                sql::insert_keeping_existing(DB::placeholder)
            ),
            select_by_id: sql::select_by_id(DB::placeholder),
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
        }
    }
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            statements: self.statements.clone(),
        }
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

/// Inserts `a` on `connection`; when a row with its id is already stored, reads
/// back that row.
async fn insert_one<DB>(
    connection: &mut DB::Connection,
    statements: &Statements,
    a: &Assignment,
) -> Result<Inserted, sqlx::Error>
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
    let created = Row::of(a)
        .bind(sqlx::query_as::<DB, (String,)>(&statements.insert))
        .fetch_optional(&mut *connection)
        .await?;
    if created.is_some() {
        return Ok(Inserted::Created);
    }
    let row: Row = sqlx::query_as(&statements.select_by_id)
        .bind(a.id.to_string())
        .fetch_one(&mut *connection)
        .await?;
    let existing = Assignment::try_from(row).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Inserted::Existing(existing))
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
        for _ in 0..INSERT_ATTEMPTS {
            let mut connection = self.pool.acquire().await.map_err(DB::classify)?;
            match insert_one::<DB>(&mut connection, &self.statements, a).await {
                Ok(inserted) => return Ok(inserted),
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
            "SELECT {} FROM assignments WHERE {} ORDER BY {} LIMIT {}",
            *COLUMNS,
            page.sql,
            order_by(query.order),
            query.limit
        );
        let page_query = bind_all(sqlx::query_as(&sql), page.binds);
        let (rows, total): (Vec<Row>, _) = if query.count {
            // The page and the count from one snapshot: a create committed between
            // the two reads must not make the count disagree with the page.
            let (count_sql, count_binds) = sql::count(query.filter, DB::placeholder);
            let mut snapshot = self
                .pool
                .begin_with(DB::BEGIN_SNAPSHOT)
                .await
                .map_err(DB::classify)?;
            let rows = page_query
                .fetch_all(&mut *snapshot)
                .await
                .map_err(DB::classify)?;
            let (count,): (i64,) = bind_all(sqlx::query_as(&count_sql), count_binds)
                .fetch_one(&mut *snapshot)
                .await
                .map_err(DB::classify)?;
            snapshot.rollback().await.map_err(DB::classify)?;
            (rows, Some(count.unsigned_abs()))
        } else {
            let rows = page_query
                .fetch_all(&self.pool)
                .await
                .map_err(DB::classify)?;
            (rows, None)
        };
        let items = rows
            .into_iter()
            .map(Assignment::try_from)
            .collect::<Result<_, _>>()?;
        Ok(ListPage { items, total })
    }

    async fn count(&self, filter: Option<&Filter>) -> Result<u64, StoreError> {
        let (sql, binds) = sql::count(filter, DB::placeholder);
        let (count,): (i64,) = bind_all(sqlx::query_as(&sql), binds)
            .fetch_one(&self.pool)
            .await
            .map_err(DB::classify)?;
        Ok(count.unsigned_abs())
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
