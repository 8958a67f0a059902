//! What each request leaves behind: one access-log line (target `access`, at info)
//! and its metrics, for the HTTP front (called from its middleware) and for the
//! gRPC server (a tower layer around every service). Neither ever records a token
//! or a body.

use std::{
    cell::Cell,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use futures_util::future::Either;
use tonic::{Code, transport::server::TcpConnectInfo};

use super::{
    metrics::{InFlight, Metrics, code_name},
    telemetry,
};

tokio::task_local! {
    /// The code of the last upstream call an HTTP request made.
    static UPSTREAM_CODE: Cell<Option<Code>>;
}

// The access-log target is spelled out in the macros below (tracing needs a
// literal there); it is [`telemetry::ACCESS_LOG`].

/// Runs an HTTP request's handling, and returns with its result the code of the
/// gRPC call it made, if any.
pub async fn with_upstream_code<T>(handling: impl Future<Output = T>) -> (T, Option<Code>) {
    UPSTREAM_CODE
        .scope(Cell::new(None), async {
            let output = handling.await;
            (output, UPSTREAM_CODE.with(Cell::get))
        })
        .await
}

/// Notes the code of an upstream call for the request's access-log line.
pub fn upstream_code(code: Code) {
    // Outside an HTTP request (no scope) there is no line to note it on.
    let _ = UPSTREAM_CODE.try_with(|slot| slot.set(Some(code)));
}

/// The status an HTTP request is recorded with when it ends unanswered: nginx's
/// "client closed request".
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// The access line and metrics an HTTP request owes, and its count in flight:
/// written by [`HttpRecord::finish`] with the status of its answer, or, when the
/// request's future is dropped before it was answered (hyper drops it when the
/// client goes away), on drop with [`CLIENT_CLOSED_REQUEST`]. Either way exactly
/// once.
#[derive(Debug)]
pub struct HttpRecord<'a> {
    metrics: &'a Metrics,
    started: Instant,
    /// Until the request is recorded.
    in_flight: Option<InFlight>,
    method: &'a str,
    /// The matched route (the path pattern), never the raw URL.
    route: &'a str,
    request_id: &'a str,
    client_request_id: Option<&'a str>,
    trace_id: Option<opentelemetry::trace::TraceId>,
}

impl<'a> HttpRecord<'a> {
    /// A request that started at `started`, counted in flight from now.
    pub fn new(
        metrics: &'a Arc<Metrics>,
        started: Instant,
        method: &'a str,
        route: &'a str,
        request_id: &'a str,
        client_request_id: Option<&'a str>,
        trace_id: Option<opentelemetry::trace::TraceId>,
    ) -> Self {
        Self {
            metrics,
            started,
            in_flight: Some(metrics.in_flight("http")),
            method,
            route,
            request_id,
            client_request_id,
            trace_id,
        }
    }

    /// Records the request as answered with `status`, after the gRPC call that
    /// ended with `grpc_code` (if it made one).
    pub fn finish(mut self, status: u16, grpc_code: Option<Code>) {
        self.record(status, grpc_code);
    }

    fn record(&mut self, status: u16, grpc_code: Option<Code>) {
        // Taken once: whatever is recorded second finds it gone.
        let Some(in_flight) = self.in_flight.take() else {
            return;
        };
        let took = self.started.elapsed();
        drop(in_flight);
        self.metrics
            .http_request(self.route, self.method, status, took);
        tracing::event!(
            target: "access",
            tracing::Level::INFO,
            // Strings as Display: Debug would quote and escape each one.
            http.method = %self.method,
            http.route = %self.route,
            http.status = status,
            duration_ms = took.as_secs_f64() * 1000.0,
            request.id = %self.request_id,
            client_request.id = self.client_request_id.map(tracing::field::display),
            grpc.code = grpc_code.map(code_name).map(tracing::field::display),
            trace.id = self.trace_id.map(tracing::field::display),
            "request"
        );
    }
}

impl Drop for HttpRecord<'_> {
    fn drop(&mut self) {
        self.record(CLIENT_CLOSED_REQUEST, None);
    }
}

/// The gRPC methods served, by path; anything else is counted as `other`, so a
/// caller cannot grow the metrics without bound.
const METHODS: [&str; 10] = [
    "/entitlement.v1.EntitlementManagement/CreateAssignment",
    "/entitlement.v1.EntitlementManagement/GetAssignment",
    "/entitlement.v1.EntitlementManagement/ListAssignments",
    "/entitlement.v1.EntitlementManagement/CountAssignments",
    "/entitlement.v1.EntitlementManagement/DeleteAssignment",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "other",
];

fn method_of(path: &str) -> &'static str {
    METHODS
        .iter()
        .find(|method| **method == path)
        .copied()
        .unwrap_or("other")
}

/// Wraps every gRPC service with [`ObserveGrpc`].
#[derive(Debug, Clone)]
pub struct ObserveGrpcLayer {
    metrics: Arc<Metrics>,
    traced: bool,
}

impl ObserveGrpcLayer {
    /// `traced`: whether spans are exported as traces.
    pub fn new(metrics: Arc<Metrics>, traced: bool) -> Self {
        Self { metrics, traced }
    }
}

impl<S> tower::Layer<S> for ObserveGrpcLayer {
    type Service = ObserveGrpc<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ObserveGrpc {
            inner,
            metrics: self.metrics.clone(),
            traced: self.traced,
        }
    }
}

/// Gives each gRPC call from the network its span (with the caller's trace
/// context) and access-log line, and counts and times every call by method and
/// code. The HTTP front's in-process calls run inside the HTTP request's span and
/// are on its access line: they get a span of their own only when spans are
/// exported, where the call shows as a child of the request.
#[derive(Debug, Clone)]
pub struct ObserveGrpc<S> {
    inner: S,
    metrics: Arc<Metrics>,
    /// Whether spans are exported as traces: only then do spans carry more than
    /// the request id (a span formats its fields for log lines when it is made).
    traced: bool,
}

impl<S, B, RB> tower::Service<http::Request<B>> for ObserveGrpc<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let method = method_of(request.uri().path());
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let from_network = request.extensions().get::<TcpConnectInfo>().is_some();
        let (call, line) = if from_network || self.traced {
            let (request_id, client_request_id) =
                (header("request-id"), header("client-request-id"));
            // The call's span: every log line of the call carries its request id.
            let span = tracing::info_span!(
                "grpc",
                request.id = request_id.as_deref().map(tracing::field::display),
                rpc.method = tracing::field::Empty,
                client_request.id = tracing::field::Empty,
                trace.id = tracing::field::Empty,
            );
            if self.traced {
                span.record("rpc.method", request.uri().path());
                span.record("client_request.id", client_request_id.as_deref());
            }
            let trace_id = telemetry::adopt(&span, &telemetry::extract(request.headers()));
            // Only calls from the network get a line of their own.
            let line = from_network.then_some((request_id, client_request_id, trace_id));
            let call = span.in_scope(|| self.inner.call(request));
            (
                Either::Left(tracing::Instrument::instrument(call, span)),
                line,
            )
        } else {
            // Already inside the HTTP request's span, whose ids its lines carry.
            (Either::Right(self.inner.call(request)), None)
        };
        let record = GrpcRecord {
            metrics: self.metrics.clone(),
            method,
            started,
            in_flight: Some(self.metrics.in_flight("grpc")),
            line,
        };
        Box::pin(async move {
            let result = call.await;
            // A unary call that fails is answered with its status in the headers
            // (trailers-only); one that succeeds puts OK in the trailers.
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .map_or(Code::Ok, |status| Code::from_bytes(status.as_bytes())),
                Err(_) => Code::Unknown,
            };
            record.finish(code);
            result
        })
    }
}

/// The ids of a gRPC call from the network, for its access line.
type CallLine = (
    Option<String>,
    Option<String>,
    Option<opentelemetry::trace::TraceId>,
);

/// The metrics (and, for a call from the network, the access line) a gRPC call
/// owes: written by [`GrpcRecord::finish`] with the call's code, or, when the
/// call's future is dropped before it was answered (its caller reset the stream
/// or went away), on drop with CANCELLED. Either way exactly once.
struct GrpcRecord {
    metrics: Arc<Metrics>,
    method: &'static str,
    started: Instant,
    /// Until the call is recorded.
    in_flight: Option<InFlight>,
    line: Option<CallLine>,
}

impl GrpcRecord {
    fn finish(mut self, code: Code) {
        self.record(code);
    }

    fn record(&mut self, code: Code) {
        // Taken once: whatever is recorded second finds it gone.
        let Some(in_flight) = self.in_flight.take() else {
            return;
        };
        let took = self.started.elapsed();
        drop(in_flight);
        self.metrics.grpc_request(self.method, code, took);
        if let Some((request_id, client_request_id, trace_id)) = self.line.take() {
            tracing::event!(
                target: "access",
                tracing::Level::INFO,
                rpc.method = %self.method,
                grpc.code = %code_name(code),
                duration_ms = took.as_secs_f64() * 1000.0,
                request.id = request_id.map(tracing::field::display),
                client_request.id = client_request_id.map(tracing::field::display),
                trace.id = trace_id.map(tracing::field::display),
                "call"
            );
        }
    }
}

impl Drop for GrpcRecord {
    fn drop(&mut self) {
        self.record(Code::Cancelled);
    }
}
