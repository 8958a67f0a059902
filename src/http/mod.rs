//! The Graph-shaped HTTP front (axum). It is a gRPC *client* of the service: each
//! request is translated into an `EntitlementManagement` call through the
//! generated tonic client, and the reply back into Graph JSON. Every rule about
//! assignments, filters, selections and page sizes is the service's; the front
//! refuses only what is HTTP's (an unknown URL or query parameter, a malformed
//! option, the media type, the body's size, a missing token). It chooses the id of a
//! create that has none, so that its own retry of the call is idempotent.

mod assignments;
mod error;
pub mod graph_json;
mod links;
pub(crate) mod metadata;
pub(crate) mod openapi;
mod query;
pub(crate) mod serve;
pub(crate) mod upstream;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderName, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse as _, Response},
};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    timeout::{RequestBodyTimeoutLayer, TimeoutLayer},
};
use tracing::Instrument as _;
use uuid::Uuid;

pub use error::ApiError;
pub(crate) use links::LinkSettings;

use crate::{
    ops::{metrics::Metrics, observe, telemetry},
    proto::v1::{
        CountAssignmentsRequest, CreateAssignmentRequest, DeleteAssignmentRequest,
        GetAssignmentRequest, ListAssignmentsRequest,
        entitlement_management_client::EntitlementManagementClient,
    },
};
use upstream::{Upstream, Upstreams};

/// The version prefixes the API answers on, "" included.
pub const PREFIXES: [&str; 4] = ["", "/beta", "/v1.0", "/localtest"];
/// The collection's path after the prefix.
pub const COLLECTION: &str = "/identityGovernance/entitlementManagement/accessPackageAssignments";
/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("client-request-id");
const ODATA_VERSION: HeaderName = HeaderName::from_static("odata-version");
const GRPC_TIMEOUT: &str = "grpc-timeout";
/// The longest `client-request-id` echoed back; a longer one is replaced.
const MAX_CLIENT_REQUEST_ID: usize = 128;
/// The most bytes of request headers (names and values) accepted.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// What the handlers share. Every request clones it, so it is one `Arc`: one
/// reference count to update rather than one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The contents of [`AppState`].
pub struct Shared {
    upstreams: Upstreams,
    /// Whether the process is ready, as `/readyz` answers it.
    readiness: crate::ops::health::Readiness,
    /// Where absolute URLs start.
    links: links::LinkSettings,
    /// The deadline of each request.
    request_timeout: Duration,
    /// The same deadline as the upstream call's `grpc-timeout`, written once.
    grpc_timeout: Option<tonic::metadata::AsciiMetadataValue>,
    metrics: Arc<Metrics>,
    /// Origins allowed to call from a browser (CORS); none when empty.
    cors_origins: Vec<String>,
    /// Whether spans are exported as traces: only then does the request's span
    /// carry the method and route (log lines have them on the access line).
    traced: bool,
}

impl AppState {
    pub(crate) fn new(
        upstreams: Upstreams,
        readiness: crate::ops::health::Readiness,
        links: links::LinkSettings,
        request_timeout: Duration,
        metrics: Arc<Metrics>,
        cors_origins: Vec<String>,
        traced: bool,
    ) -> Self {
        let mut timed = tonic::Request::new(());
        timed.set_timeout(request_timeout);
        Self(Arc::new(Shared {
            upstreams,
            readiness,
            links,
            request_timeout,
            grpc_timeout: timed.metadata().get(GRPC_TIMEOUT).cloned(),
            metrics,
            cors_origins,
            traced,
        }))
    }

    /// Calls the upstream with the caller's metadata and the request's deadline.
    /// An idempotent call that finds the upstream unavailable is tried once more
    /// (on a balanced channel, usually on another instance).
    async fn call<T, R, F, Fut>(
        &self,
        metadata: tonic::metadata::MetadataMap,
        message: T,
        retry: Retry,
        rpc: F,
    ) -> Result<R, ApiError>
    where
        T: Clone + Rpc,
        F: Fn(EntitlementManagementClient<Upstream>, tonic::Request<T>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let attempt = |avoid| {
            let (picked, channel) = self.upstreams.pick(avoid);
            let mut request = tonic::Request::from_parts(
                metadata.clone(),
                tonic::Extensions::default(),
                message.clone(),
            );
            if let Some(timeout) = &self.grpc_timeout {
                request.metadata_mut().insert(GRPC_TIMEOUT, timeout.clone());
            }
            // Boxed: the call's future is large, and moving it by value through the
            // futures around it (the handler's, the middleware's) copies it each time.
            let call = Box::pin(rpc(EntitlementManagementClient::new(channel), request));
            async move {
                let started = Instant::now();
                let result = call.await;
                self.metrics
                    .upstream_call(T::METHOD, code_of(&result), started.elapsed());
                (picked, result)
            }
        };
        let (picked, result) = attempt(None).await;
        let result = match result {
            Err(status) if instance_lost(&status) => {
                self.upstreams.failed(picked);
                if retry == Retry::Once {
                    tracing::debug!(
                        grpc.message = status.message(),
                        "upstream call failed; retrying once elsewhere"
                    );
                    attempt(Some(picked)).await.1
                } else {
                    Err(status)
                }
            }
            other => other,
        };
        observe::upstream_code(code_of(&result));
        result
            .map(tonic::Response::into_inner)
            .map_err(|status| ApiError::from_status(&status))
    }
}

/// Whether a failed call may not have been made, or was made by an instance that
/// is gone, so that an idempotent call is safe to repeat elsewhere: UNAVAILABLE (no
/// connection, or the instance is going away), UNKNOWN (how a connection lost in
/// mid-call shows; the service itself never answers it), and CANCELLED when this
/// side's HTTP/2 client raised it rather than the service answering it (hyper
/// cancels the calls still waiting on a connection that closed, as when the
/// instance is killed); a status made from a local error keeps that error as its
/// source.
pub(crate) fn instance_lost(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown => true,
        tonic::Code::Cancelled => std::error::Error::source(status).is_some(),
        _ => false,
    }
}

/// The gRPC code a call ended with.
fn code_of<R>(result: &Result<R, tonic::Status>) -> tonic::Code {
    result
        .as_ref()
        .map_or_else(tonic::Status::code, |_| tonic::Code::Ok)
}

/// The gRPC method a request message is sent to (for metrics).
trait Rpc {
    const METHOD: &'static str;
}

impl Rpc for CreateAssignmentRequest {
    const METHOD: &'static str = "CreateAssignment";
}

impl Rpc for GetAssignmentRequest {
    const METHOD: &'static str = "GetAssignment";
}

impl Rpc for ListAssignmentsRequest {
    const METHOD: &'static str = "ListAssignments";
}

impl Rpc for CountAssignmentsRequest {
    const METHOD: &'static str = "CountAssignments";
}

impl Rpc for DeleteAssignmentRequest {
    const METHOD: &'static str = "DeleteAssignment";
}

/// Whether an upstream call may be repeated when the upstream was unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Once,
    Never,
}

/// The connection a request came on, as the server accepted it (a request
/// extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// The peer's address: a client, or a proxy.
    pub peer: std::net::SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// The ids of one HTTP request, for its response, its logs and its upstream call.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// A new GUID for every request.
    pub request_id: String,
    /// The caller's `client-request-id`, when it sent a usable one.
    pub client_request_id: Option<String>,
    /// The caller's W3C trace context (`traceparent`), passed on upstream.
    pub trace: opentelemetry::Context,
    /// The connection the request came on.
    pub connection: Option<Connection>,
}

impl RequestContext {
    /// The `client-request-id` to answer with: the caller's, or the request-id.
    pub fn client_request_id(&self) -> &str {
        self.client_request_id
            .as_deref()
            .unwrap_or(&self.request_id)
    }
}

/// The HTTP application: routes for every prefix, Graph errors for everything else.
pub fn router(state: AppState) -> Router {
    let timeout = state.request_timeout;
    let cors = cors(&state.cors_origins);
    // Every route, each registered with its OpenAPI operation (see `openapi`):
    // add a route there, not here, so that /openapi.json lists it.
    openapi::router(state.links.public_url())
        .fallback(|| async { ApiError::from_http_status(StatusCode::NOT_FOUND) })
        .method_not_allowed_fallback(|| async {
            ApiError::from_http_status(StatusCode::METHOD_NOT_ALLOWED)
        })
        .with_state(state.clone())
        // One stack, applied once: each `Router::layer` call wraps every route in
        // another boxed service, and each request clones the whole nest of them.
        .layer(
            tower::ServiceBuilder::new()
                .layer(cors)
                .layer(middleware::from_fn_with_state::<
                    _,
                    _,
                    (State<AppState>, Request),
                >(state, request_context))
                // Dropping the handler's future at the deadline also cancels its
                // upstream call (the HTTP/2 stream is reset), as a client that
                // disconnects does.
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::GATEWAY_TIMEOUT,
                    timeout,
                ))
                .map_response(
                    |response: Response<tower_http::limit::ResponseBody<Body>>| {
                        response.map(Body::new)
                    },
                )
                // A body that trickles in is the caller's fault (408), not a timeout
                // upstream.
                .layer(RequestBodyTimeoutLayer::new(body_timeout(timeout)))
                // A declared Content-Length over the limit is refused before any of
                // it is read.
                .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
}

/// CORS for the origins given (`*` for any); a layer that does nothing when none are.
pub(crate) fn cors(
    origins: &[String],
) -> tower::util::Either<CorsLayer, tower::layer::util::Identity> {
    if origins.is_empty() {
        return tower::util::Either::Right(tower::layer::util::Identity::new());
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    tower::util::Either::Left(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([http::Method::GET, http::Method::POST, http::Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                CLIENT_REQUEST_ID,
                HeaderName::from_static("traceparent"),
                HeaderName::from_static("tracestate"),
            ])
            .expose_headers([
                REQUEST_ID,
                CLIENT_REQUEST_ID,
                header::LOCATION,
                ODATA_VERSION,
            ])
            .max_age(Duration::from_secs(3600)),
    )
}

/// How long a caller may take to send its body: well within the request's deadline.
fn body_timeout(request_timeout: Duration) -> Duration {
    (request_timeout / 2).min(Duration::from_secs(10))
}

/// Gives each request its ids and span, renders any error as Graph's error body,
/// adds the headers Graph puts on every response, and records the request's
/// metrics and access-log line.
async fn request_context(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let client_request_id = request
        .headers()
        .get(&CLIENT_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_CLIENT_REQUEST_ID)
        .map(str::to_owned);
    let context = RequestContext {
        request_id: Uuid::new_v4().to_string(),
        client_request_id,
        trace: telemetry::extract(request.headers()),
        connection: request.extensions().get::<Connection>().copied(),
    };
    request.extensions_mut().insert(context.clone());
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    // A log line inside the request names it by its id; the access line has the
    // rest. A span formats its fields for log lines when it is made, so the others
    // are recorded only for exported traces, where they are the span's attributes.
    let span = tracing::info_span!(
        "http",
        request.id = %context.request_id,
        http.method = tracing::field::Empty,
        http.route = tracing::field::Empty,
        client_request.id = tracing::field::Empty,
        trace.id = tracing::field::Empty,
    );
    if state.traced {
        span.record("http.method", method.as_str());
        span.record("http.route", route.as_str());
        if let Some(id) = &context.client_request_id {
            span.record("client_request.id", id.as_str());
        }
    }
    let trace_id = telemetry::adopt(&span, &context.trace);
    // From here the request is in flight and owes its access line and metrics,
    // even if its future is dropped unanswered.
    let record = observe::HttpRecord::new(
        &state.metrics,
        started,
        method.as_str(),
        &route,
        &context.request_id,
        context.client_request_id.as_deref(),
        trace_id,
    );

    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    let (mut response, grpc_code) = if header_bytes > MAX_HEADER_BYTES {
        let refused =
            ApiError::from_http_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).into_response();
        (refused, None)
    } else {
        observe::with_upstream_code(next.run(request))
            .instrument(span)
            .await
    };
    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        response = keep_allow(error.render(&context), response);
    } else if response.status().is_client_error() || response.status().is_server_error() {
        // An error from outside the handlers (a layer, axum itself): make it Graph's.
        let error = ApiError::from_http_status(response.status());
        response = keep_allow(error.render(&context), response);
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&context.request_id) {
        headers.insert(REQUEST_ID, value);
    }
    if let Ok(value) = HeaderValue::from_str(context.client_request_id()) {
        headers.insert(CLIENT_REQUEST_ID, value);
    }
    headers.insert(ODATA_VERSION, HeaderValue::from_static("4.0"));
    record.finish(response.status().as_u16(), grpc_code);
    response
}

/// Carries the `Allow` header of a 405 over to the rendered error.
fn keep_allow(mut rendered: Response, original: Response) -> Response {
    if let Some(allow) = original.headers().get(header::ALLOW) {
        rendered.headers_mut().insert(header::ALLOW, allow.clone());
    }
    rendered
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tonic::{Code, Status};

    use super::instance_lost;

    #[test]
    fn only_a_cancel_raised_by_the_transport_counts_as_a_lost_instance() {
        // The service's answer: its deadline ran out, say. Not repeated.
        assert!(!instance_lost(&Status::cancelled("Timeout expired")));
        // hyper's, for a call still waiting on a connection that closed.
        let mut lost = Status::cancelled("operation was canceled");
        lost.set_source(Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(instance_lost(&lost));
        assert!(instance_lost(&Status::unavailable("no connection")));
        assert!(instance_lost(&Status::unknown("connection lost")));
        for code in [Code::DeadlineExceeded, Code::Internal, Code::NotFound] {
            assert!(!instance_lost(&Status::new(code, "answered")), "{code:?}");
        }
    }
}
