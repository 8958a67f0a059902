//! TLS on the real binary's ports, with certificates made here (rcgen): HTTPS over
//! HTTP/1.1 and HTTP/2 with https:// links, gRPC over TLS, plaintext refused,
//! mutual TLS on the gRPC port, a gateway's verified https:// upstreams, and
//! certificates re-read on SIGHUP and on a file change.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use entitlement_gateway::proto::v1::{
    AccessPackageAssignment, CreateAssignmentRequest, GetAssignmentRequest,
    entitlement_management_client::EntitlementManagementClient,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _};
use serde_json::Value;
use tempfile::TempDir;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::helpers::{
    BinaryProcess, COLLECTION, SEED_REQUEST, assert_graph_error, authorized, mint_with_binary,
};

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// A certificate authority made for one test.
struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, as PEM, and the certificate's DER.
struct Issued {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Authority {
    /// A new self-signed root CA.
    fn root(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let cert = ca_params(name).self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A new intermediate CA signed by this one.
    fn intermediate(&self, name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let cert = ca_params(name)
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        Self { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A server certificate for 127.0.0.1 and localhost.
    fn server(&self) -> Issued {
        self.leaf(
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            None,
        )
    }

    /// A server certificate for 127.0.0.1 and localhost that expired in 2001.
    fn expired_server(&self) -> Issued {
        let validity = (
            rcgen::date_time_ymd(2000, 1, 1),
            rcgen::date_time_ymd(2001, 1, 1),
        );
        self.leaf(
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            Some(validity),
        )
    }

    /// A server certificate for another host only (no 127.0.0.1, no localhost).
    fn server_for_another_host(&self) -> Issued {
        self.leaf(
            &["other-host.example"],
            ExtendedKeyUsagePurpose::ServerAuth,
            None,
        )
    }

    /// A client certificate.
    fn client(&self, name: &str) -> Issued {
        self.leaf(&[name], ExtendedKeyUsagePurpose::ClientAuth, None)
    }

    fn leaf(
        &self,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
    ) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        if let Some((not_before, not_after)) = validity {
            params.not_before = not_before;
            params.not_after = not_after;
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl Issued {
    /// Writes `{stem}.pem` and `{stem}-key.pem` into `dir`; returns their paths.
    fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    /// The identity a tonic client presents.
    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

/// Writes `contents` to `dir/name`; returns the path.
fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// The process's HTTP base with https://.
fn https_base(process: &BinaryProcess) -> String {
    let addr = process
        .http_base
        .strip_prefix("http://")
        .expect("an HTTP address");
    format!("https://{addr}")
}

/// The host:port of the process's HTTP port.
fn http_addr(process: &BinaryProcess) -> String {
    process
        .http_base
        .strip_prefix("http://")
        .unwrap()
        .to_owned()
}

fn grpc_addr(process: &BinaryProcess) -> String {
    process.grpc_addr.clone().expect("a gRPC address")
}

/// A reqwest client that trusts only `ca_pem`.
fn https_client(ca_pem: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30))
}

/// TLS for a tonic client that trusts only `ca_pem`.
fn grpc_tls(ca_pem: &str) -> ClientTlsConfig {
    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem))
}

/// What a gRPC call through a new connection came to.
#[derive(Debug)]
enum Outcome {
    Created(AccessPackageAssignment),
    /// The connection could not be made.
    NotConnected(tonic::transport::Error),
    /// The call failed.
    Failed(tonic::Status),
}

/// Connects to `https://{addr}` with `tls` and creates an assignment.
async fn grpc_create(addr: &str, tls: ClientTlsConfig, token: &str) -> Outcome {
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    grpc_create_on(endpoint, token).await
}

async fn grpc_create_on(endpoint: Endpoint, token: &str) -> Outcome {
    let channel = match endpoint
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
    {
        Ok(channel) => channel,
        Err(e) => return Outcome::NotConnected(e),
    };
    let mut client = EntitlementManagementClient::new(channel);
    match client.create_assignment(create_request(token)).await {
        Ok(response) => Outcome::Created(response.into_inner()),
        Err(status) => Outcome::Failed(status),
    }
}

fn create_request(token: &str) -> tonic::Request<CreateAssignmentRequest> {
    authorized(
        CreateAssignmentRequest {
            assignment: Some(AccessPackageAssignment {
                access_package_id: Some("access-package-1".into()),
                assignment_policy_id: Some("policy-1".into()),
                target_id: Some("target-1".into()),
                ..Default::default()
            }),
        },
        token,
    )
}

/// Asserts that a gRPC client was refused at the TLS handshake: the connection
/// could not be made, or the call failed as a transport failure does
/// (UNAVAILABLE; UNKNOWN, or CANCELLED with a transport error as its source, for a
/// connection closed under the call), never an answer of the service.
fn assert_refused(outcome: &Outcome, who: &str) {
    match outcome {
        Outcome::Created(created) => panic!("{who}: the call was served: {created:?}"),
        Outcome::NotConnected(error) => eprintln!("{who}: not connected: {error:?}"),
        Outcome::Failed(status) => {
            eprintln!("{who}: failed: {status:?}");
            assert!(
                match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown => true,
                    // hyper cancels a call whose connection closed under it.
                    tonic::Code::Cancelled => std::error::Error::source(status).is_some(),
                    _ => false,
                },
                "{who}: a transport failure, not {status:?}"
            );
        }
    }
}

/// A TLS handshake with `addr` (an IP address and port) by a rustls client that
/// trusts `roots`, offers `alpn`, and presents `client` when given.
async fn handshake(
    addr: &str,
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
    client: Option<&Issued>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store);
    let mut config = match client {
        Some(client) => builder
            .with_client_auth_cert(
                vec![client.der.clone()],
                PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let host = addr.rsplit_once(':').unwrap().0;
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let tcp = TcpStream::connect(addr).await?;
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("the handshake ends within 20 s")
}

/// The leaf certificate a new TLS connection to `addr` is given.
async fn served_certificate(
    addr: &str,
    roots: &[CertificateDer<'static>],
) -> CertificateDer<'static> {
    let stream = handshake(addr, roots, &[b"h2"], None)
        .await
        .expect("a TLS handshake");
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// Sends SIGHUP to the process.
async fn hang_up(process: &BinaryProcess) {
    let pid = process.child.id().unwrap().to_string();
    let status = tokio::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

fn is_message(json: &Value, message: &str, listener: &str) -> bool {
    json["message"] == message && json["listener"] == listener
}

const RELOADED: &str = "TLS certificate reloaded";
const NOT_RELOADED: &str = "TLS certificate not reloaded; the previous one stays in use";

/// The binary serving TLS on both ports with the pair `(cert, key)`, plus `more`
/// flags.
async fn start_tls(data_dir: &Path, cert: &Path, key: &Path, more: &[&str]) -> BinaryProcess {
    let mut args = vec![
        "--http-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--tls-cert",
        s(cert),
        "--tls-key",
        s(key),
    ];
    args.extend_from_slice(more);
    BinaryProcess::start(data_dir, &args).await
}

/// A `gateway` process calling `upstream` with `more` flags.
async fn start_gateway(data_dir: &Path, upstream: &str, more: &[&str]) -> BinaryProcess {
    let mut args = vec![
        "--role",
        "gateway",
        "--http-addr",
        "127.0.0.1:0",
        "--upstream",
        upstream,
    ];
    args.extend_from_slice(more);
    BinaryProcess::start(data_dir, &args).await
}

/// POSTs the seed assignment to `collection` with `token`.
async fn post_seed(client: &reqwest::Client, collection: &str, token: &str) -> reqwest::Response {
    client
        .post(collection)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(SEED_REQUEST)
        .send()
        .await
        .expect("POST")
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// HTTPS over HTTP/1.1 and HTTP/2 (by ALPN), with the certificate file holding a
/// chain (leaf and intermediate; the client trusts only the root): create, get and
/// list answer, and Location, `@odata.context` and `@odata.nextLink` are https://
/// URLs of this port that work.
#[tokio::test]
async fn https_over_http1_and_http2_answers_with_https_links() {
    let certs = TempDir::new().unwrap();
    let data = TempDir::new().unwrap();
    let root = Authority::root("links root CA");
    let intermediate = root.intermediate("links intermediate CA");
    let leaf = intermediate.server();
    let cert = write(
        certs.path(),
        "chain.pem",
        &format!("{}{}", leaf.cert_pem, intermediate.pem()),
    );
    let key = write(certs.path(), "key.pem", &leaf.key_pem);
    let process = start_tls(data.path(), &cert, &key, &[]).await;
    let token = mint_with_binary(data.path()).await;
    let base = https_base(&process);
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let collection = format!("{base}/beta{COLLECTION}");

    let http1 = https_client(&root.pem()).http1_only().build().unwrap();
    let http2 = https_client(&root.pem()).build().unwrap();
    let mut ids = Vec::new();
    for (client, version) in [
        (&http1, reqwest::Version::HTTP_11),
        (&http2, reqwest::Version::HTTP_2),
    ] {
        let response = post_seed(client, &collection, &token).await;
        assert_eq!(response.version(), version);
        assert_eq!(response.status().as_u16(), 201);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let created: Value = response.json().await.unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(location, format!("{collection}/{id}"), "{version:?}");
        ids.push(id);
    }

    for (client, version) in [
        (&http1, reqwest::Version::HTTP_11),
        (&http2, reqwest::Version::HTTP_2),
    ] {
        let get = |url: String| {
            let request = client.get(url).bearer_auth(&token);
            async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.version(), version);
                assert_eq!(response.status().as_u16(), 200);
                response.json::<Value>().await.unwrap()
            }
        };
        // The Location of each answers the GET.
        for id in &ids {
            let one = get(format!("{collection}/{id}")).await;
            assert_eq!(one["id"], id.as_str());
            assert_eq!(
                one["@odata.context"],
                format!("{base}/beta/$metadata#accessPackageAssignments/$entity")
            );
        }
        let page = get(format!("{collection}?$top=1")).await;
        assert_eq!(
            page["@odata.context"],
            format!("{base}/beta/$metadata#accessPackageAssignments")
        );
        assert_eq!(page["value"].as_array().unwrap().len(), 1);
        let next = page["@odata.nextLink"].as_str().expect("a nextLink");
        assert!(next.starts_with(&format!("{collection}?")), "{next}");
        let rest = get(next.to_owned()).await;
        let mut seen = vec![
            page["value"][0]["id"].as_str().unwrap().to_owned(),
            rest["value"][0]["id"].as_str().unwrap().to_owned(),
        ];
        assert_eq!(rest["value"].as_array().unwrap().len(), 1);
        assert!(rest.get("@odata.nextLink").is_none(), "{rest}");
        seen.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(seen, expected);
    }
    process.terminate().await;
}

/// gRPC over TLS with the generated client: CreateAssignment and GetAssignment with
/// a bearer token; the port offers h2 only by ALPN.
#[tokio::test]
async fn grpc_over_tls_creates_and_gets_with_the_generated_client() {
    let certs = TempDir::new().unwrap();
    let data = TempDir::new().unwrap();
    let ca = Authority::root("grpc CA");
    let (cert, key) = ca.server().write(certs.path(), "server");
    let process = start_tls(data.path(), &cert, &key, &[]).await;
    let token = mint_with_binary(data.path()).await;
    let addr = grpc_addr(&process);

    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(grpc_tls(&ca.pem()))
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection");
    let mut client = EntitlementManagementClient::new(channel);
    let created = client
        .create_assignment(create_request(&token))
        .await
        .expect("CreateAssignment over TLS")
        .into_inner();
    let id = created.id.clone().expect("an id");
    let read = client
        .get_assignment(authorized(
            GetAssignmentRequest {
                id: id.clone(),
                select: None,
            },
            &token,
        ))
        .await
        .expect("GetAssignment over TLS")
        .into_inner();
    assert_eq!(read, created);

    // ALPN: h2 on the gRPC port; h2 or http/1.1 on the HTTP port.
    let roots = [ca.der()];
    let offered: &[&[u8]] = &[b"h2", b"http/1.1"];
    let grpc = handshake(&addr, &roots, offered, None).await.unwrap();
    assert_eq!(grpc.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let error = match handshake(&addr, &roots, &[b"http/1.1"], None).await {
        Ok(mut stream) => stream.read(&mut [0u8; 1]).await.expect_err("no h2, no TLS"),
        Err(e) => e,
    };
    assert!(
        format!("{error}").contains("NoApplicationProtocol"),
        "{error}"
    );
    let http = handshake(&http_addr(&process), &roots, &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(http.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    process.terminate().await;
}

/// `--grpc-tls-cert/--grpc-tls-key`: the gRPC port serves its own pair, the HTTP
/// port the `--tls-cert` one.
#[tokio::test]
async fn the_grpc_port_serves_its_own_pair() {
    let certs = TempDir::new().unwrap();
    let data = TempDir::new().unwrap();
    let ca = Authority::root("two pairs CA");
    let http_pair = ca.server();
    let grpc_pair = ca.server();
    let (cert, key) = http_pair.write(certs.path(), "http");
    let (grpc_cert, grpc_key) = grpc_pair.write(certs.path(), "grpc");
    let process = start_tls(
        data.path(),
        &cert,
        &key,
        &[
            "--grpc-tls-cert",
            s(&grpc_cert),
            "--grpc-tls-key",
            s(&grpc_key),
        ],
    )
    .await;
    let token = mint_with_binary(data.path()).await;
    let roots = [ca.der()];
    assert_eq!(
        served_certificate(&http_addr(&process), &roots).await,
        http_pair.der
    );
    assert_eq!(
        served_certificate(&grpc_addr(&process), &roots).await,
        grpc_pair.der
    );
    let outcome = grpc_create(&grpc_addr(&process), grpc_tls(&ca.pem()), &token).await;
    assert!(matches!(outcome, Outcome::Created(_)), "{outcome:?}");
    process.terminate().await;
}

/// Plaintext on the TLS ports gets no answer: plain HTTP/1.1 (raw, and reqwest's
/// HTTP/1.1 and HTTP/2) to the HTTP port is not served, and a plaintext gRPC client
/// fails; TLS clients are still served after.
#[tokio::test]
async fn plaintext_is_refused_on_tls_ports() {
    let certs = TempDir::new().unwrap();
    let data = TempDir::new().unwrap();
    let ca = Authority::root("plaintext CA");
    let (cert, key) = ca.server().write(certs.path(), "server");
    let process = start_tls(data.path(), &cert, &key, &[]).await;
    let token = mint_with_binary(data.path()).await;
    let http = http_addr(&process);
    let grpc = grpc_addr(&process);

    // Raw HTTP/1.1 in clear: whatever comes back (a TLS alert, or nothing) is no
    // HTTP answer, and the server closes the connection.
    for addr in [&http, &grpc] {
        let mut tcp = TcpStream::connect(addr.as_str()).await.unwrap();
        tcp.write_all(
            format!(
                "GET /beta{COLLECTION} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut answer))
            .await
            .expect("the server closes the connection");
        assert!(
            !answer.starts_with(b"HTTP/"),
            "{addr}: an HTTP answer in clear: {:?}",
            String::from_utf8_lossy(&answer)
        );
        // Anything sent back is a TLS alert record (content type 21).
        assert!(
            answer.is_empty() || answer[0] == 21,
            "{addr}: {answer:?} ({read:?})"
        );
    }

    // reqwest in clear, HTTP/1.1 and HTTP/2 (prior knowledge): errors, no status.
    let url = format!("http://{http}/beta{COLLECTION}");
    for client in [
        reqwest::Client::builder().http1_only(),
        reqwest::Client::builder().http2_prior_knowledge(),
    ] {
        let client = client.timeout(Duration::from_secs(20)).build().unwrap();
        let result = client.get(&url).bearer_auth(&token).send().await;
        match result {
            Ok(response) => panic!("answered in clear: {}", response.status()),
            Err(e) => assert!(!e.is_timeout(), "refused, not left hanging: {e:?}"),
        }
    }

    // A plaintext gRPC client.
    let endpoint = Endpoint::from_shared(format!("http://{grpc}")).unwrap();
    let outcome = grpc_create_on(endpoint, &token).await;
    assert_refused(&outcome, "a plaintext gRPC client");

    // The TLS clients are still served.
    let outcome = grpc_create(&grpc, grpc_tls(&ca.pem()), &token).await;
    assert!(matches!(outcome, Outcome::Created(_)), "{outcome:?}");
    let response = https_client(&ca.pem())
        .build()
        .unwrap()
        .get(format!("https://{http}/beta{COLLECTION}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    process.terminate().await;
}

/// A `grpc` process serving `pair` (issued by `ca`) and a gateway calling it over
/// https:// with `--upstream-ca ca.pem` and `gateway_flags`: what a create through
/// the gateway's (plaintext) HTTP port answers.
async fn create_through_gateway(
    ca: &Authority,
    pair: &Issued,
    grpc_flags: &[&str],
    gateway_flags: &[&str],
) -> (
    reqwest::Response,
    BinaryProcess,
    BinaryProcess,
    [TempDir; 3],
) {
    let certs = TempDir::new().unwrap();
    let grpc_data = TempDir::new().unwrap();
    let gateway_data = TempDir::new().unwrap();
    let (cert, key) = pair.write(certs.path(), "upstream");
    let ca_file = write(certs.path(), "ca.pem", &ca.pem());
    let mut args = vec!["--role", "grpc"];
    args.extend_from_slice(grpc_flags);
    let grpc = start_tls(grpc_data.path(), &cert, &key, &args).await;
    let token = mint_with_binary(grpc_data.path()).await;
    let upstream = format!("https://{}", grpc_addr(&grpc));
    let mut args = vec!["--upstream-ca", s(&ca_file)];
    args.extend_from_slice(gateway_flags);
    let gateway = start_gateway(gateway_data.path(), &upstream, &args).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let response = post_seed(&client, &gateway.collection(), &token).await;
    (response, grpc, gateway, [certs, grpc_data, gateway_data])
}

/// The gateway role's client side: an https:// upstream verified against
/// `--upstream-ca` is called, and the create answers 201 (and reads back).
#[tokio::test]
async fn a_gateway_calls_an_https_upstream_verified_against_its_ca() {
    let ca = Authority::root("upstream CA");
    let (response, grpc, gateway, dirs) = create_through_gateway(&ca, &ca.server(), &[], &[]).await;
    assert_eq!(response.status().as_u16(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    // The gateway's own port is plaintext: its links say http://.
    assert!(location.starts_with(&gateway.collection()), "{location}");
    let token = mint_with_binary(dirs[1].path()).await;
    let read = reqwest::Client::new()
        .get(&location)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 200);
    gateway.terminate().await;
    grpc.terminate().await;
}

/// An upstream whose certificate expired is refused: 503, not 201.
#[tokio::test]
async fn a_gateway_refuses_an_upstream_with_an_expired_certificate() {
    let ca = Authority::root("expired CA");
    let (response, grpc, gateway, _dirs) =
        create_through_gateway(&ca, &ca.expired_server(), &[], &[]).await;
    assert_graph_error(response, 503, "ServiceUnavailable").await;
    gateway.terminate().await;
    grpc.terminate().await;
}

/// An upstream whose certificate names another host only is refused: 503, not 201.
#[tokio::test]
async fn a_gateway_refuses_an_upstream_certificate_for_another_host() {
    let ca = Authority::root("wrong host CA");
    let (response, grpc, gateway, _dirs) =
        create_through_gateway(&ca, &ca.server_for_another_host(), &[], &[]).await;
    assert_graph_error(response, 503, "ServiceUnavailable").await;
    gateway.terminate().await;
    grpc.terminate().await;
}

/// An upstream whose certificate another CA signed is refused: 503, not 201.
#[tokio::test]
async fn a_gateway_refuses_an_upstream_signed_by_another_ca() {
    let ca = Authority::root("trusted CA");
    let other = Authority::root("other CA");
    let (response, grpc, gateway, _dirs) =
        create_through_gateway(&ca, &other.server(), &[], &[]).await;
    assert_graph_error(response, 503, "ServiceUnavailable").await;
    gateway.terminate().await;
    grpc.terminate().await;
}

/// Mutual TLS (`--tls-client-ca`): a gRPC client with no certificate, or with one
/// from another CA, is refused at the handshake; one with a certificate of the CA
/// is served.
#[tokio::test]
async fn mutual_tls_admits_only_clients_of_the_client_ca() {
    let certs = TempDir::new().unwrap();
    let data = TempDir::new().unwrap();
    let ca = Authority::root("mtls CA");
    let other = Authority::root("mtls other CA");
    let (cert, key) = ca.server().write(certs.path(), "server");
    let ca_file = write(certs.path(), "ca.pem", &ca.pem());
    let process = start_tls(
        data.path(),
        &cert,
        &key,
        &["--role", "grpc", "--tls-client-ca", s(&ca_file)],
    )
    .await;
    let token = mint_with_binary(data.path()).await;
    let addr = grpc_addr(&process);
    let roots = [ca.der()];

    // The raw handshakes: the server says why.
    let refusal = |stream: std::io::Result<tokio_rustls::client::TlsStream<TcpStream>>| async {
        let error = match stream {
            // TLS 1.3: the client is done before the server has checked it; the
            // server's alert comes with its first read.
            Ok(mut stream) => {
                let mut byte = [0u8; 1];
                stream.read(&mut byte).await.expect_err("refused")
            }
            Err(e) => e,
        };
        format!("{error}")
    };
    let none = refusal(handshake(&addr, &roots, &[b"h2"], None).await).await;
    assert!(none.contains("CertificateRequired"), "{none}");
    let foreign = other.client("foreign-client");
    let wrong = refusal(handshake(&addr, &roots, &[b"h2"], Some(&foreign)).await).await;
    assert!(wrong.contains("UnknownCA"), "{wrong}");

    // The generated client.
    assert_refused(
        &grpc_create(&addr, grpc_tls(&ca.pem()), &token).await,
        "a client with no certificate",
    );
    assert_refused(
        &grpc_create(
            &addr,
            grpc_tls(&ca.pem()).identity(foreign.identity()),
            &token,
        )
        .await,
        "a client with another CA's certificate",
    );
    let trusted = ca.client("trusted-client");
    let outcome = grpc_create(
        &addr,
        grpc_tls(&ca.pem()).identity(trusted.identity()),
        &token,
    )
    .await;
    assert!(matches!(outcome, Outcome::Created(_)), "{outcome:?}");
    process.terminate().await;
}

/// Mutual TLS through a gateway: with `--upstream-client-cert/--upstream-client-key`
/// from the upstream's client CA, the create answers 201.
#[tokio::test]
async fn a_gateway_presents_its_client_certificate_to_a_mutual_tls_upstream() {
    let ca = Authority::root("gateway mtls CA");
    let client_dir = TempDir::new().unwrap();
    let ca_file = write(client_dir.path(), "client-ca.pem", &ca.pem());
    let (client_cert, client_key) = ca.client("gateway").write(client_dir.path(), "client");
    let (response, grpc, gateway, _dirs) = create_through_gateway(
        &ca,
        &ca.server(),
        &["--tls-client-ca", s(&ca_file)],
        &[
            "--upstream-client-cert",
            s(&client_cert),
            "--upstream-client-key",
            s(&client_key),
        ],
    )
    .await;
    assert_eq!(response.status().as_u16(), 201);
    gateway.terminate().await;
    grpc.terminate().await;
}

/// A gateway with no client certificate, in front of a mutual TLS upstream, is
/// refused by it: each create answers 503 (the upstream is unavailable to it), as
/// for any upstream it cannot reach, not 201 and not 500.
///
/// With TLS 1.3 the gateway's handshake is done before the upstream has checked it;
/// the upstream's alert then closes the connection under the call, which shows as
/// UNKNOWN or CANCELLED (hyper's "connection closed") depending on timing: five
/// creates make both likely.
#[tokio::test]
async fn a_gateway_without_a_client_certificate_gets_503_from_a_mutual_tls_upstream() {
    let ca = Authority::root("gateway no client cert CA");
    let client_dir = TempDir::new().unwrap();
    let ca_file = write(client_dir.path(), "client-ca.pem", &ca.pem());
    let (response, grpc, gateway, dirs) =
        create_through_gateway(&ca, &ca.server(), &["--tls-client-ca", s(&ca_file)], &[]).await;
    assert_graph_error(response, 503, "ServiceUnavailable").await;
    let token = mint_with_binary(dirs[1].path()).await;
    let client = reqwest::Client::new();
    for _ in 0..4 {
        let response = post_seed(&client, &gateway.collection(), &token).await;
        assert_graph_error(response, 503, "ServiceUnavailable").await;
    }
    gateway.terminate().await;
    grpc.terminate().await;
}

/// SIGHUP re-reads the pair: after pair B is written over pair A, a new connection
/// is given B, while an HTTP/2 connection opened with A (by a client that trusts
/// only A's CA, so it cannot have made a new one) still serves requests.
#[tokio::test]
async fn sighup_reloads_the_certificate_for_new_connections_and_keeps_open_ones() {
    let certs = TempDir::new().unwrap();
    let data = TempDir::new().unwrap();
    let ca_a = Authority::root("reload CA A");
    let ca_b = Authority::root("reload CA B");
    let (pair_a, pair_b) = (ca_a.server(), ca_b.server());
    let (cert, key) = pair_a.write(certs.path(), "server");
    let mut process = start_tls(data.path(), &cert, &key, &[]).await;
    let token = mint_with_binary(data.path()).await;
    let http = http_addr(&process);
    let roots = [ca_a.der(), ca_b.der()];
    assert_eq!(served_certificate(&http, &roots).await, pair_a.der);

    let collection = format!("{}/beta{COLLECTION}", https_base(&process));
    let old = https_client(&ca_a.pem())
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let list = |client: &reqwest::Client| {
        client
            .get(format!("{collection}?$top=1"))
            .bearer_auth(&token)
            .send()
    };
    let response = list(&old).await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status().as_u16(), 200);

    pair_b.write(certs.path(), "server");
    hang_up(&process).await;
    process
        .line(|json| is_message(json, RELOADED, "HTTP"))
        .await;

    // A new connection is given B.
    assert_eq!(served_certificate(&http, &roots).await, pair_b.der);
    assert_eq!(
        served_certificate(&grpc_addr(&process), &roots).await,
        pair_b.der
    );
    // A new client that trusts only A cannot connect any more...
    let error = list(&https_client(&ca_a.pem()).build().unwrap())
        .await
        .expect_err("B is not signed by A's CA");
    assert!(error.is_connect(), "{error:?}");
    // ...but the connection opened with A still serves.
    for _ in 0..3 {
        let response = list(&old).await.expect("the open connection serves");
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status().as_u16(), 200);
    }
    // And a client that trusts B is served on a new connection.
    let response = list(&https_client(&ca_b.pem()).build().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    process.terminate().await;
}

/// A bad new pair (a garbage key) is logged as not reloaded, and new connections
/// still get the old certificate; once the files hold a good pair again, they are
/// re-read on their own (no SIGHUP: the file watch).
#[tokio::test]
async fn a_bad_new_pair_is_not_loaded_and_the_old_certificate_stays() {
    let certs = TempDir::new().unwrap();
    let data = TempDir::new().unwrap();
    let ca = Authority::root("bad reload CA");
    let (pair_a, pair_c) = (ca.server(), ca.server());
    let (cert, key) = pair_a.write(certs.path(), "server");
    let mut process = start_tls(data.path(), &cert, &key, &[]).await;
    let http = http_addr(&process);
    let roots = [ca.der()];

    std::fs::write(&cert, &pair_c.cert_pem).unwrap();
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    hang_up(&process).await;
    let line = process
        .line(|json| {
            json["listener"] == "HTTP"
                && (json["message"] == NOT_RELOADED || json["message"] == RELOADED)
        })
        .await;
    assert_eq!(line["message"], NOT_RELOADED, "{line}");
    assert_eq!(line["level"], "ERROR", "{line}");
    assert!(
        line["error"].as_str().unwrap().contains(s(&key)),
        "the error names the key file: {line}"
    );
    assert_eq!(served_certificate(&http, &roots).await, pair_a.der);
    assert_eq!(
        served_certificate(&grpc_addr(&process), &roots).await,
        pair_a.der
    );
    let response = https_client(&ca.pem())
        .build()
        .unwrap()
        .get(format!("{}/beta{COLLECTION}", https_base(&process)))
        .bearer_auth(mint_with_binary(data.path()).await)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // The key that goes with C: picked up when the file changes.
    std::fs::write(&key, &pair_c.key_pem).unwrap();
    process
        .line(|json| is_message(json, RELOADED, "HTTP"))
        .await;
    assert_eq!(served_certificate(&http, &roots).await, pair_c.der);
    process.terminate().await;
}
