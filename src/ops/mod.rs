//! Running the service: signals and draining ([`shutdown`]), log lines and trace
//! context ([`telemetry`], written out by [`log_writer`]), the access line and metrics
//! of every request on both servers ([`observe`], [`metrics`]), readiness
//! ([`health`]), the admin listener that serves metrics, health and readiness
//! ([`admin`]), and how every listener is served and drained ([`server`]).

pub(crate) mod admin;
pub(crate) mod health;
pub(crate) mod log_writer;
pub(crate) mod metrics;
pub(crate) mod observe;
pub(crate) mod server;
pub mod shutdown;
pub mod telemetry;
