//! Running the service: signals and draining ([`shutdown`]), log lines and trace
//! context ([`telemetry`], written out by [`log_writer`]), the access line and metrics
//! of every request on both servers ([`observe`], [`metrics`]), and the admin
//! listener that serves metrics, health and readiness ([`admin`]).

pub(crate) mod admin;
pub(crate) mod log_writer;
pub(crate) mod metrics;
pub(crate) mod observe;
pub mod shutdown;
pub mod telemetry;
