//! The Graph HTTP face: the seed's example, reading back, idempotency, restarts.

use serde_json::{Value, json};

use crate::helpers::{COLLECTION, SEED_REQUEST, SEED_RESPONSE, TestApp, is_lower_guid, split_id};

#[tokio::test]
async fn the_seed_request_gives_the_seed_response_on_every_prefix() {
    let app = TestApp::spawn().await;
    let (expected, _) = split_id(serde_json::from_str(SEED_RESPONSE).unwrap());
    for prefix in ["", "/beta", "/v1.0", "/localtest"] {
        for suffix in ["", "/$ref"] {
            let response = app
                .http
                .post(app.url(&format!("{prefix}{COLLECTION}{suffix}")))
                .bearer_auth(&app.token)
                .header("Content-type", "application/json")
                .body(SEED_REQUEST)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 201, "{prefix}{suffix}");
            let headers = response.headers().clone();
            assert!(
                headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json")
            );
            assert_eq!(headers["odata-version"], "4.0");
            assert!(is_lower_guid(headers["request-id"].to_str().unwrap()));
            let (body, id) = split_id(response.json().await.unwrap());
            assert_eq!(body, expected, "{prefix}{suffix}");
            assert!(is_lower_guid(&id), "{id}");
            assert_eq!(&id[14..15], "7", "a time-ordered (v7) GUID: {id}");
            assert_eq!(
                headers["location"].to_str().unwrap(),
                app.url(&format!("{prefix}{COLLECTION}/{id}"))
            );
        }
    }
}

#[tokio::test]
async fn the_body_is_written_in_graphs_order_with_nulls_for_unset_properties() {
    let app = TestApp::spawn().await;
    let response = app
        .post_assignment(
            "/beta",
            r#"{"accessPackageId":"p","assignmentPolicyId":"q","targetId":"t"}"#,
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let text = response.text().await.unwrap();
    let (body, id) = split_id(serde_json::from_str(&text).unwrap());
    assert_eq!(
        body,
        json!({
            "@odata.type": "#microsoft.graph.accessPackageAssignment",
            "catalogId": null, "accessPackageId": "p", "assignmentPolicyId": "q", "targetId": "t",
            "assignmentStatus": null, "assignmentState": null, "isExtended": null, "expiredDateTime": null
        })
    );
    let expected_start = format!(
        r##"{{"@odata.type":"#microsoft.graph.accessPackageAssignment","id":"{id}","catalogId":null"##
    );
    assert!(text.starts_with(&expected_start), "{text}");
}

#[tokio::test]
async fn a_created_assignment_reads_back_on_every_prefix() {
    let app = TestApp::spawn().await;
    let created = app.create_seed("/localtest").await;
    let id = created["id"].as_str().unwrap();
    for prefix in ["", "/beta", "/v1.0", "/localtest"] {
        let response = app.get_assignment(prefix, id).await;
        assert_eq!(response.status().as_u16(), 200);
        let mut body: Value = response.json().await.unwrap();
        let context = body
            .as_object_mut()
            .unwrap()
            .remove("@odata.context")
            .unwrap();
        assert_eq!(
            context,
            app.url(&format!(
                "{prefix}/$metadata#accessPackageAssignments/$entity"
            ))
            .as_str()
        );
        assert_eq!(body, created);
    }
    // GUIDs are case-insensitive.
    let response = app.get_assignment("/beta", &id.to_uppercase()).await;
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn a_restart_on_the_same_data_dir_keeps_assignments() {
    let app = TestApp::spawn().await;
    let created = app.create_seed("/beta").await;
    let app = app.restart().await;
    let response = app
        .get_assignment("/beta", created["id"].as_str().unwrap())
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let mut body: Value = response.json().await.unwrap();
    body.as_object_mut().unwrap().remove("@odata.context");
    assert_eq!(body, created);
}

#[tokio::test]
async fn creating_again_with_the_same_id_and_content_is_harmless() {
    let app = TestApp::spawn().await;
    let mut request: Value = serde_json::from_str(SEED_REQUEST).unwrap();
    request["id"] = "E4383339-3339-E438-3933-38E4393338E4".into();

    let first = app.post_assignment("/beta", request.to_string()).await;
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        first,
        serde_json::from_str::<Value>(SEED_RESPONSE).unwrap(),
        "the documented response, id included"
    );

    let retry = app.post_assignment("/beta", request.to_string()).await;
    assert_eq!(retry.status().as_u16(), 201);
    assert_eq!(retry.json::<Value>().await.unwrap(), first);

    request["targetId"] = "someone else".into();
    let conflict = app.post_assignment("/beta", request.to_string()).await;
    let message = crate::helpers::assert_graph_error(conflict, 409, "Conflict").await;
    assert!(
        message.contains("e4383339-3339-e438-3933-38e4393338e4"),
        "{message}"
    );

    let stored: Value = app
        .get_assignment("", "e4383339-3339-e438-3933-38e4393338e4")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        stored["targetId"], "Target Id value",
        "the first content is kept"
    );
}

#[tokio::test]
async fn date_times_are_written_the_way_graph_writes_them() {
    let app = TestApp::spawn().await;
    let cases = [
        ("2021-05-01T10:00:00.000000+00:00", "2021-05-01T10:00:00Z"),
        (
            "2021-05-01T10:00:00.123400+00:00",
            "2021-05-01T10:00:00.1234Z",
        ),
        ("2019-04-25T23:45:40.42Z", "2019-04-25T23:45:40.42Z"),
        ("2020-06-23T18:43:24-07:30", "2020-06-23T18:43:24-07:30"),
        (
            "9999-12-31T23:59:59.9999999Z",
            "9999-12-31T23:59:59.9999999Z",
        ),
    ];
    for (sent, written) in cases {
        let body = json!({"accessPackageId": "p", "assignmentPolicyId": "q", "targetId": "t", "expiredDateTime": sent});
        let response = app.post_assignment("", body.to_string()).await;
        assert_eq!(response.status().as_u16(), 201, "{sent}");
        let created: Value = response.json().await.unwrap();
        assert_eq!(created["expiredDateTime"], written, "{sent}");
    }
}

#[tokio::test]
async fn any_unicode_round_trips_exactly() {
    let app = TestApp::spawn().await;
    for text in [
        "😀 emoji",
        "\u{200F}RTL\u{202E} marks",
        "中文 עברית",
        "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}",
        "tab\tnewline\n",
    ] {
        let body = json!({"accessPackageId": text, "assignmentPolicyId": "q", "targetId": "t", "catalogId": ""});
        let created: Value = app
            .post_assignment("", body.to_string())
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(created["accessPackageId"], text);
        assert_eq!(
            created["catalogId"], "",
            "an empty optional string stays empty, not null"
        );
        let read: Value = app
            .get_assignment("", created["id"].as_str().unwrap())
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(read["accessPackageId"], text);
    }
}

#[tokio::test]
async fn client_request_id_is_echoed_and_request_id_is_new_each_time() {
    let app = TestApp::spawn().await;
    let send = || {
        app.http
            .get(app.url(&format!(
                "/beta{COLLECTION}/e4383339-3339-e438-3933-38e4393338e4"
            )))
            .bearer_auth(&app.token)
            .header("client-request-id", "my-correlation-1")
            .send()
    };
    let first = send().await.unwrap();
    let second = send().await.unwrap();
    assert_eq!(first.headers()["client-request-id"], "my-correlation-1");
    assert_ne!(
        first.headers()["request-id"],
        second.headers()["request-id"]
    );
    let body: Value = first.json().await.unwrap();
    assert_eq!(
        body["error"]["innerError"]["client-request-id"],
        "my-correlation-1"
    );
}

/// HTTP/2 requests carry the host as `:authority`, with no Host header: the URLs in
/// the answers are absolute for them too (Location, `@odata.context`,
/// `@odata.nextLink`), as they are over HTTP/1.1.
#[tokio::test]
async fn http2_callers_get_absolute_urls_too() {
    let app = TestApp::spawn().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = app.post_assignment_with(&h2, "/beta", SEED_REQUEST).await;
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status().as_u16(), 201);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let (_, id) = split_id(response.json().await.unwrap());
        assert_eq!(location, app.url(&format!("/beta{COLLECTION}/{id}")));
        ids.push(id);
    }
    let get = |url: String| {
        let request = h2.get(url).bearer_auth(&app.token);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let one = get(app.url(&format!("/beta{COLLECTION}/{}", ids[0]))).await;
    assert_eq!(
        one["@odata.context"],
        app.url("/beta/$metadata#accessPackageAssignments/$entity")
    );
    let page = get(app.url(&format!("/beta{COLLECTION}?$top=1"))).await;
    assert_eq!(
        page["@odata.context"],
        app.url("/beta/$metadata#accessPackageAssignments")
    );
    let next = page["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&app.url(&format!("/beta{COLLECTION}?"))),
        "{next}"
    );
    let rest = get(next.to_owned()).await;
    assert_eq!(rest["value"].as_array().unwrap().len(), 1);
}
