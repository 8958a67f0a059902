//! Every bad input the HTTP face refuses, with its exact status, Graph code and a
//! message that names what to fix; and authentication and authorization.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{COLLECTION, SEED_REQUEST, TestApp, assert_graph_error};

fn with(property: &str, value: Value) -> String {
    let mut body: Value = serde_json::from_str(SEED_REQUEST).unwrap();
    body[property] = value;
    body.to_string()
}

fn without(property: &str) -> String {
    let mut body: Value = serde_json::from_str(SEED_REQUEST).unwrap();
    body.as_object_mut().unwrap().remove(property);
    body.to_string()
}

#[tokio::test]
async fn bad_bodies_are_400_with_a_message_naming_the_problem() {
    let app = TestApp::spawn().await;
    let long = "x".repeat(1025);
    let cases: Vec<(String, &str)> = vec![
        (without("accessPackageId"), "accessPackageId"),
        (without("assignmentPolicyId"), "assignmentPolicyId"),
        (without("targetId"), "targetId"),
        (with("accessPackageId", json!("")), "accessPackageId"),
        (with("targetId", json!(null)), "targetId"),
        (with("catalogId", json!(long)), "catalogId"),
        (with("assignmentState", json!("a\u{0}b")), "assignmentState"),
        (with("id", json!("not-a-guid")), "'id'"),
        (
            with("id", json!("{e4383339-3339-e438-3933-38e4393338e4}")),
            "'id'",
        ),
        (
            with("foo", json!("bar")),
            "The property 'foo' does not exist on type 'microsoft.graph.accessPackageAssignment'",
        ),
        (with("isExtended", json!("true")), "isExtended"),
        (with("isExtended", json!(1)), "Edm.Boolean"),
        (with("catalogId", json!(5)), "catalogId"),
        (with("catalogId", json!(true)), "catalogId"),
        (with("targetId", json!(["t"])), "targetId"),
        (with("targetId", json!({"id": "t"})), "targetId"),
        (
            with("expiredDateTime", json!("2017-01-01T00:03:03.9221806")),
            "expiredDateTime",
        ),
        (
            with(
                "expiredDateTime",
                json!("2017-01-01T00:03:03.92218061+03:00"),
            ),
            "100 ns",
        ),
        (
            with("expiredDateTime", json!("2017-02-30T00:00:00Z")),
            "expiredDateTime",
        ),
        (
            with("expiredDateTime", json!("yesterday")),
            "expiredDateTime",
        ),
        (
            with("expiredDateTime", json!(1_483_228_983)),
            "expiredDateTime",
        ),
        (
            with("@odata.type", json!("#microsoft.graph.user")),
            "microsoft.graph.user",
        ),
        (
            r#"{"targetId": "a", "targetId": "a"}"#.into(),
            "Multiple properties with the name 'targetId'",
        ),
        ("{".into(), "Unable to read JSON request payload"),
        ("".into(), "Unable to read JSON request payload"),
        ("[]".into(), "JSON object"),
        (
            r#"{"targetId": "\ud800"}"#.into(),
            "Unable to read JSON request payload",
        ),
    ];
    for (body, needle) in cases {
        let response = app.post_assignment("/beta", body.clone()).await;
        let message = assert_graph_error(response, 400, "BadRequest").await;
        assert!(message.contains(needle), "{body} -> {message}");
    }
    // Invalid UTF-8 is not JSON.
    let response = app
        .post_assignment("/beta", b"{\"targetId\": \"\xff\"}".to_vec())
        .await;
    assert_graph_error(response, 400, "BadRequest").await;
    // Every violation is reported at once.
    let message =
        assert_graph_error(app.post_assignment("/beta", "{}").await, 400, "BadRequest").await;
    for property in ["accessPackageId", "assignmentPolicyId", "targetId"] {
        assert!(message.contains(property), "{message}");
    }
    // And the server keeps serving.
    assert_eq!(
        app.post_assignment("/beta", SEED_REQUEST)
            .await
            .status()
            .as_u16(),
        201
    );
}

#[tokio::test]
async fn only_json_bodies_up_to_one_mebibyte_are_read() {
    let app = TestApp::spawn().await;
    let url = app.url(&format!("/beta{COLLECTION}"));
    for content_type in [
        Some("text/plain"),
        Some("application/xml"),
        Some("application/json; charset=latin1"),
        None,
    ] {
        let mut request = app
            .http
            .post(&url)
            .bearer_auth(&app.token)
            .body(SEED_REQUEST);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        assert_graph_error(request.send().await.unwrap(), 415, "UnsupportedMediaType").await;
    }
    let ok = app
        .http
        .post(&url)
        .bearer_auth(&app.token)
        .header("content-type", "application/json; charset=utf-8")
        .body(SEED_REQUEST)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 201);

    let huge = format!(r#"{{"catalogId": "{}"}}"#, "x".repeat(1024 * 1024));
    assert_graph_error(
        app.post_assignment("/beta", huge).await,
        413,
        "RequestEntityTooLarge",
    )
    .await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let app = TestApp::spawn().await;
    for path in [
        "/",
        "/beta/users",
        &format!("/v2.0{COLLECTION}"),
        &format!("/beta{COLLECTION}/a/b"),
    ] {
        let response = app
            .http
            .get(app.url(path))
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        assert_graph_error(response, 404, "Request_ResourceNotFound").await;
    }
    let response = app
        .http
        .put(app.url(&format!("/beta{COLLECTION}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST,GET,HEAD");
    assert_graph_error(response, 405, "MethodNotAllowed").await;
    let response = app
        .http
        .post(app.url(&format!(
            "/beta{COLLECTION}/e4383339-3339-e438-3933-38e4393338e4"
        )))
        .send()
        .await
        .unwrap();
    assert_graph_error(response, 405, "MethodNotAllowed").await;
}

#[tokio::test]
async fn reading_an_unknown_or_malformed_id() {
    let app = TestApp::spawn().await;
    let message = assert_graph_error(
        app.get_assignment("/beta", "e4383339-3339-e438-3933-38e4393338e4")
            .await,
        404,
        "Request_ResourceNotFound",
    )
    .await;
    assert!(
        message.contains("e4383339-3339-e438-3933-38e4393338e4"),
        "{message}"
    );
    let message =
        assert_graph_error(app.get_assignment("/beta", "nope").await, 400, "BadRequest").await;
    assert!(message.contains("'id'"), "{message}");
}

#[tokio::test]
async fn a_missing_or_bad_token_is_401() {
    let app = TestApp::spawn().await;
    let url = app.url(&format!("/beta{COLLECTION}"));
    let post = |authorization: Option<String>| {
        let mut request = app
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(SEED_REQUEST);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send()
    };
    let other_key =
        entitlement_gateway::auth::SigningKey::load_or_create(tempfile::tempdir().unwrap().path())
            .unwrap();
    let foreign = other_key
        .issue(
            "x",
            &["EntitlementManagement.ReadWrite.All".into()],
            Duration::from_secs(60),
        )
        .unwrap();
    let cases = [
        (None, "Access token is empty."),
        (Some("Bearer ".to_owned()), "Access token is empty."),
        (
            Some(format!("Basic {}", app.token)),
            "Access token is empty.",
        ),
        (
            Some("Bearer not.a.jwt".to_owned()),
            "Access token validation failure.",
        ),
        (
            Some(format!("Bearer {foreign}")),
            "Access token validation failure.",
        ),
        (
            Some(format!("Bearer {}x", app.token)),
            "Access token validation failure.",
        ),
    ];
    for (authorization, expected) in cases {
        let response = post(authorization.clone()).await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let message = assert_graph_error(response, 401, "InvalidAuthenticationToken").await;
        assert_eq!(message, expected, "{authorization:?}");
    }
    let response = app
        .http
        .get(app.url(&format!(
            "/beta{COLLECTION}/e4383339-3339-e438-3933-38e4393338e4"
        )))
        .send()
        .await
        .unwrap();
    assert_graph_error(response, 401, "InvalidAuthenticationToken").await;
}

#[tokio::test]
async fn an_expired_token_is_401() {
    let app = TestApp::spawn().await;
    // Expired beyond the allowed clock skew: exp is 1 s after issue, signed 10 min ago.
    let key = entitlement_gateway::auth::SigningKey::load_or_create(app.data_dir.path()).unwrap();
    let ten_minutes_ago = jsonwebtoken::get_current_timestamp() - 600;
    let scopes = ["EntitlementManagement.ReadWrite.All".to_owned()];
    let expired = key
        .issue_at("test", &scopes, ten_minutes_ago, Duration::from_secs(1))
        .unwrap();
    let response = app
        .http
        .post(app.url(&format!("/beta{COLLECTION}")))
        .bearer_auth(expired)
        .header("content-type", "application/json")
        .body(SEED_REQUEST)
        .send()
        .await
        .unwrap();
    assert_graph_error(response, 401, "InvalidAuthenticationToken").await;
}

#[tokio::test]
async fn a_token_without_the_permission_is_403() {
    let app = TestApp::spawn().await;
    let created = app.create_seed("/beta").await;
    let id = created["id"].as_str().unwrap();
    let read_only = app.read_token();
    let response = app
        .http
        .post(app.url(&format!("/beta{COLLECTION}")))
        .bearer_auth(&read_only)
        .header("content-type", "application/json")
        .body(SEED_REQUEST)
        .send()
        .await
        .unwrap();
    let message = assert_graph_error(response, 403, "Authorization_RequestDenied").await;
    assert!(
        message.contains("EntitlementManagement.ReadWrite.All"),
        "{message}"
    );

    let url = app.url(&format!("/beta{COLLECTION}/{id}"));
    let response = app
        .http
        .get(&url)
        .bearer_auth(&read_only)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "Read.All may read");

    let nothing = app.mint(&["User.Read"]);
    let response = app
        .http
        .get(&url)
        .bearer_auth(&nothing)
        .send()
        .await
        .unwrap();
    assert_graph_error(response, 403, "Authorization_RequestDenied").await;
}
