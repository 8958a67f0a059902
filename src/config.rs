//! The command line: `serve` (the default), `token` and `completions`. Every flag can
//! also be set by an environment variable; the doc comments here are the `--help` text.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Serves access package assignments over gRPC and as a Microsoft-Graph-shaped HTTP API.
#[derive(Debug, Parser)]
#[command(name = "entitlement-gateway", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The command to run: `serve` with its defaults when none was given.
    pub fn command(self) -> Command {
        self.command.unwrap_or_else(|| {
            // Parsing an empty argument list applies every default and env var.
            Command::Serve(Box::new(ServeArgs::parse_from(["serve"])))
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC service and the Graph HTTP front (the default command).
    Serve(Box<ServeArgs>),
    /// Print a bearer token signed with the data dir's local key.
    Token(TokenArgs),
    /// Print the completion script of a shell, e.g.
    /// `entitlement-gateway completions bash > ~/.local/share/bash-completion/completions/entitlement-gateway`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Which parts of the product a `serve` process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Role {
    /// The gRPC service and the HTTP front, in one process.
    #[default]
    All,
    /// The gRPC service only (with its store).
    Grpc,
    /// The HTTP front only, calling the gRPC service at --upstream.
    Gateway,
}

impl Role {
    pub fn serves_grpc(self) -> bool {
        self != Role::Gateway
    }

    pub fn serves_http(self) -> bool {
        self != Role::Grpc
    }
}

/// The settings of `serve`.
#[derive(Debug, Clone, Parser)]
pub struct ServeArgs {
    /// What this process runs: all (both servers), grpc (the service) or gateway (the HTTP front).
    #[arg(long, env = "ENTITLEMENT_GATEWAY_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,

    /// gRPC service URL the gateway calls, e.g. http://10.0.0.5:50051; repeat (or comma-separate) to balance across several. Required with --role gateway.
    #[arg(
        long = "upstream",
        env = "ENTITLEMENT_GATEWAY_UPSTREAM",
        value_delimiter = ','
    )]
    pub upstreams: Vec<String>,

    /// Address of the Graph-shaped HTTP API (port 0 picks a free port).
    #[arg(
        long,
        env = "ENTITLEMENT_GATEWAY_HTTP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http_addr: SocketAddr,

    /// Address of the gRPC service (port 0 picks a free port).
    #[arg(
        long,
        env = "ENTITLEMENT_GATEWAY_GRPC_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub grpc_addr: SocketAddr,

    /// Directory of the SQLite database and the local signing key; created on first start.
    #[arg(long, env = "ENTITLEMENT_GATEWAY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Database of the gRPC service: sqlite://PATH or postgres://USER@HOST/DB (default: SQLite in the data dir).
    #[arg(long, env = "ENTITLEMENT_GATEWAY_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Seconds a request may take: HTTP requests then answer 504, and the same deadline goes upstream as grpc-timeout.
    #[arg(long, env = "ENTITLEMENT_GATEWAY_REQUEST_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_secs: u64,

    /// Issuer (`iss`) of tokens from an external OpenID Connect provider, e.g. https://login.microsoftonline.com/TENANT/v2.0; enables RS256/ES256 tokens besides the local key's.
    #[arg(long, env = "ENTITLEMENT_GATEWAY_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// Audience (`aud`) external tokens must have, e.g. api://entitlement-gateway; repeat (or comma-separate) to accept several.
    #[arg(
        long = "oidc-audience",
        env = "ENTITLEMENT_GATEWAY_OIDC_AUDIENCE",
        value_delimiter = ','
    )]
    pub oidc_audiences: Vec<String>,

    /// URL of the external issuer's JWKS (https; http on loopback only), fetched at start and refreshed.
    #[arg(
        long,
        env = "ENTITLEMENT_GATEWAY_OIDC_JWKS_URL",
        conflicts_with = "oidc_jwks_file"
    )]
    pub oidc_jwks_url: Option<String>,

    /// File holding the external issuer's JWKS, read at start and re-read on refresh.
    #[arg(long, env = "ENTITLEMENT_GATEWAY_OIDC_JWKS_FILE")]
    pub oidc_jwks_file: Option<PathBuf>,

    /// Seconds between refreshes of the JWKS (an unknown key id also prompts one, at most every 30 s).
    #[arg(long, env = "ENTITLEMENT_GATEWAY_OIDC_JWKS_REFRESH", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(30..=86_400))]
    pub oidc_jwks_refresh_secs: u64,

    /// Seconds of clock difference allowed when checking a token's exp and nbf.
    #[arg(long, env = "ENTITLEMENT_GATEWAY_CLOCK_SKEW", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub clock_skew_secs: u64,

    /// Seconds an HTTP/2 connection (either port, and the gateway's to its upstreams) may stay silent before a ping is sent; a peer that does not answer within as long again is disconnected.
    #[arg(long, env = "ENTITLEMENT_GATEWAY_KEEPALIVE", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub keepalive_secs: u64,

    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM before the process exits.
    #[arg(long, env = "ENTITLEMENT_GATEWAY_SHUTDOWN_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_timeout_secs: u64,

    /// Address of the admin listener: Prometheus /metrics, /healthz and /readyz ('' turns it off; port 0 picks a free port).
    #[arg(
        long,
        env = "ENTITLEMENT_GATEWAY_ADMIN_ADDR",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_addr: OptionalAddr,

    /// Log line format: text (human-readable) or json (one object per line). Which lines: RUST_LOG (default info).
    #[arg(long, env = "ENTITLEMENT_GATEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// One access-log line per request at info (method, route, status, duration, ids, gRPC code): on or off.
    #[arg(long, env = "ENTITLEMENT_GATEWAY_ACCESS_LOG", value_enum, default_value_t = Switch::On)]
    pub access_log: Switch,

    /// OTLP/HTTP (protobuf) collector to export spans to, e.g. http://127.0.0.1:4318 (spans go to /v1/traces under it); off when unset.
    #[arg(long, env = "ENTITLEMENT_GATEWAY_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Origin browsers may call the HTTP API from, e.g. https://app.example.com; repeat (or comma-separate) for several, * for any. CORS is off when unset.
    #[arg(
        long = "cors-origin",
        env = "ENTITLEMENT_GATEWAY_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// PEM certificate (chain) for TLS on the HTTP and gRPC ports, with --tls-key; plaintext is then refused on them. Re-read on SIGHUP and when the file changes.
    #[arg(long, env = "ENTITLEMENT_GATEWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "ENTITLEMENT_GATEWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM certificate (chain) for the gRPC port instead of --tls-cert, with --grpc-tls-key.
    #[arg(
        long,
        env = "ENTITLEMENT_GATEWAY_GRPC_TLS_CERT",
        requires = "grpc_tls_key"
    )]
    pub grpc_tls_cert: Option<PathBuf>,

    /// PEM private key of --grpc-tls-cert.
    #[arg(
        long,
        env = "ENTITLEMENT_GATEWAY_GRPC_TLS_KEY",
        requires = "grpc_tls_cert"
    )]
    pub grpc_tls_key: Option<PathBuf>,

    /// PEM CA certificate(s): the gRPC port then requires client certificates signed by one (mutual TLS). Needs TLS on the gRPC port.
    #[arg(long, env = "ENTITLEMENT_GATEWAY_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// PEM CA certificate(s) that https:// upstreams are verified against (default: the system's roots).
    #[arg(long, env = "ENTITLEMENT_GATEWAY_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,

    /// PEM client certificate the gateway presents to https:// upstreams, with --upstream-client-key.
    #[arg(
        long,
        env = "ENTITLEMENT_GATEWAY_UPSTREAM_CLIENT_CERT",
        requires = "upstream_client_key"
    )]
    pub upstream_client_cert: Option<PathBuf>,

    /// PEM private key of --upstream-client-cert.
    #[arg(
        long,
        env = "ENTITLEMENT_GATEWAY_UPSTREAM_CLIENT_KEY",
        requires = "upstream_client_cert"
    )]
    pub upstream_client_key: Option<PathBuf>,

    /// Public base URL of the HTTP API, e.g. https://api.example.com or https://example.com/entitlement: the scheme, host and path prefix of every absolute URL written (Location, @odata.context, @odata.nextLink, OpenAPI servers).
    #[arg(long, env = "ENTITLEMENT_GATEWAY_PUBLIC_URL")]
    pub public_url: Option<PublicUrl>,

    /// Proxy (an address or a CIDR, e.g. 10.0.0.0/8) whose Forwarded and X-Forwarded-Proto/-Host headers are trusted; repeat (or comma-separate) for several. Those of anyone else are ignored.
    #[arg(
        long = "trusted-proxy",
        env = "ENTITLEMENT_GATEWAY_TRUSTED_PROXY",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<TrustedProxy>,
}

/// How the gateway calls `https://` upstreams.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTls {
    /// The CA certificates upstreams are verified against; the system's roots when none.
    pub ca: Option<PathBuf>,
    /// The client certificate and key to present.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// The public base URL of the HTTP API: `scheme://host[:port]` and a path prefix
/// (empty, or starting with `/`, without a trailing one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`.
    pub authority: String,
    /// `""` or `/prefix`.
    pub path: String,
}

impl PublicUrl {
    /// `scheme://authority` followed by the path prefix: what every URL written starts with.
    pub fn base(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.path)
    }
}

impl std::str::FromStr for PublicUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let uri: http::Uri = text
            .parse()
            .map_err(|e| format!("not a URL ({e}): use e.g. https://api.example.com"))?;
        let scheme = match uri.scheme_str() {
            Some(scheme @ ("http" | "https")) => scheme.to_owned(),
            _ => return Err("the URL must start with https:// or http://".to_owned()),
        };
        let authority = uri
            .authority()
            .ok_or("the URL has no host")?
            .as_str()
            .to_owned();
        if authority.contains('@') {
            return Err("the URL must not hold user information".to_owned());
        }
        if uri.query().is_some() || text.contains('#') {
            return Err("the URL must have no query or fragment".to_owned());
        }
        let path = uri.path().trim_end_matches('/').to_owned();
        Ok(Self {
            scheme,
            authority,
            path,
        })
    }
}

/// A proxy whose forwarding headers are trusted: an address or a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy(pub ipnet::IpNet);

impl TrustedProxy {
    /// Whether `peer` is this proxy (or in its network).
    pub fn contains(&self, peer: std::net::IpAddr) -> bool {
        self.0.contains(&peer)
    }
}

impl std::str::FromStr for TrustedProxy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        text.parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(Self)
            .map_err(|_| format!("'{text}' is neither an IP address nor a CIDR network"))
    }
}

/// A listening address that can be turned off with an empty value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl std::str::FromStr for OptionalAddr {
    type Err = std::net::AddrParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            Ok(Self(None))
        } else {
            text.trim().parse().map(|addr| Self(Some(addr)))
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

impl ServeArgs {
    /// The TLS of the HTTP port and of the gRPC port, each read from its files; `None`
    /// for a plaintext port.
    ///
    /// # Errors
    /// When a file cannot be read or holds no usable certificate or key (the message
    /// names it), or `--tls-client-ca` is given without TLS on the gRPC port.
    pub(crate) fn server_tls(&self) -> anyhow::Result<crate::tls::PortsTls> {
        use crate::tls::{GRPC_ALPN, HTTP_ALPN, ServerTls, TlsFiles};
        let pair = |cert: &Option<PathBuf>, key: &Option<PathBuf>| cert.clone().zip(key.clone());
        let http = pair(&self.tls_cert, &self.tls_key);
        let grpc = pair(&self.grpc_tls_cert, &self.grpc_tls_key).or_else(|| http.clone());
        anyhow::ensure!(
            self.tls_client_ca.is_none() || grpc.is_some(),
            "--tls-client-ca needs TLS on the gRPC port (--tls-cert or --grpc-tls-cert)"
        );
        let http = match http {
            Some((cert, key)) if self.role.serves_http() => Some(ServerTls::load(
                "HTTP",
                TlsFiles {
                    cert,
                    key,
                    client_ca: None,
                    alpn: HTTP_ALPN,
                },
            )?),
            _ => None,
        };
        let grpc = match grpc {
            Some((cert, key)) if self.role.serves_grpc() => Some(ServerTls::load(
                "gRPC",
                TlsFiles {
                    cert,
                    key,
                    client_ca: self.tls_client_ca.clone(),
                    alpn: GRPC_ALPN,
                },
            )?),
            _ => None,
        };
        Ok(crate::tls::PortsTls { http, grpc })
    }

    /// How the gateway calls `https://` upstreams.
    pub(crate) fn upstream_tls(&self) -> UpstreamTls {
        UpstreamTls {
            ca: self.upstream_ca.clone(),
            identity: self
                .upstream_client_cert
                .clone()
                .zip(self.upstream_client_key.clone()),
        }
    }

    /// Whether spans are exported as traces (`--otlp-endpoint`).
    pub fn traced(&self) -> bool {
        self.otlp_endpoint.is_some()
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// How long an HTTP/2 connection may stay silent before it is pinged, and how
    /// long the ping may then go unanswered.
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.keepalive_secs)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    /// The external issuer's settings, if one is configured.
    ///
    /// # Errors
    /// When the external issuer's flags are incomplete.
    pub fn oidc(&self) -> anyhow::Result<Option<crate::auth::oidc::OidcConfig>> {
        use crate::auth::oidc::{JwksSource, OidcConfig};
        let Some(issuer) = self.oidc_issuer.clone() else {
            anyhow::ensure!(
                self.oidc_audiences.is_empty()
                    && self.oidc_jwks_url.is_none()
                    && self.oidc_jwks_file.is_none(),
                "--oidc-audience and --oidc-jwks-* need --oidc-issuer"
            );
            return Ok(None);
        };
        anyhow::ensure!(
            !self.oidc_audiences.is_empty(),
            "--oidc-issuer needs at least one --oidc-audience"
        );
        let jwks = match (&self.oidc_jwks_url, &self.oidc_jwks_file) {
            (Some(url), None) => JwksSource::Url(url.clone()),
            (None, Some(path)) => JwksSource::File(path.clone()),
            _ => anyhow::bail!(
                "--oidc-issuer needs exactly one of --oidc-jwks-url and --oidc-jwks-file"
            ),
        };
        Ok(Some(OidcConfig {
            issuer,
            audiences: self.oidc_audiences.clone(),
            jwks,
            refresh: Duration::from_secs(self.oidc_jwks_refresh_secs),
            leeway: self.clock_skew(),
        }))
    }

    /// The clock difference allowed on tokens.
    pub fn clock_skew(&self) -> Duration {
        Duration::from_secs(self.clock_skew_secs)
    }
}

/// The settings of `token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Data directory whose signing key signs the token (a key is created if there is none).
    #[arg(long, env = "ENTITLEMENT_GATEWAY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// A permission to grant, as the token's `scp`; repeat for several.
    #[arg(long = "scope", default_value = crate::auth::READ_WRITE_ALL)]
    pub scopes: Vec<String>,

    /// Seconds the token stays valid.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub ttl: u64,

    /// The token's subject: its `sub` and its `oid` (the user whose own
    /// assignments `filterByCurrentUser(on='target')` lists).
    #[arg(long, default_value = "local-admin")]
    pub subject: String,
}
