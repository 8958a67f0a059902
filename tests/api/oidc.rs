//! Tokens from an external OpenID Connect issuer, as a Microsoft Entra ID deployment
//! would send them: RS256 and ES256, checked against the issuer's JWKS (served over
//! HTTP or read from a file), with `iss`, `aud` and a bounded clock skew.

use std::sync::Arc;

use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, JwkSet},
};
use serde_json::{Value, json};

use crate::helpers::{COLLECTION, SEED_REQUEST, TestApp, assert_graph_error};

const ISSUER: &str = "https://login.example.test/tenant-1/v2.0";
const AUDIENCE: &str = "api://entitlement-gateway";

struct Key {
    kid: &'static str,
    algorithm: Algorithm,
    encoding: EncodingKey,
}

fn key(kid: &'static str, algorithm: Algorithm, file: &str) -> Key {
    let pem = std::fs::read(format!(
        "{}/tests/fixtures/oidc/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let encoding = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        _ => EncodingKey::from_ec_pem(&pem).unwrap(),
    };
    Key {
        kid,
        algorithm,
        encoding,
    }
}

fn rsa() -> Key {
    key("rsa-1", Algorithm::RS256, "rs256.pem")
}

fn ec() -> Key {
    key("ec-1", Algorithm::ES256, "es256.pem")
}

/// The issuer's JWKS: the public halves of `keys`.
fn jwks(keys: &[Key]) -> String {
    let keys = keys
        .iter()
        .map(|k| {
            let mut jwk = Jwk::from_encoding_key(&k.encoding, k.algorithm).unwrap();
            jwk.common.key_id = Some(k.kid.to_owned());
            jwk
        })
        .collect();
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

/// A token signed by `key`, with these claims over sensible defaults.
fn token(key: &Key, claims: Value) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let mut all = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "app-1", "iat": now, "nbf": now, "exp": now + 600});
    for (name, value) in claims.as_object().unwrap() {
        all[name] = value.clone();
    }
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.kid.to_owned());
    jsonwebtoken::encode(&header, &all, &key.encoding).unwrap()
}

/// Serves `body` as the issuer's JWKS on a free port; returns the URL.
async fn serve_jwks(body: String) -> String {
    JwksEndpoint::start(body).await.url
}

async fn app_with_issuer(
    jwks_url: Option<String>,
    jwks_file: Option<std::path::PathBuf>,
) -> TestApp {
    TestApp::spawn_with(Arc::new(tempfile::tempdir().unwrap()), |config| {
        config.oidc_issuer = Some(ISSUER.to_owned());
        config.oidc_audiences = vec![AUDIENCE.to_owned(), "another-audience".to_owned()];
        config.oidc_jwks_url = jwks_url;
        config.oidc_jwks_file = jwks_file;
        config.clock_skew_secs = 60;
    })
    .await
}

async fn create(app: &TestApp, token: &str) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/beta{COLLECTION}")))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(SEED_REQUEST)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn rs256_and_es256_tokens_of_the_issuer_are_accepted() {
    let url = serve_jwks(jwks(&[rsa(), ec()])).await;
    let app = app_with_issuer(Some(url), None).await;

    // An application token (roles) signed with RS256.
    let writer = token(
        &rsa(),
        json!({"roles": ["EntitlementManagement.ReadWrite.All"]}),
    );
    let response = create(&app, &writer).await;
    assert_eq!(response.status().as_u16(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A delegated token (scp) signed with ES256, for the second audience.
    let reader = token(
        &ec(),
        json!({"scp": "User.Read EntitlementManagement.Read.All", "aud": "another-audience"}),
    );
    let response = app
        .http
        .get(app.url(&format!("/beta{COLLECTION}/{id}")))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_graph_error(
        create(&app, &reader).await,
        403,
        "Authorization_RequestDenied",
    )
    .await;

    // Within the allowed clock skew.
    let now = jsonwebtoken::get_current_timestamp();
    let late = token(
        &rsa(),
        json!({"roles": ["EntitlementManagement.ReadWrite.All"], "exp": now - 30}),
    );
    assert_eq!(create(&app, &late).await.status().as_u16(), 201);

    // The local key keeps working beside the issuer.
    assert_eq!(create(&app, &app.token).await.status().as_u16(), 201);
}

#[tokio::test]
async fn tokens_that_do_not_verify_are_401() {
    let url = serve_jwks(jwks(&[rsa(), ec()])).await;
    let app = app_with_issuer(Some(url), None).await;
    let now = jsonwebtoken::get_current_timestamp();
    let roles = json!(["EntitlementManagement.ReadWrite.All"]);
    let unknown = key("ec-2", Algorithm::ES256, "es256-unknown.pem");
    let impostor = Key {
        kid: "ec-1",
        ..key("ec-1", Algorithm::ES256, "es256-unknown.pem")
    };
    let cases = [
        (
            "another issuer",
            token(
                &rsa(),
                json!({"roles": roles, "iss": "https://evil.example/v2.0"}),
            ),
        ),
        (
            "another audience",
            token(&rsa(), json!({"roles": roles, "aud": "api://someone-else"})),
        ),
        (
            "expired beyond the skew",
            token(&ec(), json!({"roles": roles, "exp": now - 120})),
        ),
        (
            "not yet valid beyond the skew",
            token(&ec(), json!({"roles": roles, "nbf": now + 300})),
        ),
        ("no exp", {
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some("rsa-1".into());
            let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "roles": roles});
            jsonwebtoken::encode(&header, &claims, &rsa().encoding).unwrap()
        }),
        (
            "a key the issuer does not publish",
            token(&unknown, json!({"roles": roles})),
        ),
        (
            "a known key id, signed by another key",
            token(&impostor, json!({"roles": roles})),
        ),
        ("the issuer's claims on an HS256 token", {
            let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "roles": roles});
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"guess"),
            )
            .unwrap()
        }),
    ];
    for (name, token) in cases {
        let message = assert_graph_error(
            create(&app, &token).await,
            401,
            "InvalidAuthenticationToken",
        )
        .await;
        assert_eq!(
            message, "Access token validation failure.",
            "{name}: the reason is logged, not returned"
        );
    }
}

#[tokio::test]
async fn the_jwks_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[rsa()])).unwrap();
    let app = app_with_issuer(None, Some(path)).await;
    let writer = token(
        &rsa(),
        json!({"scp": "EntitlementManagement.ReadWrite.All"}),
    );
    assert_eq!(create(&app, &writer).await.status().as_u16(), 201);
    // The file holds no EC key: an ES256 token does not verify.
    let other = token(&ec(), json!({"scp": "EntitlementManagement.ReadWrite.All"}));
    assert_graph_error(
        create(&app, &other).await,
        401,
        "InvalidAuthenticationToken",
    )
    .await;
}

#[tokio::test]
async fn a_misconfigured_issuer_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        crate::helpers::serve_args(entitlement_gateway::config::Role::Grpc, dir.path(), &[]);
    config.oidc_issuer = Some(ISSUER.to_owned());
    config.oidc_audiences = vec![AUDIENCE.to_owned()];
    let listeners = || entitlement_gateway::Listeners {
        http: None,
        admin: None,
        grpc: Some(
            std::net::TcpListener::bind("127.0.0.1:0")
                .map(|l| {
                    l.set_nonblocking(true).unwrap();
                    tokio::net::TcpListener::from_std(l).unwrap()
                })
                .unwrap(),
        ),
    };
    let run = |config| entitlement_gateway::run(config, listeners(), std::future::pending());
    let error = run(config.clone()).await.unwrap_err();
    assert!(format!("{error:#}").contains("--oidc-jwks"), "{error:#}");

    config.oidc_jwks_url = Some("http://jwks.example.com/keys".to_owned());
    let error = run(config.clone()).await.unwrap_err();
    assert!(format!("{error:#}").contains("https"), "{error:#}");

    config.oidc_jwks_url = Some(serve_jwks("{\"keys\": []}".to_owned()).await);
    let error = run(config).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("no RS256 or ES256"),
        "{error:#}"
    );
}

/// A JWKS endpoint whose document can be replaced; it counts how often the
/// current document has been served.
struct JwksEndpoint {
    url: String,
    /// The document, and how often it was served: one value, so that a read can
    /// never count for a document it did not get.
    document: tokio::sync::watch::Sender<(String, usize)>,
}

impl JwksEndpoint {
    async fn start(document: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/keys", listener.local_addr().unwrap());
        let document = tokio::sync::watch::Sender::new((document, 0));
        let app = axum::Router::new().route(
            "/keys",
            axum::routing::get({
                let document = document.clone();
                move || async move {
                    let mut body = String::new();
                    document.send_modify(|(current, served)| {
                        *served += 1;
                        body.clone_from(current);
                    });
                    body
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, document }
    }

    fn publish(&self, document: String) {
        self.document.send_replace((document, 0));
    }

    /// Returns once the current document has been served `times` times.
    async fn served(&self, times: usize) {
        let mut document = self.document.subscribe();
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            document.wait_for(|(_, served)| *served >= times),
        )
        .await
        .expect("the JWKS is read again")
        .unwrap();
    }
}

#[tokio::test]
async fn a_key_withdrawn_from_the_jwks_no_longer_verifies_its_tokens() {
    let endpoint = JwksEndpoint::start(jwks(&[rsa(), ec()])).await;
    let app = TestApp::spawn_with(Arc::new(tempfile::tempdir().unwrap()), |config| {
        config.oidc_issuer = Some(ISSUER.to_owned());
        config.oidc_audiences = vec![AUDIENCE.to_owned()];
        config.oidc_jwks_url = Some(endpoint.url.clone());
        // The shortest refresh there is (the command line allows 30 s and more).
        config.oidc_jwks_refresh_secs = 1;
    })
    .await;
    let roles = json!({"roles": ["EntitlementManagement.ReadWrite.All"]});
    let (signed_by_rsa, signed_by_ec) = (token(&rsa(), roles.clone()), token(&ec(), roles));
    // Both verify, and are remembered as verified.
    for token in [&signed_by_rsa, &signed_by_ec, &signed_by_rsa] {
        assert_eq!(create(&app, token).await.status().as_u16(), 201);
    }

    // The issuer withdraws its RSA key. The refresher reads the JWKS again only
    // after it has put the last read in place, so a second read of the new
    // document means the first one is in force.
    endpoint.publish(jwks(&[ec()]));
    endpoint.served(2).await;

    assert_graph_error(
        create(&app, &signed_by_rsa).await,
        401,
        "InvalidAuthenticationToken",
    )
    .await;
    assert_eq!(create(&app, &signed_by_ec).await.status().as_u16(), 201);
    // The local key is not the issuer's: its tokens are unaffected.
    assert_eq!(create(&app, &app.token).await.status().as_u16(), 201);
}

#[tokio::test]
async fn filter_by_current_user_needs_a_token_that_names_a_user() {
    let url = serve_jwks(jwks(&[rsa()])).await;
    let app = app_with_issuer(Some(url), None).await;
    let user = uuid::Uuid::new_v4().to_string();
    let body = SEED_REQUEST.replace("Target Id value", &user);
    let created = app.post_assignment("/beta", body).await;
    assert_eq!(created.status().as_u16(), 201);
    let id = created.json::<Value>().await.unwrap()["id"].clone();
    assert_eq!(create(&app, &app.token).await.status().as_u16(), 201);
    let function = app.url(&format!(
        "/beta{COLLECTION}/filterByCurrentUser(on='target')"
    ));

    // A delegated token of the issuer: its `oid` names the user.
    let delegated = token(
        &rsa(),
        json!({"scp": "EntitlementManagement.Read.All", "oid": user}),
    );
    let response = app
        .http
        .get(&function)
        .bearer_auth(&delegated)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["value"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["value"][0]["id"], id);

    // An application token with no `oid`: a clear 400, over HTTP and gRPC.
    let application = token(&rsa(), json!({"roles": ["EntitlementManagement.Read.All"]}));
    let response = app
        .http
        .get(&function)
        .bearer_auth(&application)
        .send()
        .await
        .unwrap();
    let message = assert_graph_error(response, 400, "BadRequest").await;
    assert!(message.contains("oid"), "{message}");
    let status = app
        .grpc()
        .await
        .count_assignments(crate::helpers::authorized(
            entitlement_gateway::proto::v1::CountAssignmentsRequest {
                filter_by_current_user: entitlement_gateway::proto::v1::CurrentUserFilter::Target
                    .into(),
                ..Default::default()
            },
            &application,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("oid"), "{}", status.message());
}
