//! The admin listener (`--admin-addr`): Prometheus metrics at `/metrics`, liveness
//! at `/healthz` and readiness at `/readyz`, mirroring `grpc.health.v1`: ready
//! while the process is serving (not draining), its store (if it has one) answers,
//! and an upstream (if it calls one) is in rotation.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, extract::State, http::StatusCode, http::header, routing::get};

use super::metrics::Metrics;
use crate::{http::upstream::Upstreams, storage::Store};

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the admin endpoints look at.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    /// The gRPC service's store, in a process that runs it.
    pub store: Option<Arc<dyn Store>>,
    /// The HTTP front's upstreams, in a process that runs it.
    pub upstreams: Option<Upstreams>,
    /// Cleared when shutdown begins, as the gRPC health status turns NOT_SERVING.
    pub serving: Arc<AtomicBool>,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<AdminState>| async move {
                (
                    [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
                    state.metrics.render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

async fn ready(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if !state.serving.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    if let Some(store) = &state.store
        && store.ping().await.is_err()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "store unreachable");
    }
    if let Some(upstreams) = &state.upstreams
        && !upstreams.ready()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "no upstream serving");
    }
    (StatusCode::OK, "ready")
}
