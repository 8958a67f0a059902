//! Seeing inside: Prometheus metrics and health on the admin listener, JSON access
//! logs that carry the request-id (and never a token or a body), W3C trace context
//! carried from HTTP into gRPC metadata, OTLP export, CORS and gRPC-Web.

use std::{sync::Arc, time::Duration};

use prost::Message as _;
use tokio::sync::mpsc;

use crate::helpers::{
    BinaryProcess as Process, COLLECTION, SEED_REQUEST, TestApp, mint_with_binary as mint,
};

/// A caller's W3C trace context.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The value of the sample of `name` whose labels include every one of `labels`.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            (metric == name).then_some((rest, value))
        })
        .find(|(rest, _)| {
            labels
                .iter()
                .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")))
        })
        .and_then(|(_, value)| value.parse().ok())
}

async fn scrape(app: &TestApp) -> String {
    scrape_admin(&app.admin_base).await
}

/// The metrics of the admin listener at `admin_base`.
async fn scrape_admin(admin_base: &str) -> String {
    let response = reqwest::get(format!("{admin_base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_requests_calls_and_store_operations() {
    let app = TestApp::spawn().await;
    let route = format!("/beta{COLLECTION}");
    let created_before = {
        let metrics = scrape(&app).await;
        sample(
            &metrics,
            "entitlement_gateway_http_requests_total",
            &[("route", &route), ("method", "POST"), ("status", "201")],
        )
        .unwrap_or(0.0)
    };
    for _ in 0..3 {
        app.create_seed("/beta").await;
    }
    let missing = app
        .http
        .get(app.url(&format!(
            "/beta{COLLECTION}/9f2d4e0b-6a1c-4c55-9d0e-0d7c1a3b2e11"
        )))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let metrics = scrape(&app).await;
    let created = sample(
        &metrics,
        "entitlement_gateway_http_requests_total",
        &[("route", &route), ("method", "POST"), ("status", "201")],
    )
    .expect("a count of POST 201 on the collection route");
    assert_eq!(created - created_before, 3.0, "{metrics}");
    let item_route = format!("/beta{COLLECTION}/{{id}}");
    assert_eq!(
        sample(
            &metrics,
            "entitlement_gateway_http_requests_total",
            &[("route", &item_route), ("method", "GET"), ("status", "404")],
        ),
        Some(1.0),
        "the matched route, not the raw URL: {metrics}"
    );
    assert!(
        !metrics.contains("9f2d4e0b-6a1c-4c55-9d0e-0d7c1a3b2e11"),
        "no id in the metrics"
    );
    let histogram = |name: &str, labels: &[(&str, &str)]| {
        sample(&metrics, &format!("{name}_count"), labels).unwrap_or(0.0)
    };
    assert_eq!(
        histogram(
            "entitlement_gateway_http_request_duration_seconds",
            &[("route", &route), ("method", "POST"), ("status", "201")]
        ),
        created
    );
    assert!(
        histogram(
            "entitlement_gateway_grpc_request_duration_seconds",
            &[
                (
                    "method",
                    "/entitlement.v1.EntitlementManagement/CreateAssignment"
                ),
                ("code", "OK")
            ]
        ) >= 3.0
    );
    assert_eq!(
        sample(
            &metrics,
            "entitlement_gateway_grpc_requests_total",
            &[
                (
                    "method",
                    "/entitlement.v1.EntitlementManagement/GetAssignment"
                ),
                ("code", "NOT_FOUND")
            ]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        histogram(
            "entitlement_gateway_upstream_request_duration_seconds",
            &[("method", "CreateAssignment"), ("code", "OK")]
        ) >= 3.0
    );
    assert!(
        histogram(
            "entitlement_gateway_store_operation_duration_seconds",
            &[("operation", "insert"), ("outcome", "ok")]
        ) >= 3.0
    );
    assert!(
        sample(
            &metrics,
            "entitlement_gateway_requests_in_flight",
            &[("server", "http")]
        )
        .is_some()
    );
    assert_eq!(
        sample(
            &metrics,
            "entitlement_gateway_build_info",
            &[("version", env!("CARGO_PKG_VERSION")), ("role", "all")]
        ),
        Some(1.0)
    );

    for (path, status) in [("/healthz", 200), ("/readyz", 200), ("/nothing", 404)] {
        let response = app
            .http
            .get(format!("{}{path}", app.admin_base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
    }
    app.stop().await;
}

async fn post_seed(base: &str, token: &str, traceparent: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/beta{COLLECTION}"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("client-request-id", "c5f6a1d2-0000-4000-8000-000000000001")
        .body(SEED_REQUEST);
    if let Some(traceparent) = traceparent {
        request = request
            .header("traceparent", traceparent)
            .header("tracestate", "vendor=opaque");
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 201);
    response
}

/// The binary, all-in-one, on free ports with its data in `dir`, and a token of
/// its key.
async fn all_in_one(dir: &std::path::Path) -> (String, Process) {
    let token = mint(dir).await;
    let process = Process::start(
        dir,
        &["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"],
    )
    .await;
    (token, process)
}

/// A client of `process`'s gRPC port.
async fn grpc_client(
    process: &Process,
) -> entitlement_gateway::proto::v1::entitlement_management_client::EntitlementManagementClient<
    tonic::transport::Channel,
> {
    let grpc = format!("http://{}", process.grpc_addr.clone().unwrap());
    entitlement_gateway::proto::v1::entitlement_management_client::EntitlementManagementClient::connect(grpc)
        .await
        .unwrap()
}

/// `message` as a call with the caller's token and its own request id.
fn grpc_request<T>(message: T, token: &str, request_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
        .metadata_mut()
        .insert("request-id", request_id.parse().unwrap());
    request
}

#[tokio::test]
async fn a_json_access_line_carries_the_request_id_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (token, mut process) = all_in_one(dir.path()).await;
    let response = post_seed(&process.http_base, &token, Some(TRACEPARENT)).await;
    let request_id = response.headers()["request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let line = process
        .line(|json| json["target"] == "access" && json["request.id"] == request_id.as_str())
        .await;
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["http.method"], "POST");
    assert_eq!(line["http.route"], format!("/beta{COLLECTION}"));
    assert_eq!(line["http.status"], 201);
    assert_eq!(line["grpc.code"], "OK");
    assert_eq!(
        line["client_request.id"],
        "c5f6a1d2-0000-4000-8000-000000000001"
    );
    assert_eq!(line["trace.id"], TRACE_ID);
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0);
    assert_recent_rfc3339_micros(line["timestamp"].as_str().unwrap());

    // A direct gRPC call from the network gets a line of its own.
    let mut client = grpc_client(&process).await;
    let request = grpc_request(
        entitlement_gateway::proto::v1::GetAssignmentRequest {
            id: "9f2d4e0b-6a1c-4c55-9d0e-0d7c1a3b2e11".to_owned(),
            select: None,
        },
        &token,
        "grpc-caller-1",
    );
    let status = client.get_assignment(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let line = process
        .line(|json| json["target"] == "access" && json["request.id"] == "grpc-caller-1")
        .await;
    assert_eq!(
        line["rpc.method"],
        "/entitlement.v1.EntitlementManagement/GetAssignment"
    );
    assert_eq!(line["grpc.code"], "NOT_FOUND");

    let log = process.terminate().await;
    let http_lines = log
        .iter()
        .filter(|line| line.contains(&request_id) && line.contains("\"access\""))
        .count();
    assert_eq!(http_lines, 1, "one access line per request: {log:#?}");
    for line in &log {
        assert!(!line.contains(&token), "a token in the log: {line}");
        assert!(
            !line.contains("Target Id value"),
            "a body in the log: {line}"
        );
    }
}

#[tokio::test]
async fn access_log_off_silences_access_lines_only() {
    let dir = tempfile::tempdir().unwrap();
    let token = mint(dir.path()).await;
    let process = Process::start(
        dir.path(),
        &[
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--access-log",
            "off",
        ],
    )
    .await;
    post_seed(&process.http_base, &token, None).await;
    let log = process.terminate().await;
    assert!(
        log.iter().any(|line| line.contains("\"stopped\"")),
        "{log:#?}"
    );
    assert!(
        !log.iter()
            .any(|line| line.contains("\"target\":\"access\"")),
        "{log:#?}"
    );
}

#[tokio::test]
async fn traceparent_reaches_the_grpc_service_in_its_metadata() {
    // Split roles, so the service is a separate process that logs what arrived.
    let grpc_dir = tempfile::tempdir().unwrap();
    let token = mint(grpc_dir.path()).await;
    let mut service = Process::start(
        grpc_dir.path(),
        &["--role", "grpc", "--grpc-addr", "127.0.0.1:0"],
    )
    .await;
    let gateway_dir = tempfile::tempdir().unwrap();
    let upstream = format!("http://{}", service.grpc_addr.clone().unwrap());
    let gateway = Process::start(
        gateway_dir.path(),
        &[
            "--role",
            "gateway",
            "--http-addr",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
        ],
    )
    .await;
    for process in [&service, &gateway] {
        let ready = reqwest::get(format!("{}/readyz", process.admin_base))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
    }
    let response = post_seed(&gateway.http_base, &token, Some(TRACEPARENT)).await;
    let request_id = response.headers()["request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let call = service
        .line(|json| json["target"] == "access" && json["request.id"] == request_id.as_str())
        .await;
    assert_eq!(
        call["rpc.method"],
        "/entitlement.v1.EntitlementManagement/CreateAssignment"
    );
    assert_eq!(call["trace.id"], TRACE_ID, "{call}");

    // Without a serving upstream the gateway is not ready (health is checked each second).
    service.terminate().await;
    let readyz = format!("{}/readyz", gateway.admin_base);
    let not_ready = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let status = reqwest::get(&readyz).await.unwrap().status();
            if status == 503 {
                return status;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(not_ready.is_ok(), "the gateway's /readyz turns 503");
    gateway.terminate().await;
}

#[tokio::test]
async fn spans_are_exported_over_otlp_when_asked() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    // A collector: OTLP/HTTP with protobuf bodies, as the OpenTelemetry Collector takes them.
    let (exported, mut received) = mpsc::unbounded_channel::<ExportTraceServiceRequest>();
    let collector = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let exported = exported.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let _ = exported.send(request);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let dir = tempfile::tempdir().unwrap();
    let token = mint(dir.path()).await;
    let process = Process::start(
        dir.path(),
        &[
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--otlp-endpoint",
            &endpoint,
        ],
    )
    .await;
    post_seed(&process.http_base, &token, Some(TRACEPARENT)).await;
    // Stopping flushes the batch.
    process.terminate().await;
    let mut names = Vec::new();
    while let Ok(request) = received.try_recv() {
        for span in request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            if hex(&span.trace_id) == TRACE_ID {
                names.push(span.name.clone());
            }
        }
    }
    assert!(names.contains(&"http".to_owned()), "{names:?}");
    assert!(
        names.contains(&"grpc".to_owned()),
        "the service's span joins the caller's trace: {names:?}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn cors_answers_only_the_configured_origin() {
    let app = TestApp::spawn_with(Arc::new(tempfile::tempdir().unwrap()), |config| {
        config.cors_origins = vec!["https://app.example".to_owned()];
    })
    .await;
    let url = app.url(&format!("/beta{COLLECTION}"));
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let headers = preflight.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));

    let created = app
        .http
        .post(&url)
        .bearer_auth(&app.token)
        .header("origin", "https://app.example")
        .header("content-type", "application/json")
        .body(SEED_REQUEST)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(
        created.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let exposed = created.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("request-id") && exposed.contains("location"));

    let other = app
        .http
        .get(&url)
        .bearer_auth(&app.token)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    app.stop().await;

    // Off by default.
    let app = TestApp::spawn().await;
    let response = app
        .http
        .get(app.url(&format!("/beta{COLLECTION}")))
        .bearer_auth(&app.token)
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_browser_can_call_the_grpc_service_with_grpc_web() {
    use entitlement_gateway::proto::v1::{
        AccessPackageAssignment, CreateAssignmentRequest, GetAssignmentRequest,
    };

    let app = TestApp::spawn().await;
    let created = app.create_seed("/beta").await;
    let id = created["id"].as_str().unwrap().to_owned();
    // A gRPC-Web call is an HTTP/1.1 POST whose body is the length-prefixed message.
    let frame = |message: &[u8]| {
        let mut body = vec![0u8];
        body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        body.extend_from_slice(message);
        body
    };
    let client = reqwest::Client::builder().http1_only().build().unwrap();
    let call = |path: &str, body: Vec<u8>| {
        client
            .post(format!("{}{path}", app.grpc_base))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .bearer_auth(&app.token)
            .body(body)
            .send()
    };
    let response = call(
        "/entitlement.v1.EntitlementManagement/GetAssignment",
        frame(
            &GetAssignmentRequest {
                id: id.clone(),
                select: None,
            }
            .encode_to_vec(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc-web")
    );
    let body = response.bytes().await.unwrap();
    // A data frame (flag 0), then a trailers frame (flag 0x80) with the status.
    assert_eq!(body[0], 0);
    let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let assignment = AccessPackageAssignment::decode(&body[5..5 + length]).unwrap();
    assert_eq!(assignment.id, Some(id));
    let trailers = &body[5 + length..];
    assert_eq!(trailers[0], 0x80);
    let trailers = String::from_utf8_lossy(&trailers[5..]).to_lowercase();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");

    // The service's rules hold on this path too: no token, no call.
    let response = client
        .post(format!(
            "{}/entitlement.v1.EntitlementManagement/CreateAssignment",
            app.grpc_base
        ))
        .header("content-type", "application/grpc-web+proto")
        .body(frame(
            &CreateAssignmentRequest { assignment: None }.encode_to_vec(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "16", "UNAUTHENTICATED");
    app.stop().await;
}

/// A line's timestamp: RFC 3339 in UTC to the microsecond
/// (`2026-11-29T06:14:52.047614Z`), and within a minute of now.
fn assert_recent_rfc3339_micros(timestamp: &str) {
    let bytes = timestamp.as_bytes();
    assert_eq!(bytes.len(), 27, "{timestamp}");
    for (at, separator) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        assert_eq!(bytes[at], separator, "{timestamp}");
    }
    // The domain's RFC 3339 parser reads it (at most 7 fractional digits, an offset).
    let at = entitlement_gateway::domain::DateTimeOffset::parse(timestamp).expect(timestamp);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let off = (i64::try_from(now.as_secs()).unwrap() - at.seconds()).abs();
    assert!(off < 60, "{timestamp} is {off} s from now");
}

/// What [`silent_upstream`] saw of a call.
#[derive(Debug, PartialEq)]
enum Seen {
    Arrived(String),
    Reset(String, h2::Reason),
}

/// A gRPC upstream that takes every call and never answers it; it reports each
/// call's path when it arrives, and again when the caller resets it. Returns its
/// URL.
async fn silent_upstream() -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen, calls) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    let path = request.uri().path().to_owned();
                    let _ = seen.send(Seen::Arrived(path.clone()));
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        if let Ok(reason) = std::future::poll_fn(|cx| respond.poll_reset(cx)).await
                        {
                            let _ = seen.send(Seen::Reset(path, reason));
                        }
                    });
                }
            });
        }
    });
    (url, calls)
}

/// The next call to `path` that `calls` reports.
async fn next_call(calls: &mut mpsc::UnboundedReceiver<Seen>, path: &str) -> Seen {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match calls.recv().await.expect("the upstream runs") {
                Seen::Arrived(p) | Seen::Reset(p, _) if p != path => {}
                seen => return seen,
            }
        }
    })
    .await
    .expect("the call reaches the upstream")
}

#[tokio::test]
async fn a_request_its_client_abandons_is_logged_and_counted_and_its_call_cancelled() {
    const CREATE: &str = "/entitlement.v1.EntitlementManagement/CreateAssignment";
    const CLIENT_REQUEST_ID: &str = "abandoned-by-its-client-1";
    let (upstream, mut calls) = silent_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let token = mint(dir.path()).await;
    let mut gateway = Process::start(
        dir.path(),
        &[
            "--role",
            "gateway",
            "--upstream",
            &upstream,
            "--http-addr",
            "127.0.0.1:0",
        ],
    )
    .await;

    // A whole create, over a connection the client then closes while the gateway
    // waits for the upstream's answer.
    let route = format!("/beta{COLLECTION}");
    let mut client =
        tokio::net::TcpStream::connect(gateway.http_base.trim_start_matches("http://"))
            .await
            .unwrap();
    let request = format!(
        "POST {route} HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\nclient-request-id: {CLIENT_REQUEST_ID}\r\n\
         content-length: {}\r\n\r\n{SEED_REQUEST}",
        SEED_REQUEST.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut client, request.as_bytes())
        .await
        .unwrap();
    assert_eq!(
        next_call(&mut calls, CREATE).await,
        Seen::Arrived(CREATE.to_owned())
    );
    drop(client);

    // The upstream call is cancelled, not left to run.
    assert_eq!(
        next_call(&mut calls, CREATE).await,
        Seen::Reset(CREATE.to_owned(), h2::Reason::CANCEL)
    );
    // The request has its access line, with nginx's "client closed request".
    let line = gateway
        .line(|json| json["target"] == "access" && json["client_request.id"] == CLIENT_REQUEST_ID)
        .await;
    assert_eq!(line["http.status"], 499);
    assert_eq!(line["http.method"], "POST");
    assert_eq!(line["http.route"], route.as_str());
    // And it is counted.
    let metrics = scrape_admin(&gateway.admin_base).await;
    let count = |status| {
        sample(
            &metrics,
            "entitlement_gateway_http_requests_total",
            &[("route", &route), ("method", "POST"), ("status", status)],
        )
    };
    assert_eq!(count("499"), Some(1.0), "{metrics}");
    assert_eq!(count("201"), None, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "entitlement_gateway_requests_in_flight",
            &[("server", "http")]
        ),
        Some(0.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_grpc_call_its_caller_abandons_is_logged_and_counted_as_cancelled() {
    const CREATE: &str = "/entitlement.v1.EntitlementManagement/CreateAssignment";
    let dir = tempfile::tempdir().unwrap();
    let (token, mut process) = all_in_one(dir.path()).await;
    // Another connection holds the database's write lock, so a create waits for it.
    let lock =
        rusqlite::Connection::open(dir.path().join(entitlement_gateway::DATABASE_FILE)).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();

    let mut client = grpc_client(&process).await;
    let seed = entitlement_gateway::http::graph_json::parse_assignment(SEED_REQUEST.as_bytes());
    let request = grpc_request(
        entitlement_gateway::proto::v1::CreateAssignmentRequest {
            assignment: Some(seed.unwrap()),
        },
        &token,
        "abandoned-grpc-call-1",
    );
    // The caller gives up (and resets the stream) while the create waits: the writer
    // waits up to 5 s for the lock, and the lock is held to the end of the test.
    let gave_up =
        tokio::time::timeout(Duration::from_secs(2), client.create_assignment(request)).await;
    assert!(
        gave_up.is_err(),
        "the create waits for the lock: {gave_up:?}"
    );

    let line = process
        .line(|json| json["target"] == "access" && json["request.id"] == "abandoned-grpc-call-1")
        .await;
    assert_eq!(line["rpc.method"], CREATE);
    assert_eq!(line["grpc.code"], "CANCELLED");
    let metrics = scrape_admin(&process.admin_base).await;
    assert_eq!(
        sample(
            &metrics,
            "entitlement_gateway_grpc_requests_total",
            &[("method", CREATE), ("code", "CANCELLED")]
        ),
        Some(1.0),
        "{metrics}"
    );
    lock.execute_batch("ROLLBACK").unwrap();
}
