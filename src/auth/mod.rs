//! Bearer tokens: the local signing key kept in the data dir, minting tokens for it
//! (`entitlement-gateway token`), and verifying them (and, when configured, tokens
//! of an external OpenID Connect issuer, see [`oidc`]) into a [`Principal`] whose
//! permissions the gRPC service checks.

pub mod oidc;

use std::{
    collections::HashMap,
    fs,
    io::{self, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::Error;

/// The permission that allows reading assignments.
pub const READ_ALL: &str = "EntitlementManagement.Read.All";
/// The permission that allows reading and writing assignments.
pub const READ_WRITE_ALL: &str = "EntitlementManagement.ReadWrite.All";

/// `iss` and `aud` of tokens signed with the local key.
pub const LOCAL_ISSUER: &str = "entitlement-gateway";
/// The audience local tokens are minted for and checked against.
pub const LOCAL_AUDIENCE: &str = "entitlement-gateway";

/// The message for a request without a bearer token (Graph's).
pub const EMPTY_TOKEN: &str = "Access token is empty.";
/// The message for a token that does not verify (Graph's). Why is only logged.
pub const INVALID_TOKEN: &str = "Access token validation failure.";

/// The gRPC metadata in which the HTTP front forwards its caller's `Authorization`
/// value; the service accepts a credential there or in `authorization`, not both.
///
/// Not `authorization` itself, because h2 never indexes an `authorization` value in
/// HPACK, so every call would carry the whole token again; under this name it is sent
/// once per connection and then as an index (HPACK matches whole values only, and a
/// signed token cannot be guessed).
pub const FORWARDED_AUTHORIZATION: &str = "x-forwarded-authorization";

/// The file, in the data dir, that holds the local signing key.
const KEY_FILE: &str = "signing-key";
/// The default allowed clock difference between a token's issuer and this service.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// What an operation needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    /// The least permission that grants this access, for messages.
    pub const fn least_permission(self) -> &'static str {
        match self {
            Access::Read => READ_ALL,
            Access::Write => READ_WRITE_ALL,
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: Option<String>,
    /// The caller's object id (`oid`): the user or service principal a
    /// `filterByCurrentUser` list is about. Application tokens may have none.
    pub object_id: Option<String>,
    /// Delegated scopes (`scp`) and application roles (`roles`) together.
    pub permissions: Vec<String>,
}

impl Principal {
    /// Checks that the caller may do what `access` describes.
    ///
    /// # Errors
    /// `PermissionDenied` naming the least permission that would do.
    pub fn require(&self, access: Access) -> Result<(), Error> {
        let granted = self.permissions.iter().any(|p| match access {
            Access::Read => p == READ_ALL || p == READ_WRITE_ALL,
            Access::Write => p == READ_WRITE_ALL,
        });
        if granted {
            Ok(())
        } else {
            Err(Error::PermissionDenied(access.least_permission()))
        }
    }
}

/// The local HMAC key: 32 random bytes, base64 in `DATA_DIR/signing-key`, mode 0600.
#[derive(Clone)]
pub struct SigningKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// Reads the key from `data_dir`, creating the dir and a new key if needed.
    ///
    /// # Errors
    /// When the dir or the file cannot be created or read, or the file is not a key.
    pub fn load_or_create(data_dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(data_dir)?;
        let path = data_dir.join(KEY_FILE);
        match Self::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let mut secret = vec![0u8; 32];
        getrandom::fill(&mut secret).map_err(io::Error::other)?;
        // Written in full to a private file first, then linked into place: a
        // process reading the key never sees a half-written file, and when two
        // create it at once, the first link wins and both use that key.
        let staging = data_dir.join(format!(".{KEY_FILE}.{}", uuid::Uuid::new_v4().simple()));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staging)?;
        file.write_all(format!("{}\n", STANDARD.encode(&secret)).as_bytes())?;
        file.sync_all()?;
        drop(file);
        let linked = fs::hard_link(&staging, &path);
        fs::remove_file(&staging)?;
        match linked {
            Ok(()) => {
                // The new name must survive a crash too.
                fs::File::open(data_dir)?.sync_all()?;
                tracing::info!(path = %path.display(), "created a new signing key");
                Ok(Self { secret })
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::read(&path),
            Err(e) => Err(e),
        }
    }

    fn read(path: &PathBuf) -> io::Result<Self> {
        let text = fs::read_to_string(path)?;
        let mode = fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the signing key is readable by others; chmod 600 it");
        }
        let secret = STANDARD.decode(text.trim()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        if secret.len() < 32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: the key must be at least 32 bytes", path.display()),
            ));
        }
        Ok(Self { secret })
    }

    /// A secret for another purpose (`label`), derived from this key so that every
    /// instance sharing the key shares it too; the key itself is never reused.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        use hmac::Mac as _;
        let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(&self.secret)
            .expect("HMAC takes any key size");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Mints a token for this key with the given permissions (as `scp`), whose
    /// subject is both its `sub` and its `oid` (the object id a
    /// `filterByCurrentUser` list is about).
    ///
    /// # Errors
    /// Only if signing fails, which it does not for HMAC keys.
    pub fn issue(
        &self,
        subject: &str,
        scopes: &[String],
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.issue_at(subject, scopes, jsonwebtoken::get_current_timestamp(), ttl)
    }

    /// Mints a token as [`SigningKey::issue`] would have at `issued_at` (seconds
    /// since the Unix epoch).
    ///
    /// # Errors
    /// Only if signing fails, which it does not for HMAC keys.
    pub fn issue_at(
        &self,
        subject: &str,
        scopes: &[String],
        issued_at: u64,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = IssuedClaims {
            iss: LOCAL_ISSUER,
            aud: LOCAL_AUDIENCE,
            sub: subject,
            oid: subject,
            iat: issued_at,
            nbf: issued_at,
            exp: issued_at + ttl.as_secs(),
            scp: scopes.join(" "),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.secret),
        )
    }
}

#[derive(Serialize)]
struct IssuedClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    oid: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    scp: String,
}

/// The claims read from a verified token (iss, aud, exp and nbf are checked by
/// the validation itself).
#[derive(Deserialize)]
pub(crate) struct VerifiedClaims {
    /// Seconds since the Unix epoch; required and checked by the validation.
    exp: u64,
    sub: Option<String>,
    oid: Option<String>,
    scp: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// The checks of a token signed with `algorithm`: signature, `exp` and `nbf` with
/// `leeway`, and `iss` and `aud` as configured.
pub(crate) fn validation(
    algorithm: Algorithm,
    issuer: &str,
    audiences: &[String],
    leeway: Duration,
) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[issuer]);
    validation.set_audience(audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_nbf = true;
    validation.leeway = leeway.as_secs();
    validation
}

/// Verifies bearer tokens: HS256 ones with the local key, RS256/ES256 ones with the
/// external issuer when there is one. The token's `alg` picks the verifier, and
/// each verifier accepts only its own algorithms, so one kind of key can never be
/// used as the other.
#[derive(Clone)]
pub struct Authenticator {
    local_key: DecodingKey,
    local: Validation,
    external: Option<Arc<oidc::ExternalIssuer>>,
    verified: Arc<VerifiedTokens>,
}

/// The most tokens [`VerifiedTokens`] remembers.
const MAX_VERIFIED_TOKENS: usize = 4096;

/// Tokens that verified, with their principal, until they expire: a caller sends
/// the same token with every request, and checking its signature again each time
/// is most of what authentication costs. Each is remembered with the external
/// issuer's count of key withdrawals at the time: once a refresh of the JWKS
/// withdraws a key, every token is verified again, so one signed with that key is
/// refused from then on.
#[derive(Default)]
struct VerifiedTokens {
    entries: Mutex<TokenMap>,
}

/// Each verified token, by its text. Hashed with foldhash, not SipHash: hashing the
/// token is most of a lookup, and only tokens that verified are ever stored, so no
/// caller can fill the map with keys chosen to collide.
type TokenMap = HashMap<Box<str>, Verified, foldhash::fast::RandomState>;

/// A verified token's principal (shared: a hit copies no strings), its expiry
/// (`exp`), and the key withdrawals counted when it was verified.
struct Verified {
    principal: Arc<Principal>,
    expires: u64,
    withdrawals: u64,
}

impl VerifiedTokens {
    fn get(&self, token: &str, now: u64, withdrawals: u64) -> Option<Arc<Principal>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(token)
            .filter(|entry| now < entry.expires && entry.withdrawals == withdrawals)
            .map(|entry| entry.principal.clone())
    }

    fn put(&self, token: &str, entry: Verified, now: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_VERIFIED_TOKENS {
            entries.retain(|_, kept| now < kept.expires && kept.withdrawals == entry.withdrawals);
            if entries.len() >= MAX_VERIFIED_TOKENS {
                entries.clear();
            }
        }
        entries.insert(token.into(), entry);
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl Authenticator {
    /// Verifies tokens signed with the local key, allowing `leeway` of clock skew.
    pub fn local(key: &SigningKey, leeway: Duration) -> Self {
        Self {
            local_key: DecodingKey::from_secret(&key.secret),
            local: validation(
                Algorithm::HS256,
                LOCAL_ISSUER,
                &[LOCAL_AUDIENCE.to_owned()],
                leeway,
            ),
            external: None,
            verified: Arc::default(),
        }
    }

    /// Also accepts tokens of an external issuer.
    #[must_use]
    pub fn with_external(mut self, issuer: Arc<oidc::ExternalIssuer>) -> Self {
        self.external = Some(issuer);
        self
    }

    /// Verifies an `Authorization` header value (`Bearer <token>`).
    ///
    /// # Errors
    /// `Unauthenticated` with Graph's message. Why verification failed is logged,
    /// never returned; the token itself is never logged.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<Principal>, Error> {
        let Some(token) = authorization
            .and_then(bearer_token)
            .filter(|t| !t.is_empty())
        else {
            return Err(Error::Unauthenticated(EMPTY_TOKEN));
        };
        let now = unix_now();
        // Read before the token is verified: a key withdrawn meanwhile makes this
        // verification one to repeat.
        let withdrawals = self
            .external
            .as_ref()
            .map_or(0, |issuer| issuer.key_withdrawals());
        if let Some(principal) = self.verified.get(token, now, withdrawals) {
            return Ok(principal);
        }
        let claims = self.verify(token).map_err(|reason| {
            tracing::warn!(%reason, "access token rejected");
            Error::Unauthenticated(INVALID_TOKEN)
        })?;
        let mut permissions: Vec<String> = claims
            .scp
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        permissions.extend(claims.roles);
        let principal = Arc::new(Principal {
            subject: claims.sub,
            object_id: claims.oid,
            permissions,
        });
        self.verified.put(
            token,
            Verified {
                principal: principal.clone(),
                expires: claims.exp,
                withdrawals,
            },
            now,
        );
        Ok(principal)
    }

    fn verify(&self, token: &str) -> Result<VerifiedClaims, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        match header.alg {
            Algorithm::HS256 => {
                jsonwebtoken::decode::<VerifiedClaims>(token, &self.local_key, &self.local)
                    .map(|data| data.claims)
                    .map_err(|e| e.to_string())
            }
            Algorithm::RS256 | Algorithm::ES256 => match &self.external {
                Some(issuer) => issuer.verify(token, &header),
                None => Err(format!(
                    "{:?} tokens need an external issuer (--oidc-issuer)",
                    header.alg
                )),
            },
            other => Err(format!("the algorithm {other:?} is not accepted")),
        }
    }
}

/// The token of a `Bearer` credential (the scheme is case-insensitive).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_first_starts_agree_on_one_complete_key() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let secrets: Vec<Vec<u8>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| scope.spawn(|| SigningKey::load_or_create(dir.path()).unwrap().secret))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(secrets.iter().all(|s| s == &secrets[0] && s.len() == 32));
            let names: Vec<_> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, [KEY_FILE], "no staging file left behind");
        }
    }

    #[test]
    fn tokens_verify_and_carry_their_scopes() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = SigningKey::load_or_create(dir.path()).unwrap();
        assert_eq!(key.secret, again.secret);

        let auth = Authenticator::local(&key, DEFAULT_LEEWAY);
        let token = key
            .issue("alice", &[READ_ALL.to_owned()], Duration::from_secs(60))
            .unwrap();
        let principal = auth.authenticate(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(principal.permissions, [READ_ALL]);
        assert!(principal.require(Access::Read).is_ok());
        assert!(matches!(
            principal.require(Access::Write),
            Err(Error::PermissionDenied(_))
        ));

        let other = SigningKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(
            Authenticator::local(&other, DEFAULT_LEEWAY)
                .authenticate(Some(&format!("Bearer {token}")))
                .is_err()
        );
        assert!(auth.authenticate(None).is_err());
        assert!(auth.authenticate(Some(&format!("Basic {token}"))).is_err());
    }
}
