//! How every listener is served: a server is spawned on its bound listener with a
//! stop signal, says where it listens, and is drained within the shutdown bound. The
//! gRPC, HTTP and admin servers all run this way.

use std::{future::Future, net::SocketAddr};

use anyhow::Context as _;
use futures_util::future::{self, FutureExt as _};
use tokio::{net::TcpListener, task::JoinHandle, time::Instant};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A server running on its listener.
pub(crate) struct Server {
    name: &'static str,
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Spawns `serve` on `listener`; `serve` gets the listener and the future that
    /// completes when the server must stop taking new work.
    ///
    /// # Errors
    /// When the listener has no local address.
    pub(crate) fn spawn<F>(
        name: &'static str,
        listener: TcpListener,
        serve: impl FnOnce(TcpListener, WaitForCancellationFutureOwned) -> F,
    ) -> anyhow::Result<Self>
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let addr = listener
            .local_addr()
            .with_context(|| format!("the {name} listener has no address"))?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, stop.clone().cancelled_owned()));
        Ok(Self {
            name,
            addr,
            stop,
            task,
        })
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops it taking new work and waits for its work in flight, until `deadline`;
    /// then abandons what is left.
    pub(crate) async fn drain(self, deadline: Instant) {
        let name = self.name;
        self.stop.cancel();
        let abort = self.task.abort_handle();
        match tokio::time::timeout_at(deadline, self.task).await {
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
}

/// Completes when the first of `servers` stops by itself (none should), with why;
/// never when there are none.
pub(crate) async fn first_stopped(servers: &mut [Server]) -> anyhow::Error {
    if servers.is_empty() {
        return future::pending().await;
    }
    let ((name, result), _, _) = future::select_all(servers.iter_mut().map(|server| {
        let name = server.name;
        (&mut server.task).map(move |result| (name, result))
    }))
    .await;
    match result {
        Ok(Ok(())) => anyhow::anyhow!("the {name} server stopped"),
        Ok(Err(e)) => e,
        Err(e) => anyhow::Error::new(e).context(format!("the {name} server task failed")),
    }
}
