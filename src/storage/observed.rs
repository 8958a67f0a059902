//! A [`Store`] that times every operation of another into the process's metrics.

use std::{sync::Arc, time::Instant};

use async_trait::async_trait;

use super::{Inserted, ListPage, ListQuery, Store, StoreError};
use crate::{
    domain::{Assignment, AssignmentId, filter::Filter},
    ops::metrics::Metrics,
};

/// `inner`, with the latency and outcome of each operation recorded.
pub struct Observed {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Observed {
    pub fn wrap(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<dyn Store> {
        Arc::new(Self { inner, metrics })
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = work.await;
        self.metrics
            .store_operation(operation, result.is_ok(), started.elapsed());
        result
    }
}

#[async_trait]
impl Store for Observed {
    async fn insert(&self, assignment: &Assignment) -> Result<Inserted, StoreError> {
        self.timed("insert", self.inner.insert(assignment)).await
    }

    async fn get(&self, id: &AssignmentId) -> Result<Option<Assignment>, StoreError> {
        self.timed("get", self.inner.get(id)).await
    }

    async fn list(&self, query: ListQuery<'_>) -> Result<ListPage, StoreError> {
        self.timed("list", self.inner.list(query)).await
    }

    async fn count(&self, filter: Option<&Filter>) -> Result<u64, StoreError> {
        self.timed("count", self.inner.count(filter)).await
    }

    async fn delete(&self, id: &AssignmentId) -> Result<bool, StoreError> {
        self.timed("delete", self.inner.delete(id)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", self.inner.ping()).await
    }
}
