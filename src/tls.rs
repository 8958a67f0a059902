//! TLS for the HTTP and gRPC ports (rustls, with the ring provider): certificates
//! read from PEM files and re-read without a restart, on SIGHUP and when the files
//! change, keeping the old pair when a new one is bad; optional client
//! certificates on the gRPC port; and the connections both servers serve, plaintext
//! or TLS.

use std::{
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use rustls::{RootCertStore, ServerConfig, crypto::CryptoProvider, server::WebPkiClientVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;

/// How long a client may take over its TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are checked for a change.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The protocols the HTTP port offers by ALPN.
pub(crate) const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];
/// The protocol the gRPC port offers by ALPN.
pub(crate) const GRPC_ALPN: &[&[u8]] = &[b"h2"];

/// The crypto provider of every TLS configuration: ring.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Where a listener's certificate, key and (for mutual TLS) client CA come from.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) client_ca: Option<PathBuf>,
    pub(crate) alpn: &'static [&'static [u8]],
}

/// The TLS of the two ports; `None` for a plaintext one.
pub(crate) struct PortsTls {
    pub(crate) http: Option<Arc<ServerTls>>,
    pub(crate) grpc: Option<Arc<ServerTls>>,
}

/// A listener's TLS configuration, replaced when its files are read again.
pub(crate) struct ServerTls {
    name: &'static str,
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// The files' modification times and sizes when last read.
    stamp: RwLock<Vec<Option<(SystemTime, u64)>>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("name", &self.name)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the files of the `name` listener.
    ///
    /// # Errors
    /// When a file cannot be read, holds no certificate or key, or the key does not
    /// match the certificate: the message names the file.
    pub(crate) fn load(name: &'static str, files: TlsFiles) -> anyhow::Result<Arc<Self>> {
        let stamp = stamps(&files);
        let config = server_config(&files)?;
        Ok(Arc::new(Self {
            name,
            files,
            current: RwLock::new(Arc::new(config)),
            stamp: RwLock::new(stamp),
        }))
    }

    /// The acceptor for a new connection, with the configuration read last.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }

    /// Reads the files again: new connections get the new pair, open ones keep
    /// theirs. A bad new pair is logged and the old one kept.
    pub(crate) fn reload(&self) {
        let stamp = stamps(&self.files);
        match server_config(&self.files) {
            Ok(config) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
                tracing::info!(
                    listener = self.name,
                    cert = %self.files.cert.display(),
                    "TLS certificate reloaded"
                );
            }
            Err(e) => tracing::error!(
                listener = self.name,
                error = format!("{e:#}"),
                "TLS certificate not reloaded; the previous one stays in use"
            ),
        }
        *self
            .stamp
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = stamp;
    }

    /// Whether the files changed since they were last read.
    fn changed(&self) -> bool {
        *self
            .stamp
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            != stamps(&self.files)
    }
}

/// The modification time and size of each file, `None` for one that cannot be read.
fn stamps(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    })
    .collect()
}

/// Re-reads every configuration on SIGHUP, and each one whose files changed, until
/// `stop`.
pub(crate) fn watch(configs: Vec<Arc<ServerTls>>, stop: CancellationToken) {
    if configs.is_empty() {
        return;
    }
    // Before the task starts: from here on a SIGHUP reloads instead of ending the
    // process.
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; certificates reload when their files change");
            None
        }
    };
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(WATCH_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    for config in &configs {
                        config.reload();
                    }
                }
                _ = interval.tick() => {
                    for config in configs.iter().filter(|c| c.changed()) {
                        config.reload();
                    }
                }
            }
        }
    });
}

/// The server configuration the files describe.
fn server_config(files: &TlsFiles) -> anyhow::Result<ServerConfig> {
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read a PEM private key from {}", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("no TLS protocol version available")?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .with_context(|| format!("cannot verify clients with {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "the key in {} does not go with the certificate in {}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    config.alpn_protocols = files.alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The certificates of a PEM file (a chain, leaf first).
///
/// # Errors
/// When the file cannot be read or holds none.
pub(crate) fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read PEM certificates from {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    Ok(certs)
}

/// The trust anchors of a PEM file of CA certificates.
fn roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .with_context(|| format!("{} holds a certificate that is no CA", path.display()))?;
    }
    Ok(roots)
}

/// A connection a server accepted: plaintext, or TLS after its handshake.
pub(crate) enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Io {
    /// The TCP connection underneath.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Io::Plain(stream) => stream,
            Io::Tls(stream) => stream.get_ref().0,
        }
    }

    /// Completes the handshake of `stream` when the listener has TLS.
    ///
    /// # Errors
    /// When the handshake fails (a plaintext client on a TLS port, an untrusted
    /// client certificate) or takes longer than [`HANDSHAKE_TIMEOUT`].
    pub(crate) async fn accept(stream: TcpStream, tls: Option<&ServerTls>) -> io::Result<Self> {
        let _ = stream.set_nodelay(true);
        match tls {
            None => Ok(Io::Plain(stream)),
            Some(tls) => {
                let handshake = tls.acceptor().accept(stream);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(result) => result.map(|stream| Io::Tls(Box::new(stream))),
                    Err(_) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the TLS handshake took too long",
                    )),
                }
            }
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Io::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Io::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Io::Tls(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(stream) => stream.is_write_vectored(),
            Io::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Io::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Io::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for Io {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp().connect_info()
    }
}

/// The connections of a gRPC listener, as tonic takes them: with TLS, each
/// handshake runs on its own task, so a slow one holds up no other connection.
pub(crate) fn incoming(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<ServerTls>>,
) -> impl futures_util::Stream<Item = io::Result<Io>> + Send + 'static {
    use futures_util::StreamExt as _;
    let Some(tls) = tls else {
        return tokio_stream::wrappers::TcpListenerStream::new(listener)
            .map(|accepted| {
                accepted.map(|stream| {
                    let _ = stream.set_nodelay(true);
                    Io::Plain(stream)
                })
            })
            .left_stream();
    };
    let (accepted, connections) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                result = listener.accept() => match result {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a gRPC connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                // The server stopped taking connections.
                () = accepted.closed() => return,
            };
            let (tls, accepted) = (tls.clone(), accepted.clone());
            tokio::spawn(async move {
                match Io::accept(stream, Some(&tls)).await {
                    Ok(io) => {
                        let _ = accepted.send(Ok(io)).await;
                    }
                    Err(e) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(connections).right_stream()
}
