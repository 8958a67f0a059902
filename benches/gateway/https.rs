//! The "HTTPS" section: the HTTP create and GET by id at [`TARGET_CONNS`]
//! connections against an all-in-one server serving TLS (`--tls-cert`/`--tls-key`,
//! with a throwaway CA and server certificate made here with rcgen) and, beside it,
//! a plaintext one, over HTTP/1.1 keep-alive and over HTTP/2 (h2c on plaintext, `h2`
//! by ALPN over TLS), in rounds that alternate plaintext and HTTPS.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject as _};

use crate::{
    load::{Bench, Http, Row, Target, bearer, peak_rss_kib},
    report::spread,
    scenarios::{TARGET_CONNS, seed},
    servers::{Server, all_in_one, data_dir, mint_token},
};

/// The rounds of the section when `BENCH_HTTPS_ROUNDS` is not set.
pub const HTTPS_ROUNDS_DEFAULT: usize = 5;

/// A throwaway CA and a server certificate it signed, for 127.0.0.1, in files.
struct Certificates {
    /// The CA certificate, PEM: what the clients trust (and nothing else).
    ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

/// Makes a CA and a server certificate for 127.0.0.1 (ECDSA P-256, rcgen's default)
/// and writes them to `tmp/tls`.
fn certificates(tmp: &Path) -> Certificates {
    let dir = tmp.join("tls");
    fs::create_dir_all(&dir).expect("tls dir");
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "entitlement-gateway bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).expect("CA certificate");

    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("SAN");
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");

    let ca_pem = ca.pem();
    let (cert, key_path) = (dir.join("server.pem"), dir.join("server-key.pem"));
    fs::write(dir.join("ca.pem"), &ca_pem).expect("write ca.pem");
    fs::write(&cert, server.pem()).expect("write server.pem");
    fs::write(&key_path, key.serialize_pem()).expect("write server-key.pem");
    Certificates {
        ca_pem,
        cert,
        key: key_path,
    }
}

/// The operations of the section, in the order they run in a round.
const OPERATIONS: [&str; 2] = ["create", "get by id"];
/// The HTTP versions, each over plaintext and over TLS.
const PROTOCOLS: [Protocol; 2] = [
    Protocol {
        name: "HTTP/1.1",
        h2: false,
        plaintext: "plaintext",
        tls: "HTTPS",
    },
    Protocol {
        name: "HTTP/2",
        h2: true,
        plaintext: "h2c (plaintext)",
        tls: "HTTPS (h2 by ALPN)",
    },
];

struct Protocol {
    name: &'static str,
    h2: bool,
    /// How the table names it over plaintext and over TLS.
    plaintext: &'static str,
    tls: &'static str,
}

/// The name of a row of the section's table.
fn scenario(operation: &str, protocol: &Protocol, tls: bool) -> String {
    let over = if tls {
        protocol.tls
    } else {
        protocol.plaintext
    };
    format!("HTTP {operation}, {} {over}", protocol.name)
}

/// The TLS share of one operation and HTTP version, from the rounds.
pub struct Share {
    pub operation: &'static str,
    pub protocol: &'static str,
    /// Medians over the rounds of the server CPU per request (µs), plaintext and HTTPS.
    pub plaintext_cpu_us: f64,
    pub tls_cpu_us: f64,
    /// (HTTPS − plaintext) / HTTPS, server CPU per request: median, lowest, highest.
    pub share: (f64, f64, f64),
    /// HTTPS / plaintext, server CPU per request: median, lowest, highest.
    pub cpu_ratio: (f64, f64, f64),
    /// HTTPS / plaintext, requests/s: median, lowest, highest.
    pub throughput_ratio: (f64, f64, f64),
}

/// The section's results.
pub struct Https {
    pub rounds: usize,
    /// Per scenario, in table order, the round with the median requests/s.
    pub rows: Vec<Row>,
    pub shares: Vec<Share>,
    /// What a handshake with the HTTPS server's HTTP port negotiated.
    pub handshake: String,
    /// Peak RSS (MiB) of the plaintext and the HTTPS server at the end.
    pub peak_rss_mib: (f64, f64),
}

/// A server of the section and its targets, `[operation][protocol]`.
struct Side {
    server: Server,
    targets: Vec<Vec<Arc<Target>>>,
}

/// Starts an all-in-one server named `name` (TLS when `tls` is given), seeds
/// [`crate::scenarios::SEED_ROWS`] assignments into it over gRPC and builds its targets.
async fn side(tmp: &Path, name: &str, tls: Option<&Certificates>) -> Side {
    let data = data_dir(tmp, name);
    let mut args = all_in_one(&data);
    let paths;
    if let Some(tls) = tls {
        paths = [path_str(&tls.cert), path_str(&tls.key)];
        args.extend(["--tls-cert", paths[0], "--tls-key", paths[1]]);
    }
    let server = Server::product(tmp, name, &args);
    let token = mint_token(&data);
    let ca_pem = tls.map(|t| t.ca_pem.as_str());
    let ids = seed(&server.grpc_url(), ca_pem, &bearer(&token)).await;
    let ca = ca_pem.map(|pem| reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA PEM"));
    let base = server.collection_url();
    let targets = OPERATIONS
        .iter()
        .map(|&operation| {
            PROTOCOLS
                .iter()
                .map(|protocol| {
                    let http = Http {
                        h2: protocol.h2,
                        ca: ca.clone(),
                    };
                    Arc::new(if operation == OPERATIONS[0] {
                        Target::HttpCreate {
                            url: base.clone(),
                            token: token.clone(),
                            http,
                        }
                    } else {
                        Target::HttpGet {
                            base: base.clone(),
                            ids: ids.clone(),
                            token: token.clone(),
                            http,
                        }
                    })
                })
                .collect()
        })
        .collect();
    Side { server, targets }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Checks that each GET target is answered 200, over the HTTP version it asks for.
async fn check(side: &Side) {
    for (protocol, target) in PROTOCOLS.iter().zip(&side.targets[1]) {
        let Target::HttpGet {
            base,
            ids,
            token,
            http,
        } = &**target
        else {
            unreachable!("a GET target")
        };
        let response = http
            .client()
            .get(format!("{base}/{}", ids[0]))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{base} over {}: {e:?}", protocol.name));
        let expected = if protocol.h2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(response.status(), 200, "{base} over {}", protocol.name);
        assert_eq!(
            response.version(),
            expected,
            "{base} over {}",
            protocol.name
        );
    }
}

/// Makes one TLS handshake with `addr` (HTTP port) with the load clients' rustls
/// defaults (ring, default protocol versions, cipher suites and key exchange groups),
/// offering ALPN `h2` and `http/1.1`, and says what was negotiated.
async fn handshake(addr: &str, ca_pem: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("a CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the HTTPS port");
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let connection = stream.get_ref().1;
    let show = |v: Option<String>| v.unwrap_or_else(|| "?".into());
    format!(
        "{}, {}, key exchange {}, ALPN {}",
        show(connection.protocol_version().map(|v| format!("{v:?}"))),
        show(
            connection
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
        ),
        show(
            connection
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()))
        ),
        show(
            connection
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        ),
    )
}

/// Runs the section: a plaintext and a TLS all-in-one server side by side, and
/// `bench.settings.https_rounds` rounds that each run, at [`TARGET_CONNS`]
/// connections, every operation over every HTTP version on the plaintext server and
/// on the HTTPS one in turn (the order of each pair flipping each round).
pub async fn https(bench: &Bench, tmp: &Path) -> Https {
    let certificates = certificates(tmp);
    let plain = side(tmp, "https-plaintext", None).await;
    let tls = side(tmp, "https-tls", Some(&certificates)).await;
    check(&plain).await;
    check(&tls).await;
    let addr = tls
        .server
        .http_url()
        .strip_prefix("https://")
        .expect("an https:// URL")
        .to_owned();
    let handshake = handshake(&addr, &certificates.ca_pem).await;
    eprintln!("https: handshake {handshake}");

    let sides = [&plain, &tls];
    // [operation][protocol][plaintext, tls] -> the rounds' rows.
    let mut results: Vec<Vec<[Vec<Row>; 2]>> = OPERATIONS
        .iter()
        .map(|_| PROTOCOLS.iter().map(|_| [Vec::new(), Vec::new()]).collect())
        .collect();
    for round in 0..bench.settings.https_rounds {
        for (o, operation) in OPERATIONS.iter().enumerate() {
            for (p, protocol) in PROTOCOLS.iter().enumerate() {
                let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for s in order {
                    let side = sides[s];
                    let name = scenario(operation, protocol, s == 1);
                    let pid = [("all", side.server.pid())];
                    let row = bench
                        .level(&name, &side.targets[o][p], &pid, TARGET_CONNS)
                        .await;
                    eprintln!(
                        "https round {round}: {name} c={TARGET_CONNS}: {:.0} req/s, p50 {:.0} us, \
                         server CPU {:.0} us/req, errors {}",
                        row.requests_per_sec, row.p50_us, row.server_cpu_total_us, row.errors
                    );
                    results[o][p][s].push(row);
                }
            }
        }
    }

    let mut rows = Vec::new();
    let mut shares = Vec::new();
    let nan3 = (f64::NAN, f64::NAN, f64::NAN);
    for (o, operation) in OPERATIONS.into_iter().enumerate() {
        for (p, protocol) in PROTOCOLS.iter().enumerate() {
            let [plain_rows, tls_rows] = &results[o][p];
            let per_round = |f: fn(&Row, &Row) -> f64| {
                spread(
                    plain_rows
                        .iter()
                        .zip(tls_rows)
                        .map(|(a, b)| f(a, b))
                        .collect(),
                )
                .unwrap_or(nan3)
            };
            let median = |rows: &[Row]| {
                spread(rows.iter().map(|r| r.server_cpu_total_us).collect())
                    .map_or(f64::NAN, |s| s.0)
            };
            shares.push(Share {
                operation,
                protocol: protocol.name,
                plaintext_cpu_us: median(plain_rows),
                tls_cpu_us: median(tls_rows),
                share: per_round(|a, b| {
                    (b.server_cpu_total_us - a.server_cpu_total_us) / b.server_cpu_total_us
                }),
                cpu_ratio: per_round(|a, b| b.server_cpu_total_us / a.server_cpu_total_us),
                throughput_ratio: per_round(|a, b| b.requests_per_sec / a.requests_per_sec),
            });
        }
    }
    for operation_rows in results {
        for pair in operation_rows {
            for mut side_rows in pair {
                if side_rows.is_empty() {
                    continue;
                }
                side_rows.sort_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec));
                let middle = side_rows.len() / 2;
                rows.push(side_rows.swap_remove(middle));
            }
        }
    }
    let mib = |side: &Side| peak_rss_kib(side.server.pid()) as f64 / 1024.0;
    Https {
        rounds: bench.settings.https_rounds,
        rows,
        shares,
        handshake,
        peak_rss_mib: (mib(&plain), mib(&tls)),
    }
}
