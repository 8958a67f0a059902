//! Where assignments are kept: the [`Store`] trait every backend implements, and its
//! error. Backends live one per file; the fronts only ever see `Arc<dyn Store>`
//! through the service.

mod sqlite;

use async_trait::async_trait;

pub use sqlite::SqliteStore;

use crate::domain::{Assignment, AssignmentId};

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

    /// Whether the database answers, for readiness checks.
    ///
    /// # Errors
    /// [`StoreError`] when it does not.
    async fn ping(&self) -> Result<(), StoreError>;
}
