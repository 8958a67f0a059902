//! Public URLs behind a reverse proxy: `--public-url` fixes the base of every
//! absolute URL written (`Location`, `@odata.context`, `@odata.nextLink`, OpenAPI
//! `servers`); without it, `Forwarded` and `X-Forwarded-Proto`/`-Host` are
//! honoured from `--trusted-proxy` peers only, so that no client can make the
//! service write links to a host of its choosing.

use std::sync::Arc;

use entitlement_gateway::config::ServeArgs;
use serde_json::Value;

use crate::helpers::{COLLECTION, SEED_REQUEST, TestApp, split_id};

/// The absolute URLs one exchange got: a create, a read of it, and a first page.
#[derive(Debug)]
struct Links {
    /// The create's `Location`.
    location: String,
    /// The id the create answered.
    id: String,
    /// The read's `@odata.context`.
    entity_context: String,
    /// The page's `@odata.context`.
    list_context: String,
    /// The page's `@odata.nextLink`.
    next_link: String,
}

impl Links {
    /// Asserts that every URL is the one answering on `/beta` under `base`
    /// (`scheme://host[/prefix]`).
    fn assert_based_on(&self, base: &str) {
        assert_eq!(
            self.location,
            format!("{base}/beta{COLLECTION}/{}", self.id),
            "Location"
        );
        assert_eq!(
            self.entity_context,
            format!("{base}/beta/$metadata#accessPackageAssignments/$entity"),
            "the entity's @odata.context"
        );
        assert_eq!(
            self.list_context,
            format!("{base}/beta/$metadata#accessPackageAssignments"),
            "the page's @odata.context"
        );
        let page = format!("{base}/beta{COLLECTION}?");
        assert!(
            self.next_link.starts_with(&page) && self.next_link.contains("$skiptoken="),
            "@odata.nextLink {} does not start with {page}",
            self.next_link
        );
    }
}

/// Starts an app with its settings changed by `configure`.
async fn spawn(configure: impl FnOnce(&mut ServeArgs)) -> TestApp {
    TestApp::spawn_with(Arc::new(tempfile::tempdir().expect("temp dir")), configure).await
}

/// Creates two assignments on `/beta`, reads the second, and lists with `$top=1`,
/// each request with the headers `forwarding`; returns the URLs written. Every
/// request must succeed: forwarding headers are never an error.
async fn exchange(app: &TestApp, forwarding: &[(&str, &str)]) -> Links {
    let with = |request: reqwest::RequestBuilder| {
        forwarding
            .iter()
            .fold(request, |request, (name, value)| {
                request.header(*name, *value)
            })
            .bearer_auth(&app.token)
    };
    let mut created = None;
    for _ in 0..2 {
        let response = with(app.http.post(app.url(&format!("/beta{COLLECTION}"))))
            .header("content-type", "application/json")
            .body(SEED_REQUEST)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "{forwarding:?}");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let (_, id) = split_id(response.json().await.unwrap());
        created = Some((location, id));
    }
    let (location, id) = created.unwrap();
    let get = |path: String| {
        let request = with(app.http.get(app.url(&path)));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200, "{path}");
            response.json::<Value>().await.unwrap()
        }
    };
    let entity = get(format!("/beta{COLLECTION}/{id}")).await;
    let page = get(format!("/beta{COLLECTION}?$top=1")).await;
    let text = |value: &Value, name: &str| {
        value[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {value}"))
            .to_owned()
    };
    Links {
        location,
        id,
        entity_context: text(&entity, "@odata.context"),
        list_context: text(&page, "@odata.context"),
        next_link: text(&page, "@odata.nextLink"),
    }
}

/// The next link, with `base` replaced by the app's own address, answers the next
/// page: the path and query after the base are the right ones.
async fn follow(app: &TestApp, links: &Links, base: &str) {
    let rest = links
        .next_link
        .strip_prefix(base)
        .unwrap_or_else(|| panic!("{} is not under {base}", links.next_link));
    let response = app
        .http
        .get(app.url(rest))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{rest}");
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["value"].as_array().unwrap().len(), 1, "{page}");
}

/// The `servers` of the app's `/openapi.json` (null when it has none).
async fn openapi_servers(app: &TestApp) -> Value {
    let response = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let document: Value = response.json().await.unwrap();
    document["servers"].clone()
}

/// A trusted proxy's `Forwarded` (its first element: the first proxy's, describing
/// the client's request) gives the scheme and host of every URL written.
#[tokio::test]
async fn forwarded_from_a_trusted_proxy_sets_the_scheme_and_host_of_every_url() {
    let app = spawn(|config| config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let links = exchange(
        &app,
        &[(
            "forwarded",
            "for=192.0.2.60;proto=https;host=api.example.com, for=10.0.0.1;proto=http;host=inner.example",
        )],
    )
    .await;
    links.assert_based_on("https://api.example.com");
    follow(&app, &links, "https://api.example.com").await;

    // Names in any case, quoted values.
    let links = exchange(
        &app,
        &[(
            "forwarded",
            r#"For="[2001:db8::17]:4711";PROTO="HTTPS";Host="api.example.com:8443""#,
        )],
    )
    .await;
    links.assert_based_on("https://api.example.com:8443");

    // Forwarded comes before X-Forwarded-*.
    let links = exchange(
        &app,
        &[
            ("forwarded", "proto=https;host=api.example.com"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "other.example"),
        ],
    )
    .await;
    links.assert_based_on("https://api.example.com");

    // The document is the same for everyone: no servers without --public-url.
    assert_eq!(openapi_servers(&app).await, Value::Null);
}

/// A trusted proxy's `X-Forwarded-Proto` and `X-Forwarded-Host` (the first item of
/// each) do the same, when there is no `Forwarded`.
#[tokio::test]
async fn x_forwarded_proto_and_host_from_a_trusted_proxy_set_them_too() {
    let app = spawn(|config| {
        config.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1".parse().unwrap()];
    })
    .await;
    let links = exchange(
        &app,
        &[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "api.example.com"),
        ],
    )
    .await;
    links.assert_based_on("https://api.example.com");
    follow(&app, &links, "https://api.example.com").await;

    let links = exchange(
        &app,
        &[
            ("x-forwarded-proto", "HTTPS, http"),
            ("x-forwarded-host", "api.example.com:8443, inner.example"),
        ],
    )
    .await;
    links.assert_based_on("https://api.example.com:8443");

    // Only the host: the connection's own scheme.
    let links = exchange(&app, &[("x-forwarded-host", "api.example.com")]).await;
    links.assert_based_on("http://api.example.com");
}

/// From a peer that is not a trusted proxy (none configured, or others only), the
/// forwarding headers change nothing: links name the Host the request was sent to.
#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_change_nothing() {
    let untrusting = spawn(|_| {}).await;
    let elsewhere =
        spawn(|config| config.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()]).await;
    for app in [&untrusting, &elsewhere] {
        let own = app.http_base.clone();
        for forwarding in [
            &[("forwarded", "proto=https;host=evil.example")][..],
            &[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.example"),
            ][..],
        ] {
            let links = exchange(app, forwarding).await;
            links.assert_based_on(&own);
            follow(app, &links, &own).await;
        }
    }
}

/// `--public-url` wins over the Host header and over a trusted proxy's headers, for
/// every URL written, its path prefix going before the request's path; and it is
/// the OpenAPI document's only server.
#[tokio::test]
async fn a_public_url_wins_over_host_and_trusted_forwarding_headers() {
    const PUBLIC: &str = "https://public.example.com/entitlement";
    let app = spawn(|config| {
        config.public_url = Some(PUBLIC.parse().unwrap());
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    for forwarding in [
        &[][..],
        &[("forwarded", "proto=http;host=api.example.com")][..],
        &[
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "api.example.com"),
        ][..],
    ] {
        let links = exchange(&app, forwarding).await;
        links.assert_based_on(PUBLIC);
        follow(&app, &links, PUBLIC).await;
    }
    assert_eq!(
        openapi_servers(&app).await,
        serde_json::json!([{ "url": PUBLIC }])
    );

    // A trailing slash is not doubled.
    let slashed = spawn(|config| {
        config.public_url = Some("http://public.example.com:8080/".parse().unwrap());
    })
    .await;
    exchange(&slashed, &[])
        .await
        .assert_based_on("http://public.example.com:8080");
    assert_eq!(
        openapi_servers(&slashed).await,
        serde_json::json!([{ "url": "http://public.example.com:8080" }])
    );
}

/// A trusted proxy's forwarded value that is not http/https, or not a plain
/// `host[:port]`, is ignored (the connection's scheme, the Host header), never an
/// error; so is a malformed `Forwarded`.
#[tokio::test]
async fn malformed_forwarded_values_from_a_trusted_proxy_are_ignored() {
    let app = spawn(|config| config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let own = app.http_base.clone();
    for forwarding in [
        &[("forwarded", r#"proto=ftp;host="user@evil.example""#)][..],
        &[("forwarded", r#"proto="https;host="evil.example""#)][..],
        &[("forwarded", r#"proto=https;host="evil.example"#)][..],
        &[(
            "forwarded",
            "proto=https;host=evil.example;host=other.example;proto=http",
        )][..],
        &[("forwarded", r#"host="evil.example/path""#)][..],
        &[
            ("x-forwarded-proto", "javascript"),
            ("x-forwarded-host", "evil.example:99999"),
        ][..],
        &[
            ("x-forwarded-proto", ""),
            ("x-forwarded-host", "user:pw@evil.example"),
        ][..],
        &[("x-forwarded-host", "evil.example/x?y")][..],
    ] {
        let links = exchange(&app, forwarding).await;
        links.assert_based_on(&own);
    }
    // A bad proto alone is ignored; a good host beside it still counts.
    exchange(&app, &[("forwarded", "proto=gopher;host=api.example.com")])
        .await
        .assert_based_on("http://api.example.com");
}
