//! entitlement-gateway serves Microsoft Graph's *access package assignments* to two
//! kinds of callers at once: gRPC callers (`entitlement.v1.EntitlementManagement`)
//! and Graph-shaped HTTP callers, whose JSON the HTTP front turns into real gRPC
//! calls to the same service.
//!
//! # Layout
//!
//! A request travels one way through these modules and back:
//!
//! - [`config`]: the command line (`serve`, `token`).
//! - [`http`]: the axum front; a gRPC client of the service. [`http::graph_json`] is
//!   the one mapping between Graph JSON and protobuf.
//! - [`grpc`]: the tonic service: authentication, proto in and out, and the one
//!   mapping of [`domain::Error`] to `tonic::Status`.
//! - [`service`]: the operations and every validation rule.
//! - [`domain`]: the assignment and its value types (ids, DateTimeOffset).
//! - [`storage`]: the [`storage::Store`] trait and its backends.
//! - [`auth`]: the local signing key, minting and verifying bearer tokens.
//! - [`proto`]: the generated code. [`shutdown`], [`telemetry`]: signals and logs.
//!
//! [`run`] takes already-bound listeners and a shutdown future, so callers (and
//! tests) choose the ports and know them before anything is served.

pub mod auth;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod paging;
pub mod proto;
pub mod service;
pub mod shutdown;
pub mod storage;
pub mod telemetry;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Endpoint, Server};
use tonic_health::ServingStatus;

use crate::{
    auth::{Authenticator, SigningKey},
    config::ServeArgs,
    grpc::GrpcService,
    proto::v1::entitlement_management_server::EntitlementManagementServer,
    service::AssignmentService,
    storage::SqliteStore,
};

/// The file name of the SQLite database in the data dir.
pub const DATABASE_FILE: &str = "entitlement.db";

/// The bound sockets [`run`] serves on.
#[derive(Debug)]
pub struct Listeners {
    pub http: TcpListener,
    pub grpc: TcpListener,
}

impl Listeners {
    /// Binds the addresses of `config`.
    ///
    /// # Errors
    /// When an address cannot be bound.
    pub async fn bind(config: &ServeArgs) -> anyhow::Result<Self> {
        let http = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot bind the HTTP address {}", config.http_addr))?;
        let grpc = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("cannot bind the gRPC address {}", config.grpc_addr))?;
        Ok(Self { http, grpc })
    }
}

/// Serves the gRPC service and the HTTP front until `shutdown` completes, then
/// drains both within the configured bound: health turns NOT_SERVING first, the
/// HTTP front stops and finishes its requests, then the gRPC service does.
///
/// # Errors
/// When the data dir, the key or the database cannot be opened, or a server fails.
pub async fn run(
    config: ServeArgs,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let key = SigningKey::load_or_create(&config.data_dir).with_context(|| {
        format!(
            "cannot open the signing key in {}",
            config.data_dir.display()
        )
    })?;
    let database = config.data_dir.join(DATABASE_FILE);
    let store = SqliteStore::open(&database)
        .await
        .with_context(|| format!("cannot open the database {}", database.display()))?;
    let page_tokens = paging::PageTokens::new(key.derive("entitlement-gateway page tokens v1"));
    let service = AssignmentService::new(Arc::new(store), page_tokens);
    let authenticator = Arc::new(Authenticator::local(&key));

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<EntitlementManagementServer<GrpcService>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // So that reflection clients (grpcurl) can decode the google.rpc error details.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let http_addr = listeners.http.local_addr()?;
    let grpc_addr = listeners.grpc.local_addr()?;
    tracing::info!(http.addr = %http_addr, grpc.addr = %grpc_addr, data_dir = %config.data_dir.display(), "listening");

    let grpc_stop = CancellationToken::new();
    let grpc_server = Server::builder()
        .trace_fn(grpc_span)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(GrpcService::server(service, authenticator))
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(listeners.grpc),
            grpc_stop.clone().cancelled_owned(),
        );
    let mut grpc_task: JoinHandle<anyhow::Result<()>> =
        tokio::spawn(async move { grpc_server.await.context("the gRPC server failed") });

    let channel =
        Endpoint::from_shared(format!("http://{}", connectable(grpc_addr)))?.connect_lazy();
    let app = http::router(http::AppState::new(channel, config.upstream_timeout()));
    let http_stop = CancellationToken::new();
    let http_server = axum::serve(listeners.http, app)
        .with_graceful_shutdown(http_stop.clone().cancelled_owned());
    let mut http_task: JoinHandle<anyhow::Result<()>> =
        tokio::spawn(async move { http_server.await.context("the HTTP server failed") });

    // Run until asked to stop, or until a server fails on its own.
    tokio::select! {
        () = shutdown => {}
        result = &mut grpc_task => return result?.and(Err(anyhow::anyhow!("the gRPC server stopped"))),
        result = &mut http_task => return result?.and(Err(anyhow::anyhow!("the HTTP server stopped"))),
    }

    health
        .set_not_serving::<EntitlementManagementServer<GrpcService>>()
        .await;
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let deadline = tokio::time::Instant::now() + config.shutdown_timeout();
    http_stop.cancel();
    drain("HTTP", http_task, deadline).await;
    grpc_stop.cancel();
    drain("gRPC", grpc_task, deadline).await;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for a server to finish its in-flight requests, until `deadline`.
async fn drain(name: &str, task: JoinHandle<anyhow::Result<()>>, deadline: tokio::time::Instant) {
    let abort = task.abort_handle();
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "{name} server failed while stopping"),
        Ok(Err(e)) => tracing::error!(error = %e, "{name} server task failed"),
        Err(_) => {
            tracing::warn!(
                "{name} requests still in flight at the shutdown deadline; abandoning them"
            );
            abort.abort();
        }
    }
}

/// The span of each gRPC call: its method and the request-id the gateway (or the
/// caller) sent, so every log line of the call carries them.
fn grpc_span(request: &axum::http::Request<()>) -> tracing::Span {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    tracing::info_span!(
        "grpc",
        rpc.method = request.uri().path(),
        request.id = header("request-id"),
        client_request.id = header("client-request-id"),
    )
}

/// The address to dial for a listener bound to `addr` (a wildcard address is
/// reached on loopback).
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        }
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    }
}

/// The default bound on draining, for callers that build a [`ServeArgs`] by hand.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
