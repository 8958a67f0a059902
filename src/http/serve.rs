//! Serving the HTTP front on a listener: HTTP/1.1 and HTTP/2 on one port (hyper's
//! auto connection), in plaintext or TLS, with a bound on how long a client may take
//! to send its request headers (so slow-header clients cannot hold connections
//! open), pings on silent HTTP/2 connections (so a peer that is gone does not hold
//! one open), and a graceful stop that lets in-flight requests finish. Each request
//! carries its [`Connection`].

use std::{future::Future, sync::Arc, time::Duration};

use axum::Router;
use tower::ServiceExt as _;

use super::Connection;
use crate::tls::{Io, ServerTls};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::net::TcpListener;

/// The longest a client may take to send a request's headers.
const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` until `shutdown` completes, then waits for open connections to
/// finish their requests (the caller bounds that wait). With `tls`, every
/// connection must complete a TLS handshake first. Headers must arrive within the
/// request timeout (at most 10 s); an HTTP/2 connection silent for `keepalive` is
/// pinged, and closed if the ping goes unanswered as long.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<ServerTls>>,
    request_timeout: Duration,
    keepalive: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(request_timeout.min(MAX_HEADER_READ_TIMEOUT));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(crate::MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(keepalive)
        .keep_alive_timeout(keepalive);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, go on.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = Connection {
            peer,
            tls: tls.is_some(),
        };
        let service = app
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(connection);
                request
            });
        let (builder, tls, watcher) = (builder.clone(), tls.clone(), graceful.watcher());
        tokio::spawn(async move {
            let io = match Io::accept(stream, tls.as_deref()).await {
                Ok(io) => io,
                Err(e) => {
                    tracing::debug!(error = %e, %peer, "TLS handshake failed");
                    return;
                }
            };
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(io),
                TowerToHyperService::new(service),
            );
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
