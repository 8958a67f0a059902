//! The process's Prometheus metrics (prometheus-client): one [`Metrics`] registry,
//! passed to whoever records into it, and rendered as text at the admin listener's
//! `/metrics`.

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Latency buckets, in seconds: 250 µs to 30 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn latencies<L: Clone + std::hash::Hash + Eq>() -> Latencies<L> {
    Latencies::new_with_constructor(latency_histogram)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    role: String,
}

/// Every metric the process records.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: Latencies<HttpLabels>,
    grpc_requests: Family<RpcLabels, Counter>,
    grpc_latency: Latencies<RpcLabels>,
    upstream_latency: Latencies<RpcLabels>,
    upstream_errors: Family<RpcLabels, Counter>,
    store_latency: Latencies<StoreLabels>,
    in_flight: Family<ServerLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with every metric, and `entitlement_gateway_build_info` set.
    pub fn new(role: &str) -> Arc<Self> {
        let mut metrics = Self {
            registry: Registry::with_prefix("entitlement_gateway"),
            http_requests: Family::default(),
            http_latency: latencies(),
            grpc_requests: Family::default(),
            grpc_latency: latencies(),
            upstream_latency: latencies(),
            upstream_errors: Family::default(),
            store_latency: latencies(),
            in_flight: Family::default(),
        };
        metrics.registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            metrics.http_requests.clone(),
        );
        metrics.registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route, method and status",
            metrics.http_latency.clone(),
        );
        metrics.registry.register(
            "grpc_requests",
            "gRPC calls served, by method and code",
            metrics.grpc_requests.clone(),
        );
        metrics.registry.register(
            "grpc_request_duration_seconds",
            "Time to answer a gRPC call, by method and code",
            metrics.grpc_latency.clone(),
        );
        metrics.registry.register(
            "upstream_request_duration_seconds",
            "Time of the HTTP front's calls to the gRPC service, by method and code",
            metrics.upstream_latency.clone(),
        );
        metrics.registry.register(
            "upstream_errors",
            "The HTTP front's calls to the gRPC service that found no usable upstream \
             (UNAVAILABLE, UNKNOWN, DEADLINE_EXCEEDED), by method and code",
            metrics.upstream_errors.clone(),
        );
        metrics.registry.register(
            "store_operation_duration_seconds",
            "Time of storage operations, by operation and outcome",
            metrics.store_latency.clone(),
        );
        metrics.registry.register(
            "requests_in_flight",
            "Requests being answered now, by server (http, grpc)",
            metrics.in_flight.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                role: role.to_owned(),
            })
            .set(1);
        metrics.registry.register(
            "build_info",
            "The running version and role (always 1)",
            build,
        );
        Arc::new(metrics)
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    /// Counts a request in flight on `server` until the guard is dropped.
    pub fn in_flight(self: &Arc<Self>, server: &'static str) -> InFlight {
        let gauge = self.in_flight.get_or_create_owned(&ServerLabels { server });
        gauge.inc();
        InFlight(gauge)
    }

    /// An HTTP request answered.
    pub fn http_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        let labels = HttpLabels {
            route: route.to_owned(),
            method: method.to_owned(),
            status,
        };
        self.http_requests.get_or_create(&labels).inc();
        self.http_latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// A gRPC call served.
    pub fn grpc_request(&self, method: &'static str, code: tonic::Code, took: Duration) {
        let labels = RpcLabels {
            method,
            code: code_name(code),
        };
        self.grpc_requests.get_or_create(&labels).inc();
        self.grpc_latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// A call of the HTTP front to the gRPC service.
    pub fn upstream_call(&self, method: &'static str, code: tonic::Code, took: Duration) {
        let labels = RpcLabels {
            method,
            code: code_name(code),
        };
        self.upstream_latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if matches!(
            code,
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::DeadlineExceeded
        ) {
            self.upstream_errors.get_or_create(&labels).inc();
        }
    }

    /// A storage operation.
    pub fn store_operation(&self, operation: &'static str, ok: bool, took: Duration) {
        let labels = StoreLabels {
            operation,
            outcome: if ok { "ok" } else { "error" },
        };
        self.store_latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }
}

/// A request counted in flight; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The canonical name of a gRPC code, as in the gRPC spec (`OK`, `NOT_FOUND`, ...).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
