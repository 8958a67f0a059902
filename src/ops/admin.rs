//! The admin listener (`--admin-addr`): Prometheus metrics at `/metrics`, liveness
//! at `/healthz` and readiness at `/readyz` (see [`super::health`]).

use std::sync::Arc;

use axum::{Router, extract::State, http::StatusCode, http::header, routing::get};

use super::{health::Readiness, metrics::Metrics};

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the admin endpoints look at.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
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
    match state.readiness.check().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}
