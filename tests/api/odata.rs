//! OData that never silently ignores: `$`-less options on beta, unknown parameters
//! refused on every route, names in any case, `target/objectId`, `/$count`,
//! `filterByCurrentUser(on='target')` and `$select` on a single assignment, over
//! HTTP and over gRPC.

use std::collections::BTreeSet;

use entitlement_gateway::{
    auth::{READ_ALL, READ_WRITE_ALL},
    proto::v1::{
        CountAssignmentsRequest, CurrentUserFilter, GetAssignmentRequest, ListAssignmentsRequest,
    },
};
use reqwest::Method;
use serde_json::{Value, json};
use tonic::Code;

use crate::helpers::{COLLECTION, TestApp, assert_graph_error, authorized};

/// Creates an assignment with these properties over the required ones; returns its id.
async fn create(app: &TestApp, properties: Value) -> String {
    let mut body = json!({"accessPackageId": "p", "assignmentPolicyId": "q", "targetId": "t"});
    for (name, value) in properties.as_object().unwrap() {
        body[name] = value.clone();
    }
    let response = app.post_assignment("/beta", body.to_string()).await;
    assert_eq!(response.status().as_u16(), 201);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// GETs `path` (after the origin) with `token`.
async fn get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// GETs `path` with `token`, expecting 200 and JSON.
async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    let response = get(app, path, token).await;
    assert_eq!(response.status().as_u16(), 200, "{path}");
    response.json().await.unwrap()
}

/// The ids of a collection page's items.
fn ids(page: &Value) -> BTreeSet<String> {
    page["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Follows next links from `path`; returns every item's id and the page count.
async fn walk(app: &TestApp, path: &str, token: &str) -> (Vec<String>, usize) {
    let mut all = Vec::new();
    let mut page = get_json(app, path, token).await;
    let mut pages = 1;
    loop {
        all.extend(ids(&page));
        let Some(next) = page["@odata.nextLink"].as_str() else {
            return (all, pages);
        };
        let response = app.http.get(next).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{next}");
        page = response.json().await.unwrap();
        pages += 1;
        assert!(pages <= 50, "the walk does not end");
    }
}

fn eq(property: &str, value: &str) -> String {
    form(&format!("{property} eq '{value}'"))
}

fn form(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[tokio::test]
async fn options_without_dollar_are_the_options_on_beta_and_refused_on_v1() {
    let app = TestApp::spawn().await;
    let target = format!("user-{}", uuid::Uuid::new_v4());
    let mine: BTreeSet<String> = [
        create(&app, json!({"targetId": target})).await,
        create(&app, json!({"targetId": target})).await,
    ]
    .into();
    create(&app, json!({"targetId": "someone else"})).await;

    // The issue's request: a filter that matches nothing is applied, not dropped.
    for prefix in ["/beta", "", "/localtest"] {
        let page = get_json(
            &app,
            &format!(
                "{prefix}{COLLECTION}?filter={}&top=1",
                eq("targetId", "zzz")
            ),
            &app.token,
        )
        .await;
        assert_eq!(page["value"], json!([]), "{prefix}");
        assert!(page.get("@odata.nextLink").is_none(), "{prefix}");

        // With or without `$`, in any case: the same answer.
        let bare = format!(
            "{prefix}{COLLECTION}?filter={}&count=true&Select=targetId",
            eq("targetId", &target)
        );
        let dollar = format!(
            "{prefix}{COLLECTION}?$filter={}&$count=true&$select=targetId",
            eq("targetId", &target)
        );
        let (bare, dollar) = (
            get_json(&app, &bare, &app.token).await,
            get_json(&app, &dollar, &app.token).await,
        );
        assert_eq!(bare, dollar, "{prefix}");
        assert_eq!(ids(&bare), mine);
        assert_eq!(bare["@odata.count"], 2);
        assert!(
            bare["@odata.context"]
                .as_str()
                .unwrap()
                .ends_with("#accessPackageAssignments(targetId)")
        );
    }

    // A walk by `$`-less options: the next link writes them with `$`.
    let (walked, pages) = walk(
        &app,
        &format!("/beta{COLLECTION}?filter={}&top=1", eq("targetId", &target)),
        &app.token,
    )
    .await;
    assert_eq!(walked.into_iter().collect::<BTreeSet<_>>(), mine);
    assert_eq!(pages, 2);
    let first = get_json(
        &app,
        &format!("/beta{COLLECTION}?filter={}&top=1", eq("targetId", &target)),
        &app.token,
    )
    .await;
    let next = first["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.contains(&format!(
            "?$filter={}&$top=1&$skiptoken=",
            eq("targetId", &target)
        )),
        "{next}"
    );

    // The same option twice, once each way, is refused.
    let message = assert_graph_error(
        get(
            &app,
            &format!("/beta{COLLECTION}?filter={}&$filter=x", eq("targetId", "a")),
            &app.token,
        )
        .await,
        400,
        "BadRequest",
    )
    .await;
    assert!(message.contains("more than once"), "{message}");

    // v1.0 wants the `$`, and says so.
    let message = assert_graph_error(
        get(
            &app,
            &format!("/v1.0{COLLECTION}?filter={}", eq("targetId", &target)),
            &app.token,
        )
        .await,
        400,
        "BadRequest",
    )
    .await;
    assert!(message.contains("'$filter'"), "{message}");
    let page = get_json(
        &app,
        &format!("/v1.0{COLLECTION}?$filter={}", eq("targetId", &target)),
        &app.token,
    )
    .await;
    assert_eq!(ids(&page), mine);
}

#[tokio::test]
async fn an_unknown_parameter_is_refused_on_every_route_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = create(&app, json!({})).await;
    let item = format!("/beta{COLLECTION}/{id}");
    let collection = format!("/beta{COLLECTION}");
    for (method, path) in [
        (Method::GET, collection.clone()),
        (Method::POST, collection.clone()),
        (Method::POST, format!("{collection}/$ref")),
        (Method::GET, item.clone()),
        (Method::DELETE, item.clone()),
        (Method::GET, format!("{collection}/$count")),
        (
            Method::GET,
            format!("{collection}/filterByCurrentUser(on='target')"),
        ),
        (Method::GET, "/beta/$metadata".to_owned()),
    ] {
        let mut request = app
            .http
            .request(method.clone(), app.url(&format!("{path}?foo=bar")))
            .bearer_auth(&app.token);
        if method == Method::POST {
            request = request
                .header("content-type", "application/json")
                .body(r#"{"accessPackageId": "p", "assignmentPolicyId": "q", "targetId": "new"}"#);
        }
        let message = assert_graph_error(request.send().await.unwrap(), 400, "BadRequest").await;
        assert!(message.contains("'foo'"), "{method} {path}: {message}");
    }
    // Nothing was deleted and nothing created.
    assert_eq!(
        app.get_assignment("/beta", &id).await.status().as_u16(),
        200
    );
    let page = get_json(&app, &format!("{collection}?$count=true"), &app.token).await;
    assert_eq!(page["@odata.count"], 1);

    // Options that do not apply to one assignment are refused there too.
    for query in [
        "$top=1",
        "filter=x",
        "$orderby=id",
        "$count=true",
        "$expand=target",
    ] {
        let message = assert_graph_error(
            get(&app, &format!("{item}?{query}"), &app.token).await,
            400,
            "BadRequest",
        )
        .await;
        assert!(
            message.contains("single accessPackageAssignment"),
            "{query}: {message}"
        );
    }
    for query in ["$select=targetId", "select=targetId"] {
        let message = assert_graph_error(
            app.http
                .delete(app.url(&format!("{item}?{query}")))
                .bearer_auth(&app.token)
                .send()
                .await
                .unwrap(),
            400,
            "BadRequest",
        )
        .await;
        assert!(message.contains("'$select'"), "{query}: {message}");
    }
    assert_eq!(
        app.get_assignment("/beta", &id).await.status().as_u16(),
        200
    );
}

#[tokio::test]
async fn names_in_filter_orderby_and_select_match_in_any_case() {
    let app = TestApp::spawn().await;
    let policy = format!("policy-{}", uuid::Uuid::new_v4());
    let early = create(
        &app,
        json!({"assignmentPolicyId": policy, "expiredDateTime": "2030-01-01T00:00:00Z"}),
    )
    .await;
    let late = create(
        &app,
        json!({"assignmentPolicyId": policy, "expiredDateTime": "2031-01-01T00:00:00Z"}),
    )
    .await;

    // Microsoft's tutorial writes `accessPackageAssignmentPolicy/Id`.
    let page = get_json(
        &app,
        &format!(
            "/beta{COLLECTION}?$filter={}&$orderby=ExpiredDateTime%20DESC&$select=TARGETID,AssignmentPolicyId",
            eq("accessPackageAssignmentPolicy/Id", &policy)
        ),
        &app.token,
    )
    .await;
    let items = page["value"].as_array().unwrap();
    let order: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(order, [late.as_str(), early.as_str()]);
    // Answers use the canonical names.
    assert!(
        page["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#accessPackageAssignments(targetId,assignmentPolicyId)"),
        "{page}"
    );
    let keys: BTreeSet<&str> = items[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["id", "targetId", "assignmentPolicyId"])
    );
    for filter in [
        eq("ASSIGNMENTPOLICYID", &policy),
        eq("accessPackageAssignmentPolicy/id", &policy),
        eq("AccessPackageAssignmentPolicy/ID", &policy),
    ] {
        let page = get_json(
            &app,
            &format!("/beta{COLLECTION}?$filter={filter}"),
            &app.token,
        )
        .await;
        assert_eq!(
            ids(&page),
            BTreeSet::from([early.clone(), late.clone()]),
            "{filter}"
        );
    }
    // A name that is no property is still refused, whatever its case.
    let message = assert_graph_error(
        get(
            &app,
            &format!("/beta{COLLECTION}?$filter={}", eq("target_id", "t")),
            &app.token,
        )
        .await,
        400,
        "BadRequest",
    )
    .await;
    assert!(message.contains("'target_id'"), "{message}");
}

#[tokio::test]
async fn target_object_id_finds_one_users_assignments() {
    let app = TestApp::spawn().await;
    let user = uuid::Uuid::new_v4().to_string();
    let theirs: BTreeSet<String> = [
        create(&app, json!({"targetId": user})).await,
        create(&app, json!({"targetId": user, "accessPackageId": "other"})).await,
    ]
    .into();
    create(&app, json!({"targetId": "someone else"})).await;
    for filter in [eq("target/objectId", &user), eq("Target/ObjectId", &user)] {
        let page = get_json(
            &app,
            &format!("/beta{COLLECTION}?$filter={filter}"),
            &app.token,
        )
        .await;
        assert_eq!(ids(&page), theirs, "{filter}");
    }
    let page = get_json(
        &app,
        &format!(
            "/beta{COLLECTION}?$filter={}",
            form(&format!(
                "target/objectId eq '{user}' and accessPackage/id eq 'other'"
            ))
        ),
        &app.token,
    )
    .await;
    assert_eq!(page["value"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn count_answers_the_number_of_matches_as_text() {
    let app = TestApp::spawn().await;
    let package = format!("pkg-{}", uuid::Uuid::new_v4());
    for _ in 0..3 {
        create(&app, json!({"accessPackageId": package})).await;
    }
    create(&app, json!({})).await;

    // As Kiota's count request builder asks.
    let response = app
        .http
        .get(app.url(&format!(
            "/beta{COLLECTION}/$count?$filter={}",
            eq("accessPackage/Id", &package)
        )))
        .bearer_auth(app.read_token())
        .header("accept", "text/plain;q=0.9")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
    );
    assert_eq!(response.text().await.unwrap(), "3");

    for (path, expected) in [
        (format!("/beta{COLLECTION}/$count"), "4"),
        (
            format!(
                "{COLLECTION}/$count?filter={}",
                eq("accessPackageId", &package)
            ),
            "3",
        ),
        (
            format!(
                "/v1.0{COLLECTION}/$count?$filter={}",
                eq("accessPackageId", "none")
            ),
            "0",
        ),
    ] {
        let response = get(&app, &path, &app.token).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(response.text().await.unwrap(), expected, "{path}");
    }
    let message = assert_graph_error(
        get(
            &app,
            &format!("/beta{COLLECTION}/$count?$search=x"),
            &app.token,
        )
        .await,
        400,
        "BadRequest",
    )
    .await;
    assert!(message.contains("'$search'"), "{message}");
    assert_graph_error(
        get(
            &app,
            &format!("/beta{COLLECTION}/$count"),
            &app.mint(&["User.Read"]),
        )
        .await,
        403,
        "Authorization_RequestDenied",
    )
    .await;
}

#[tokio::test]
async fn filter_by_current_user_lists_only_the_callers_own() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let mut own = [BTreeSet::new(), BTreeSet::new()];
    for i in 0..5 {
        own[0].insert(create(&app, json!({"targetId": alice, "isExtended": i % 2 == 0})).await);
    }
    for _ in 0..2 {
        own[1].insert(create(&app, json!({"targetId": bob})).await);
    }
    create(&app, json!({"targetId": "someone else"})).await;
    let tokens = [
        app.mint_as(&alice, &[READ_ALL]),
        app.mint_as(&bob, &[READ_WRITE_ALL]),
    ];
    let function = format!("/beta{COLLECTION}/filterByCurrentUser(on='target')");

    for (token, own) in tokens.iter().zip(&own) {
        // Every page of one's own, and nothing else.
        let (walked, pages) = walk(&app, &format!("{function}?$top=2"), token).await;
        assert_eq!(walked.len(), own.len());
        assert_eq!(&walked.into_iter().collect::<BTreeSet<_>>(), own);
        assert_eq!(pages, own.len().div_ceil(2));
        // With its quotes percent-encoded, it is the same call.
        let encoded = get_json(
            &app,
            &format!("/beta{COLLECTION}/filterByCurrentUser(on=%27target%27)?$count=true"),
            token,
        )
        .await;
        assert_eq!(&ids(&encoded), own);
        assert_eq!(encoded["@odata.count"], own.len());
    }

    // $filter, $count and $select apply within one's own.
    let page = get_json(
        &app,
        &format!("{function}?$filter=isExtended%20eq%20true&$count=true&$select=targetId"),
        &tokens[0],
    )
    .await;
    assert_eq!(page["@odata.count"], 3);
    for item in page["value"].as_array().unwrap() {
        assert_eq!(item["targetId"], alice.as_str());
        assert_eq!(item.as_object().unwrap().len(), 2, "{item}");
    }
    let page = get_json(
        &app,
        &format!("{function}?filter={}", eq("targetId", &bob)),
        &tokens[0],
    )
    .await;
    assert_eq!(page["value"], json!([]));

    // One caller's next link is no page of another's, nor of the whole list.
    let first = get_json(&app, &format!("{function}?$top=1"), &tokens[0]).await;
    let next = first["@odata.nextLink"].as_str().unwrap().to_owned();
    let stolen = app
        .http
        .get(&next)
        .bearer_auth(&tokens[1])
        .send()
        .await
        .unwrap();
    let message = assert_graph_error(stolen, 400, "BadRequest").await;
    assert!(message.contains("$skiptoken"), "{message}");
    let unscoped = next.replace("/filterByCurrentUser(on='target')", "");
    assert_ne!(unscoped, next);
    let response = app
        .http
        .get(&unscoped)
        .bearer_auth(&tokens[0])
        .send()
        .await
        .unwrap();
    assert_graph_error(response, 400, "BadRequest").await;

    // on='createdBy' is not supported; an unknown value is refused.
    for (on, needle) in [("'createdBy'", "createdBy"), ("'owner'", "'owner'")] {
        let message = assert_graph_error(
            get(
                &app,
                &format!("/beta{COLLECTION}/filterByCurrentUser(on={on})"),
                &tokens[0],
            )
            .await,
            400,
            "BadRequest",
        )
        .await;
        assert!(message.contains(needle), "{on}: {message}");
    }
    // The same permissions as a list.
    assert_graph_error(
        get(&app, &function, &app.mint_as(&alice, &["User.Read"])).await,
        403,
        "Authorization_RequestDenied",
    )
    .await;
}

#[tokio::test]
async fn get_by_id_honours_select() {
    let app = TestApp::spawn().await;
    let id = create(&app, json!({"catalogId": "c", "isExtended": true})).await;
    let item = format!("/beta{COLLECTION}/{id}");
    let body = get_json(
        &app,
        &format!("{item}?$select=TargetId,isExtended"),
        &app.token,
    )
    .await;
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "@odata.context",
            "@odata.type",
            "id",
            "targetId",
            "isExtended"
        ])
    );
    assert_eq!(body["targetId"], "t");
    assert_eq!(body["isExtended"], true);
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/beta/$metadata#accessPackageAssignments(targetId,isExtended)/$entity"),
        "{body}"
    );
    // `*` and no $select: everything.
    for query in ["?$select=*", ""] {
        let body = get_json(&app, &format!("{item}{query}"), &app.token).await;
        assert_eq!(body["catalogId"], "c", "{query}");
        assert!(
            body["@odata.context"]
                .as_str()
                .unwrap()
                .ends_with("#accessPackageAssignments/$entity")
        );
    }
    let message = assert_graph_error(
        get(&app, &format!("{item}?$select=manager"), &app.token).await,
        400,
        "BadRequest",
    )
    .await;
    assert!(message.contains("'manager'"), "{message}");
}

#[tokio::test]
async fn the_grpc_face_has_the_same_rules() {
    let app = TestApp::spawn().await;
    let (alice, bob) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let policy = format!("policy-{}", uuid::Uuid::new_v4());
    let mut alices = BTreeSet::new();
    for _ in 0..3 {
        alices.insert(
            create(
                &app,
                json!({"targetId": alice, "assignmentPolicyId": policy}),
            )
            .await,
        );
    }
    let bobs = create(&app, json!({"targetId": bob, "catalogId": "c"})).await;
    let mut client = app.grpc().await;

    // Count, with the filter's case rules and the target/objectId alias.
    for filter in [
        format!("accessPackageAssignmentPolicy/Id eq '{policy}'"),
        format!("ASSIGNMENTPOLICYID eq '{policy}'"),
        format!("target/objectId eq '{alice}'"),
    ] {
        let counted = client
            .count_assignments(authorized(
                CountAssignmentsRequest {
                    filter: filter.clone(),
                    ..Default::default()
                },
                &app.read_token(),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(counted.count, 3, "{filter}");
    }
    let status = client
        .count_assignments(authorized(
            CountAssignmentsRequest {
                filter: "foo eq 'a'".into(),
                ..Default::default()
            },
            &app.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = client
        .count_assignments(authorized(
            CountAssignmentsRequest::default(),
            &app.mint(&["User.Read"]),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // The caller's own: list and count.
    for (subject, own) in [
        (&alice, alices.clone()),
        (&bob, BTreeSet::from([bobs.clone()])),
    ] {
        let token = app.mint_as(subject, &[READ_ALL]);
        let listed = client
            .list_assignments(authorized(
                ListAssignmentsRequest {
                    filter_by_current_user: CurrentUserFilter::Target.into(),
                    order_by: "ID DESC".into(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        let listed: Vec<String> = listed
            .assignments
            .into_iter()
            .map(|a| a.id.unwrap())
            .collect();
        let mut descending: Vec<String> = own.iter().cloned().collect();
        descending.reverse();
        assert_eq!(listed, descending);
        let counted = client
            .count_assignments(authorized(
                CountAssignmentsRequest {
                    filter_by_current_user: CurrentUserFilter::Target.into(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(counted.count, i64::try_from(own.len()).unwrap());
    }
    let status = client
        .list_assignments(authorized(
            ListAssignmentsRequest {
                filter_by_current_user: CurrentUserFilter::CreatedBy.into(),
                ..Default::default()
            },
            &app.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("createdBy"),
        "{}",
        status.message()
    );

    // Get with a selection: field names or Graph names, in any case.
    for paths in [
        vec!["catalog_id"],
        vec!["CatalogId"],
        vec!["CATALOG_ID", "id"],
    ] {
        let found = client
            .get_assignment(authorized(
                GetAssignmentRequest {
                    id: bobs.clone(),
                    select: Some(prost_types::FieldMask {
                        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                    }),
                },
                &app.token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(found.id.as_deref(), Some(bobs.as_str()), "{paths:?}");
        assert_eq!(found.catalog_id.as_deref(), Some("c"), "{paths:?}");
        assert_eq!(found.target_id, None, "{paths:?}");
        assert_eq!(found.access_package_id, None, "{paths:?}");
    }
    let status = client
        .get_assignment(authorized(
            GetAssignmentRequest {
                id: bobs.clone(),
                select: Some(prost_types::FieldMask {
                    paths: vec!["manager".into()],
                }),
            },
            &app.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("'manager'"),
        "{}",
        status.message()
    );
}
