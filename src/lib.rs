//! entitlement-gateway serves Microsoft Graph's *access package assignments* to two
//! kinds of callers at once: gRPC callers (`entitlement.v1.EntitlementManagement`)
//! and Graph-shaped HTTP callers, whose JSON the HTTP front turns into real gRPC
//! calls to the same service.
//!
//! # Layout
//!
//! A request travels one way through these modules and back:
//!
//! - [`config`]: the command line (`serve`, `token`, `completions`).
//! - [`http`]: the axum front; a gRPC client of the service (through
//!   `http::upstream`, its balanced, health-checked channel). [`http::graph_json`] is
//!   the one mapping between Graph JSON and protobuf.
//! - `grpc`: the tonic service: authentication, proto in and out, and the one
//!   mapping of [`domain::Error`] to `tonic::Status`.
//! - `service`: the operations and every validation rule (`paging`: its page tokens).
//! - [`domain`]: the assignment, described once, and its value types (ids,
//!   DateTimeOffset, the `$filter` grammar).
//! - [`storage`]: the [`storage::Store`] trait and its backends.
//! - [`auth`]: the local signing key, minting and verifying bearer tokens.
//! - [`ops`]: running it: signals, logs and traces, access lines and metrics, and
//!   the admin listener.
//! - [`proto`]: the generated code.
//!
//! [`run`] takes already-bound listeners and a shutdown future, so callers (and
//! tests) choose the ports and know them before anything is served.

pub mod auth;
pub mod config;
pub mod domain;
pub(crate) mod grpc;
pub mod http;
pub mod ops;
pub(crate) mod paging;
pub mod proto;
pub(crate) mod service;
pub mod storage;
pub(crate) mod tls;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use futures_util::{TryFutureExt as _, future};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tonic::{
    server::NamedService,
    service::{Routes, RoutesBuilder},
};
use tonic_health::ServingStatus;
use tower::{
    layer::util::{Identity, Stack},
    util::Either,
};

use crate::{
    auth::{Authenticator, SigningKey},
    config::ServeArgs,
    grpc::GrpcService,
    http::upstream,
    ops::{
        admin,
        health::Readiness,
        metrics::Metrics,
        observe,
        server::{self, Server},
    },
    proto::v1::entitlement_management_server::EntitlementManagementServer,
    service::AssignmentService,
    storage::Store,
};

/// The file name of the SQLite database in the data dir.
pub const DATABASE_FILE: &str = "entitlement.db";

/// The bound sockets [`run`] serves on: one per server the role runs.
#[derive(Debug, Default)]
pub struct Listeners {
    pub http: Option<TcpListener>,
    pub grpc: Option<TcpListener>,
    /// The admin listener (metrics, health); none when it is turned off.
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of `config` that its role serves.
    ///
    /// # Errors
    /// When an address cannot be bound.
    pub async fn bind(config: &ServeArgs) -> anyhow::Result<Self> {
        let mut listeners = Self::default();
        if config.role.serves_http() {
            listeners.http =
                Some(listen(config.http_addr).with_context(|| {
                    format!("cannot bind the HTTP address {}", config.http_addr)
                })?);
        }
        if config.role.serves_grpc() {
            listeners.grpc =
                Some(listen(config.grpc_addr).with_context(|| {
                    format!("cannot bind the gRPC address {}", config.grpc_addr)
                })?);
        }
        if let Some(addr) = config.admin_addr.0 {
            listeners.admin = Some(
                listen(addr).with_context(|| format!("cannot bind the admin address {addr}"))?,
            );
        }
        Ok(listeners)
    }
}

/// How many connections, handshake done, the kernel holds for a listener until the
/// server accepts them. Connection attempts beyond it are dropped, and each of
/// those clients waits a second to try again: `TcpListener::bind` asks for 128,
/// which 256 clients connecting at once overflowed. The kernel caps it at
/// `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` whose accept queue holds 4096 connections (see
/// `LISTEN_BACKLOG`); called inside a tokio runtime.
///
/// # Errors
/// When `addr` cannot be bound.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted server need not wait for the old
    // one's connections to leave TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves what `config.role` names until `shutdown` completes, then drains within
/// the configured bound: readiness and gRPC health turn NOT_SERVING first, the HTTP
/// front stops and finishes its requests, then the gRPC service, then the admin
/// listener.
///
/// # Errors
/// When a listener the role needs is missing, the data dir, the key or the
/// database cannot be opened, an upstream URL is invalid, or a server fails.
pub async fn run(
    config: ServeArgs,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let metrics = Metrics::new(&format!("{:?}", config.role).to_lowercase());

    let tls::PortsTls {
        http: http_tls,
        grpc: grpc_tls,
    } = config.server_tls()?;
    let tls_watch = CancellationToken::new();
    tls::watch(
        http_tls.iter().chain(&grpc_tls).cloned().collect(),
        tls_watch.clone(),
    );
    let _stop_watching = tls_watch.drop_guard();
    if config.role.serves_http() && http_tls.is_none() {
        warn_if_clear_text(&config);
    }

    let mut store: Option<Arc<dyn Store>> = None;
    let mut grpc: Option<Server> = None;
    // All in one process: the front calls this process's gRPC services in memory.
    let mut in_process: Option<upstream::Upstream> = None;
    if config.role.serves_grpc() {
        let listener = listeners
            .grpc
            .context("the gRPC role needs a gRPC listener")?;
        let (routes, service, opened) = grpc_services(&config, health_service, &metrics).await?;
        store = Some(opened);
        if config.role.serves_http() {
            in_process = Some(in_process_upstream(
                routes.clone(),
                service,
                &metrics,
                config.traced(),
            ));
        }
        let server = grpc_server(&config, &metrics, routes);
        health
            .set_serving::<EntitlementManagementServer<GrpcService>>()
            .await;
        let tls = grpc_tls.clone();
        grpc = Some(Server::spawn(
            "gRPC",
            listener,
            |listener, stop| async move {
                server
                    .serve_with_incoming_shutdown(tls::incoming(listener, tls), stop)
                    .await
                    .context("the gRPC server failed")
            },
        )?);
    }

    let upstreams = if config.role.serves_http() {
        Some(match in_process.take() {
            // All in one process: the front is a gRPC client of this very server.
            Some(server) => upstream::Upstreams::in_process(server),
            None => upstream::Upstreams::connect(
                &config.upstreams,
                config.keepalive(),
                &config.upstream_tls(),
            )?,
        })
    } else {
        None
    };
    let readiness = Readiness::new(store, upstreams.clone());

    let mut http: Option<Server> = None;
    if let Some(upstreams) = upstreams {
        let listener = listeners
            .http
            .context("the gateway role needs an HTTP listener")?;
        let app = http::router(http::AppState::new(
            upstreams,
            readiness.clone(),
            http::LinkSettings::new(config.public_url.clone(), config.trusted_proxies.clone()),
            config.request_timeout(),
            metrics.clone(),
            config.cors_origins.clone(),
            config.traced(),
        ));
        let (timeout, keepalive) = (config.request_timeout(), config.keepalive());
        let tls = http_tls.clone();
        http = Some(Server::spawn(
            "HTTP",
            listener,
            move |listener, stop| async move {
                http::serve::serve(listener, app, tls, timeout, keepalive, stop).await;
                Ok(())
            },
        )?);
    }

    let admin = match listeners.admin {
        Some(listener) => {
            let app = admin::router(admin::AdminState {
                metrics: metrics.clone(),
                readiness: readiness.clone(),
            });
            Some(Server::spawn(
                "admin",
                listener,
                |listener, stop| async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stop)
                        .await
                        .context("the admin server failed")
                },
            )?)
        }
        None => None,
    };

    if config.role == config::Role::Gateway {
        tracing::info!(upstreams = ?config.upstreams, "calling the gRPC service");
    }
    // One line that says where everything is (scripts and tests read it).
    let addr = |server: &Option<Server>| server.as_ref().map(|s| tracing::field::display(s.addr()));
    tracing::info!(
        role = ?config.role,
        http.addr = addr(&http),
        grpc.addr = addr(&grpc),
        admin.addr = addr(&admin),
        data_dir = %config.data_dir.display(),
        "listening"
    );

    // In the order they are drained: the front first, so that it can still reach
    // the service while it finishes its requests.
    let mut servers: Vec<Server> = [http, grpc, admin].into_iter().flatten().collect();
    // Run until asked to stop, or until a server fails on its own.
    tokio::select! {
        () = shutdown => {}
        error = server::first_stopped(&mut servers) => return Err(error),
    }

    readiness.stop_serving();
    health
        .set_not_serving::<EntitlementManagementServer<GrpcService>>()
        .await;
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let deadline = tokio::time::Instant::now() + config.shutdown_timeout();
    for server in servers {
        server.drain(deadline).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Warns, once, when bearer tokens would cross a network in clear: the HTTP port is
/// plaintext on a non-loopback address and nothing says a TLS proxy is in front.
fn warn_if_clear_text(config: &ServeArgs) {
    let loopback = config.http_addr.ip().is_loopback();
    if !loopback && config.public_url.is_none() && config.trusted_proxies.is_empty() {
        tracing::warn!(
            http.addr = %config.http_addr,
            "the HTTP port is plaintext on a non-loopback address: bearer tokens will cross the network in clear; \
             serve TLS (--tls-cert, --tls-key), or put a TLS-terminating proxy in front and say so \
             (--public-url, --trusted-proxy)"
        );
    }
}

/// The layers around every gRPC service: gRPC-Web for browsers (with CORS when
/// origins are configured), then metrics and access logs.
type GrpcLayers = Stack<
    Stack<
        observe::ObserveGrpcLayer,
        Stack<
            tonic_web::GrpcWebLayer,
            Stack<Either<tower_http::cors::CorsLayer, Identity>, Identity>,
        >,
    >,
    Identity,
>;

/// The gRPC services: the service (with its store and key), health and
/// reflection; the service's own server among them; and the store, for readiness.
async fn grpc_services(
    config: &ServeArgs,
    health_service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Routes, grpc::Server, Arc<dyn Store>)> {
    let key = SigningKey::load_or_create(&config.data_dir).with_context(|| {
        format!(
            "cannot open the signing key in {}",
            config.data_dir.display()
        )
    })?;
    let database_url = config
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", config.data_dir.join(DATABASE_FILE).display()));
    // The URL is not repeated in the error: it may hold a password.
    let store = storage::open(&database_url)
        .await
        .context("cannot open the database")?;
    let store = storage::Observed::wrap(store, metrics.clone());
    let page_tokens = paging::PageTokens::new(key.derive("entitlement-gateway page tokens v1"));
    let service = AssignmentService::new(store.clone(), page_tokens);
    let mut authenticator = Authenticator::local(&key, config.clock_skew());
    if let Some(oidc) = config.oidc()? {
        authenticator = authenticator.with_external(auth::oidc::ExternalIssuer::start(oidc).await?);
    }
    let authenticator = Arc::new(authenticator);

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // So that reflection clients (grpcurl) can decode the google.rpc error details.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let server = GrpcService::server(service, authenticator);
    let mut routes = RoutesBuilder::default();
    routes
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(server.clone());
    Ok((routes.routes(), server, store))
}

/// The most requests one HTTP/2 connection may have open at once, to the HTTP front
/// or to the gRPC server (hyper's default; tonic's is no limit).
pub const MAX_CONCURRENT_STREAMS: u32 = 200;

/// The network gRPC server over `routes`: HTTP/2, and gRPC-Web (HTTP/1.1) for
/// browsers, with CORS when origins are configured; metrics and access logs.
fn grpc_server(
    config: &ServeArgs,
    metrics: &Arc<Metrics>,
    routes: Routes,
) -> tonic::transport::server::Router<GrpcLayers> {
    let layers = tower::ServiceBuilder::new()
        .layer(http::cors(&config.cors_origins))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(observe::ObserveGrpcLayer::new(
            metrics.clone(),
            config.traced(),
        ))
        .into_inner();
    tonic::transport::Server::builder()
        // gRPC-Web arrives over HTTP/1.1.
        .accept_http1(true)
        // Every call is bounded, whatever grpc-timeout the caller sent (a shorter
        // grpc-timeout is enforced too).
        .timeout(config.request_timeout())
        // And so is how many one connection may have open at once (tonic sets no
        // limit); a client that wants more waits for a stream to close.
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        // A peer that went away without closing (a crashed host, a dropped NAT
        // entry) is found out and its connection closed.
        .http2_keepalive_interval(Some(config.keepalive()))
        .http2_keepalive_timeout(Some(config.keepalive()))
        .layer(layers)
        .add_routes(routes)
}

/// The same `routes` for the HTTP front in this process, called in memory: the
/// generated client's requests go straight to the services, through the same span
/// and metrics as network calls. Calls to the service's own methods go to its
/// `server` (the interceptor and the generated server the router would pick), so
/// they skip the router's path matching; anything else (health checks) goes
/// through the router. (The front's own deadline bounds these calls: it drops a
/// call that outlives the request.)
fn in_process_upstream(
    routes: Routes,
    server: grpc::Server,
    metrics: &Arc<Metrics>,
    traced: bool,
) -> upstream::Upstream {
    use tower::ServiceExt as _;
    let dispatch = tower::service_fn(move |request: axum::http::Request<tonic::body::Body>| {
        let to_server = request
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|path| path.strip_prefix(<grpc::Server as NamedService>::NAME))
            .is_some_and(|method| method.starts_with('/'));
        if to_server {
            future::Either::Left(
                server
                    .clone()
                    .oneshot(request)
                    .map_ok(|response| response.map(tonic::body::Body::new)),
            )
        } else {
            future::Either::Right(routes.clone().oneshot(request))
        }
    });
    let service = tower::ServiceBuilder::new()
        .map_err(|never: std::convert::Infallible| match never {})
        .layer(observe::ObserveGrpcLayer::new(metrics.clone(), traced))
        .service(dispatch);
    upstream::Upstream::new(service)
}
