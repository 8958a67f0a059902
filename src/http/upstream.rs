//! The HTTP front's connections to the gRPC service: a few multiplexed channels
//! (HTTP/2 connections) per upstream instance, chosen in turn among the instances
//! in rotation. In the all-in-one process the one "instance" is the process's own
//! tonic server, called in memory: the generated client hands its request to the
//! server's routes and layers directly (the same services, interceptor,
//! authentication, validation and codec; only the socket and HTTP/2 framing are gone). An instance
//! leaves the rotation the moment a call to it fails for want of a connection, or
//! when its `grpc.health.v1` status is not SERVING (draining before a restart,
//! say); it comes back when a health check says SERVING again. If no instance is
//! in rotation, calls still go out (to each in turn), so callers get a fast 503
//! rather than a wait.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use tonic::{
    body::Body,
    transport::{Certificate, ClientTlsConfig, Endpoint, Identity},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tower::{BoxError, ServiceExt as _, util::BoxCloneSyncService};

/// How long the gateway waits for a TCP connection to an upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often each upstream's health is checked, and how long a check may take.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// The service whose health decides rotation.
const SERVICE: &str = "entitlement.v1.EntitlementManagement";
/// HTTP/2 connections per upstream: one connection's task (and flow-control
/// window) would otherwise carry every concurrent call alone.
const CONNECTIONS_PER_UPSTREAM: usize = 4;

/// How the generated client reaches an upstream: a tonic `Channel`, or the
/// in-process server's services.
pub type Upstream = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, UpstreamError>;

/// A call that could not be made (no connection, say).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UpstreamError(#[from] pub BoxError);

struct Member {
    uri: String,
    channels: Vec<Upstream>,
    in_rotation: AtomicBool,
}

impl Member {
    fn new(uri: String, channels: Vec<Upstream>) -> Self {
        Self {
            uri,
            channels,
            // Everyone starts in rotation: the gateway works before the first check.
            in_rotation: AtomicBool::new(true),
        }
    }
}

/// The upstream instances and their rotation.
#[derive(Clone)]
pub struct Upstreams {
    members: Arc<Vec<Member>>,
    next: Arc<AtomicUsize>,
}

/// Which upstream a call went to, to report how it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picked(usize);

impl Upstreams {
    /// Connects (lazily) to `urls` and starts watching their health.
    ///
    /// # Errors
    /// When there is no URL or one is invalid.
    pub fn connect(
        urls: &[String],
        keepalive: Duration,
        tls: &crate::config::UpstreamTls,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !urls.is_empty(),
            "--role gateway needs at least one --upstream URL"
        );
        let tls_config = client_tls(tls)?;
        let members = urls
            .iter()
            .map(|url| {
                let mut endpoint = Endpoint::from_shared(url.clone())
                    .with_context(|| format!("invalid upstream URL {url:?}"))?;
                if url.starts_with("https://") {
                    endpoint = endpoint
                        .tls_config(tls_config.clone())
                        .with_context(|| format!("cannot use TLS with {url:?}"))?;
                }
                let endpoint = endpoint
                    // A dead upstream must cost a caller little: fail fast.
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(keepalive)
                    .keep_alive_timeout(keepalive);
                let channels = (0..CONNECTIONS_PER_UPSTREAM)
                    .map(|_| {
                        Upstream::new(
                            endpoint
                                .connect_lazy()
                                .map_err(|e| UpstreamError(BoxError::from(e))),
                        )
                    })
                    .collect();
                Ok(Member::new(url.clone(), channels))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self::watched(members))
    }

    /// The process's own gRPC server, called in memory through `server` (its
    /// routes with its layers).
    pub fn in_process(server: Upstream) -> Self {
        Self::watched(vec![Member::new("in-process".to_owned(), vec![server])])
    }

    /// The upstreams `members`, with their health watched.
    fn watched(members: Vec<Member>) -> Self {
        let upstreams = Self {
            members: Arc::new(members),
            next: Arc::new(AtomicUsize::new(0)),
        };
        tokio::spawn(watch(Arc::downgrade(&upstreams.members)));
        upstreams
    }

    /// The next upstream in rotation, other than `avoid` when there is another.
    pub fn pick(&self, avoid: Option<Picked>) -> (Picked, Upstream) {
        let count = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..count).map(|i| (start + i) % count);
        let choice = candidates
            .clone()
            .find(|&i| {
                Some(Picked(i)) != avoid && self.members[i].in_rotation.load(Ordering::Relaxed)
            })
            .or_else(|| candidates.clone().find(|&i| Some(Picked(i)) != avoid))
            .unwrap_or(start % count);
        let channels = &self.members[choice].channels;
        (
            Picked(choice),
            channels[start / count % channels.len()].clone(),
        )
    }

    /// Takes an upstream out of rotation after a call to it could not be made; the
    /// health checks bring it back.
    pub fn failed(&self, picked: Picked) {
        let member = &self.members[picked.0];
        if member.in_rotation.swap(false, Ordering::Relaxed) {
            tracing::warn!(upstream = %member.uri, "upstream unreachable: out of rotation");
        }
    }

    /// Whether any upstream is in rotation.
    pub fn ready(&self) -> bool {
        self.members
            .iter()
            .any(|m| m.in_rotation.load(Ordering::Relaxed))
    }
}

/// The TLS of calls to `https://` upstreams: verified against the given CA or the
/// system's roots, with a client certificate when one is given.
fn client_tls(tls: &crate::config::UpstreamTls) -> anyhow::Result<ClientTlsConfig> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let mut config = match &tls.ca {
        Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?)),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(config)
}

/// Checks every upstream's health each interval and sets its rotation, until the
/// upstreams are dropped.
async fn watch(members: std::sync::Weak<Vec<Member>>) {
    let mut interval = tokio::time::interval(HEALTH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(members) = members.upgrade() else {
            return;
        };
        let checks = members.iter().map(|member| async move {
            let request = HealthCheckRequest {
                service: SERVICE.to_owned(),
            };
            let mut client = HealthClient::new(member.channels[0].clone());
            let serving = matches!(
                tokio::time::timeout(HEALTH_INTERVAL, client.check(request)).await,
                Ok(Ok(response)) if response.get_ref().status() == ServingStatus::Serving
            );
            if member.in_rotation.swap(serving, Ordering::Relaxed) != serving {
                if serving {
                    tracing::info!(upstream = %member.uri, "upstream serving: back in rotation");
                } else {
                    tracing::warn!(upstream = %member.uri, "upstream not serving: out of rotation");
                }
            }
        });
        futures_util::future::join_all(checks).await;
    }
}
