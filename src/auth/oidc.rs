//! Tokens from an external OpenID Connect issuer (for example Microsoft Entra ID):
//! RS256 and ES256 signatures checked against the issuer's JWKS, read from a file
//! or fetched from a URL, cached, and refreshed in the background (and soon after
//! a token names a key id the cache does not know, for key rotation).

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use jsonwebtoken::{
    Algorithm, DecodingKey, Header,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
};
use tokio::sync::Notify;

use super::{VerifiedClaims, validation};

/// Where the issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// The settings of an external issuer.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// The `aud` values accepted (any one of them).
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    /// How often the JWKS is read again.
    pub refresh: Duration,
    /// The clock difference allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// The least time between two reads of the JWKS prompted by unknown key ids, so a
/// stream of forged tokens cannot make the service hammer the issuer.
const MIN_REFRESH_GAP: Duration = Duration::from_secs(30);
/// How long fetching the JWKS may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One usable public key of the issuer.
struct PublicKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
    /// The key's JWK as published (its JSON text), to tell whether a later JWKS
    /// still holds it.
    published: String,
}

/// An external issuer with its cached keys.
pub struct ExternalIssuer {
    config: OidcConfig,
    keys: RwLock<Arc<Vec<PublicKey>>>,
    /// How many reads of the JWKS have withdrawn a key it held before.
    withdrawals: AtomicU64,
    /// Asks the refresher for an early read of the JWKS.
    refresh_soon: Arc<Notify>,
    client: reqwest::Client,
}

impl ExternalIssuer {
    /// Reads the JWKS once (so a misconfiguration stops the start) and keeps it
    /// fresh in the background for as long as the issuer is in use.
    ///
    /// # Errors
    /// When the JWKS URL is not https (loopback aside), or the JWKS cannot be read
    /// or holds no RS256/ES256 key.
    pub async fn start(config: OidcConfig) -> anyhow::Result<Arc<Self>> {
        if let JwksSource::Url(url) = &config.jwks {
            let parsed =
                reqwest::Url::parse(url).with_context(|| format!("invalid JWKS URL {url:?}"))?;
            let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
            anyhow::ensure!(
                parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback),
                "the JWKS URL must be https (plain http is accepted on loopback only): {url}"
            );
        }
        let issuer = Arc::new(Self {
            config,
            keys: RwLock::new(Arc::new(Vec::new())),
            withdrawals: AtomicU64::new(0),
            refresh_soon: Arc::new(Notify::new()),
            client: reqwest::Client::builder().timeout(FETCH_TIMEOUT).build()?,
        });
        let count = issuer.load().await?;
        tracing::info!(issuer = %issuer.config.issuer, keys = count, "external token issuer ready");
        tokio::spawn(refresher(
            Arc::downgrade(&issuer),
            issuer.refresh_soon.clone(),
            issuer.config.refresh,
        ));
        Ok(issuer)
    }

    /// Reads the JWKS and replaces the cached keys; returns how many are usable.
    async fn load(&self) -> anyhow::Result<usize> {
        let text = match &self.config.jwks {
            JwksSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .with_context(|| format!("cannot read the JWKS file {}", path.display()))?,
            JwksSource::Url(url) => {
                self.client
                    .get(url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .with_context(|| format!("cannot fetch the JWKS from {url}"))?
                    .text()
                    .await?
            }
        };
        let keys = parse_jwks(&text)?;
        anyhow::ensure!(
            !keys.is_empty(),
            "the JWKS holds no RS256 or ES256 signing key"
        );
        let count = keys.len();
        let kept: HashSet<&str> = keys.iter().map(|k| k.published.as_str()).collect();
        let mut current = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let withdrawn = current
            .iter()
            .filter(|old| !kept.contains(old.published.as_str()))
            .count();
        if withdrawn > 0 {
            // Bumped while the new keys are being put in place: a token verified with
            // a withdrawn key is never remembered under the new count.
            self.withdrawals.fetch_add(1, Ordering::AcqRel);
            tracing::info!(
                issuer = %self.config.issuer,
                withdrawn,
                "keys withdrawn from the JWKS; tokens they signed are no longer accepted"
            );
        }
        *current = Arc::new(keys);
        Ok(count)
    }

    /// How many reads of the JWKS have withdrawn a key: a token verified before
    /// this number last changed must be verified again.
    pub(super) fn key_withdrawals(&self) -> u64 {
        self.withdrawals.load(Ordering::Acquire)
    }

    /// Verifies a token of this issuer.
    ///
    /// # Errors
    /// Why the token was refused, for the log.
    pub(super) fn verify(&self, token: &str, header: &Header) -> Result<VerifiedClaims, String> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut candidates = keys
            .iter()
            .filter(|k| k.algorithm == header.alg && (header.kid.is_none() || k.kid == header.kid))
            .peekable();
        if candidates.peek().is_none() {
            // Perhaps the issuer rotated its keys: read the JWKS again soon.
            self.refresh_soon.notify_one();
            return Err(format!(
                "no {:?} key with id {:?} in the issuer's JWKS",
                header.alg, header.kid
            ));
        }
        let validation = validation(
            header.alg,
            &self.config.issuer,
            &self.config.audiences,
            self.config.leeway,
        );
        let mut last = String::new();
        for candidate in candidates {
            match jsonwebtoken::decode::<VerifiedClaims>(token, &candidate.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

/// Re-reads the JWKS every `interval`, or soon after a request for it, until the
/// issuer is dropped.
async fn refresher(issuer: Weak<ExternalIssuer>, refresh_soon: Arc<Notify>, interval: Duration) {
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(last + interval) => {}
            () = refresh_soon.notified() => {
                tokio::time::sleep_until(last + MIN_REFRESH_GAP).await;
            }
        }
        let Some(issuer) = issuer.upgrade() else {
            return;
        };
        match issuer.load().await {
            Ok(count) => tracing::debug!(keys = count, "JWKS refreshed"),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "JWKS refresh failed; keeping the keys we have")
            }
        }
        last = tokio::time::Instant::now();
    }
}

/// The RS256 and ES256 signing keys of a JWKS document; other keys are skipped.
fn parse_jwks(text: &str) -> anyhow::Result<Vec<PublicKey>> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_str(text).context("the JWKS is not a JSON object with \"keys\"")?;
    let mut keys = Vec::new();
    for value in document.keys {
        let published = value.to_string();
        // Keys of types this library does not know are skipped, not fatal.
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => continue,
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.push(PublicKey {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
            published,
        });
    }
    Ok(keys)
}
