//! Readiness, one rule wherever it is asked (the admin listener's `/readyz`, the HTTP
//! port's `/readyz`): ready while the process is serving (not draining), its store
//! (if it has one) answers, and an upstream (if it calls one) is in rotation. The
//! gRPC health service turns NOT_SERVING at the same moment as the first.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use crate::{http::upstream::Upstreams, storage::Store};

/// What readiness looks at.
#[derive(Clone)]
pub(crate) struct Readiness {
    serving: Arc<AtomicBool>,
    /// The gRPC service's store, in a process that runs it.
    store: Option<Arc<dyn Store>>,
    /// The HTTP front's upstreams, in a process that runs it.
    upstreams: Option<Upstreams>,
}

impl Readiness {
    pub(crate) fn new(store: Option<Arc<dyn Store>>, upstreams: Option<Upstreams>) -> Self {
        Self {
            serving: Arc::new(AtomicBool::new(true)),
            store,
            upstreams,
        }
    }

    /// Marks the process as draining: not ready from now on.
    pub(crate) fn stop_serving(&self) {
        self.serving.store(false, Ordering::Relaxed);
    }

    /// Whether the process is ready to take requests.
    ///
    /// # Errors
    /// Why it is not, in a few words.
    pub(crate) async fn check(&self) -> Result<(), &'static str> {
        if !self.serving.load(Ordering::Relaxed) {
            return Err("shutting down");
        }
        if let Some(store) = &self.store
            && store.ping().await.is_err()
        {
            return Err("store unreachable");
        }
        if let Some(upstreams) = &self.upstreams
            && !upstreams.ready()
        {
            return Err("no upstream serving");
        }
        Ok(())
    }
}
