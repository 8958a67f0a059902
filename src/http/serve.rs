//! Serving the HTTP front on a listener: HTTP/1.1 and HTTP/2 on one port (hyper's
//! auto connection), with a bound on how long a client may take to send its
//! request headers (so slow-header clients cannot hold connections open), pings on
//! silent HTTP/2 connections (so a peer that is gone does not hold one open), and a
//! graceful stop that lets in-flight requests finish.

use std::{future::Future, time::Duration};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::net::TcpListener;

/// The longest a client may take to send a request's headers.
const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` until `shutdown` completes, then waits for open connections to
/// finish their requests (the caller bounds that wait). Headers must arrive within
/// the request timeout (at most 10 s); an HTTP/2 connection silent for `keepalive` is
/// pinged, and closed if the ping goes unanswered as long.
pub async fn serve(
    listener: TcpListener,
    app: Router,
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
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, go on.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = builder
            .serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(app.clone()),
            )
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
