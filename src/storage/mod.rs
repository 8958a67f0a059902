//! Where assignments are kept: the [`Store`] trait every backend implements, and its
//! error. The SQL backends share one sqlx implementation, [`SqlStore`]; PostgreSQL is
//! that store on its pool, SQLite that store for reads beside its group-commit
//! writer for inserts (`sqlite::writer`). [`open`] picks a backend by URL.
//! The fronts only ever see `Arc<dyn Store>` through the service.

mod observed;
mod postgres;
mod sql;
mod sqlite;
mod sqlx_store;

use std::{path::Path, sync::Arc};

use async_trait::async_trait;

pub use observed::Observed;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use sqlx_store::{Dialect, SqlStore};

use crate::domain::{Assignment, AssignmentId, filter::Filter};

/// What a list is ordered by; id always breaks ties, in the same direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Id,
    ExpiredDateTime,
}

/// A sort key and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SortOrder {
    pub key: SortKey,
    pub descending: bool,
}

/// Where the previous page ended: the last assignment's sort value and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// For [`SortKey::ExpiredDateTime`]: the expiredDateTime in ticks, `i64::MIN`
    /// when unset. Unused for [`SortKey::Id`].
    pub sort_value: i64,
    pub id: AssignmentId,
}

impl Cursor {
    /// The cursor just after `assignment` in `order`.
    pub fn after(assignment: &Assignment) -> Self {
        Self {
            sort_value: assignment.expired_date_time.map_or(i64::MIN, |e| e.ticks()),
            id: assignment.id,
        }
    }
}

/// One page's worth of a list.
#[derive(Debug, Clone, Copy)]
pub struct ListQuery<'a> {
    pub filter: Option<&'a Filter>,
    pub order: SortOrder,
    /// Continue after this key; `None` starts from the beginning.
    pub after: Option<Cursor>,
    /// The most assignments to return.
    pub limit: u32,
    /// Whether to count every assignment the filter matches.
    pub count: bool,
}

/// The assignments of one page, and the count when it was asked for.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub items: Vec<Assignment>,
    /// Every match of the filter (not only those after the cursor), seen as the page saw the store.
    pub total: Option<u64>,
}

/// What an insert found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// The assignment is new and is now durably stored.
    Created,
    /// An assignment with the same id was already stored; it is returned as stored.
    Existing(Assignment),
}

/// A storage failure. The source is for logs only; it never reaches a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is busy; retrying may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else: a bug, corruption, a full disk.
    #[error("storage failure: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Durable storage of assignments.
///
/// Every method returns only after its effect is durable: an `Ok` from
/// [`Store::insert`] means the assignment survives a crash of the process or the
/// machine.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores `assignment` unless one with the same id exists, atomically.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn insert(&self, assignment: &Assignment) -> Result<Inserted, StoreError>;

    /// The assignment with this id, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn get(&self, id: &AssignmentId) -> Result<Option<Assignment>, StoreError>;

    /// Up to `query.limit` assignments that match the filter, after the cursor, in
    /// order. Keyset paging: the cost does not grow with how far the walk is. The
    /// count, when asked for, is read from the same snapshot as the page.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn list(&self, query: ListQuery<'_>) -> Result<ListPage, StoreError>;

    /// How many assignments match the filter (all of them without one).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn count(&self, filter: Option<&Filter>) -> Result<u64, StoreError>;

    /// Deletes the assignment with this id; `false` when there was none.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn delete(&self, id: &AssignmentId) -> Result<bool, StoreError>;

    /// Whether the database answers, for readiness checks.
    ///
    /// # Errors
    /// [`StoreError`] when it does not.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Opens the store a database URL names, choosing the backend by its scheme:
/// `sqlite://PATH` or `sqlite:PATH` for a SQLite file (created if missing),
/// `postgres://…` or `postgresql://…` for PostgreSQL. Migrations are applied.
///
/// # Errors
/// [`StoreError::Internal`] for any other scheme or an invalid URL; otherwise as
/// the backend's `open`.
pub async fn open(database_url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let scheme = database_url
        .split_once(':')
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("sqlite") => {
            let rest = &database_url["sqlite:".len()..];
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(StoreError::Internal(
                    "the sqlite: database URL names no file (use sqlite://PATH)".into(),
                ));
            }
            Ok(Arc::new(SqliteStore::open(Path::new(path)).await?))
        }
        Some("postgres" | "postgresql") => Ok(Arc::new(PostgresStore::open(database_url).await?)),
        // The URL itself is not repeated: it may hold a password.
        _ => Err(StoreError::Internal(
            "unsupported database URL: it must start with sqlite://PATH (or sqlite:PATH), \
             postgres:// or postgresql://"
                .into(),
        )),
    }
}
