//! The collection on the HTTP face: OData query options, next links, stable paging
//! under concurrent writes, and delete.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::{COLLECTION, TestApp, assert_graph_error};

/// Creates `n` assignments of a new access package; returns the package id and
/// the assignments' ids.
async fn seed(app: &TestApp, n: usize, extra: impl Fn(usize) -> Value) -> (String, Vec<String>) {
    let package = format!("pkg-{}", uuid::Uuid::new_v4());
    let mut ids = Vec::new();
    for i in 0..n {
        let mut body = json!({"accessPackageId": package, "assignmentPolicyId": "policy", "targetId": format!("t{i}")});
        for (k, v) in extra(i).as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        let response = app.post_assignment("/beta", body.to_string()).await;
        assert_eq!(response.status().as_u16(), 201);
        ids.push(
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    (package, ids)
}

async fn get_json(app: &TestApp, url: &str) -> Value {
    let response = app
        .http
        .get(url)
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{url}");
    response.json().await.unwrap()
}

/// Follows next links from `url`; returns every item and the number of pages.
async fn walk(app: &TestApp, url: String) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut next = Some(url);
    let mut pages = 0;
    while let Some(url) = next {
        let page = get_json(app, &url).await;
        items.extend(page["value"].as_array().unwrap().iter().cloned());
        next = page["@odata.nextLink"].as_str().map(str::to_owned);
        pages += 1;
        assert!(pages <= 100, "the walk does not end: {next:?}");
    }
    (items, pages)
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn filter_top_count_select_and_next_links() {
    let app = TestApp::spawn().await;
    let (package, created) = seed(&app, 5, |_| json!({})).await;
    seed(&app, 2, |_| json!({})).await; // another package, never listed below

    let filter = format!("accessPackageId eq '{package}'");
    let url = app.url(&format!(
        "/beta{COLLECTION}?$filter={}&$top=2&$count=true&$select=accessPackageId,targetId",
        urlencode(&filter)
    ));
    let first = get_json(&app, &url).await;
    assert_eq!(first["@odata.count"], 5);
    assert_eq!(
        first["@odata.context"],
        app.url("/beta/$metadata#accessPackageAssignments(accessPackageId,targetId)")
            .as_str()
    );
    let items = first["value"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        let keys: HashSet<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, HashSet::from(["id", "accessPackageId", "targetId"]));
    }
    let next = first["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&app.url(&format!("/beta{COLLECTION}?"))),
        "{next}"
    );
    for option in [
        "$filter=",
        "$top=2",
        "$count=true",
        "$select=",
        "$skiptoken=",
    ] {
        assert!(next.contains(option), "{next} keeps {option}");
    }

    let (all, pages) = walk(&app, url).await;
    assert_eq!(pages, 3);
    let mut seen = ids(&all);
    seen.sort();
    let mut expected = created.clone();
    expected.sort();
    assert_eq!(seen, expected, "every assignment exactly once, in id order");
    assert_eq!(ids(&all), {
        let mut s = ids(&all);
        s.sort();
        s
    });

    // Graph's navigation form means the same.
    let url = app.url(&format!(
        "/beta{COLLECTION}?$filter={}",
        urlencode(&format!("accessPackage/id eq '{package}'"))
    ));
    let page = get_json(&app, &url).await;
    assert_eq!(page["value"].as_array().unwrap().len(), 5);
    assert!(page.get("@odata.count").is_none(), "no count unless asked");
    assert!(page.get("@odata.nextLink").is_none(), "one page");
    assert_eq!(
        page["value"][0]["@odata.type"],
        Value::Null,
        "minimal metadata"
    );
    assert_eq!(
        page["value"][0].as_object().unwrap().len(),
        9,
        "all nine properties"
    );
}

#[tokio::test]
async fn filters_on_every_property_and_orders_by_expiry() {
    let app = TestApp::spawn().await;
    let (package, created) = seed(&app, 6, |i| {
        json!({
            "assignmentState": if i % 2 == 0 { "Delivered" } else { "Expired" },
            "isExtended": i % 3 == 0,
            "catalogId": if i < 2 { Value::Null } else { json!("cat") },
            "expiredDateTime": if i == 5 { Value::Null } else { json!(format!("2030-01-0{}T00:00:00+01:00", i + 1)) },
        })
    })
    .await;
    let list = |filter: String, extra: &'static str| {
        let url = app.url(&format!(
            "/v1.0{COLLECTION}?$filter={}{extra}",
            urlencode(&filter)
        ));
        let app = &app;
        async move { ids(&walk(app, url).await.0) }
    };
    let p = format!("accessPackage/id eq '{package}'");
    let count = |v: Vec<String>| v.len();
    assert_eq!(
        count(list(format!("{p} and assignmentState eq 'Delivered'"), "").await),
        3
    );
    assert_eq!(
        count(list(format!("{p} and isExtended eq true"), "").await),
        2
    );
    assert_eq!(
        count(list(format!("{p} and catalogId eq null"), "").await),
        2
    );
    assert_eq!(
        count(list(format!("{p} and catalogId ne 'cat'"), "").await),
        2,
        "null ne 'cat'"
    );
    assert_eq!(
        count(
            list(
                format!("{p} and expiredDateTime lt 2030-01-03T00:00:00+01:00"),
                ""
            )
            .await
        ),
        2
    );
    assert_eq!(
        count(
            list(
                format!("{p} and expiredDateTime ge 2030-01-03T00:00:00+01:00"),
                ""
            )
            .await
        ),
        3
    );
    assert_eq!(
        count(
            list(
                format!("{p} and (targetId eq 't0' or targetId eq 't5')"),
                ""
            )
            .await
        ),
        2
    );
    assert_eq!(
        list(format!("{p} and id eq {}", created[3].to_uppercase()), "").await,
        [created[3].clone()]
    );

    let by_expiry = list(p.clone(), "&$orderby=expiredDateTime%20desc&$top=2").await;
    let expected: Vec<String> = [4, 3, 2, 1, 0, 5]
        .iter()
        .map(|&i| created[i].clone())
        .collect();
    assert_eq!(by_expiry, expected, "latest first, unset last");
    let ascending = list(p, "&$orderby=expiredDateTime&$top=4").await;
    assert_eq!(ascending.first(), Some(&created[5]), "unset first");
}

#[tokio::test]
async fn paging_is_stable_under_concurrent_creates_and_deletes() {
    let app = TestApp::spawn().await;
    let (package, base) = seed(&app, 30, |_| json!({})).await;
    let filter = urlencode(&format!("accessPackageId eq '{package}'"));
    let mut next = Some(app.url(&format!("/beta{COLLECTION}?$filter={filter}&$top=4")));
    let mut seen = Vec::new();
    let mut deleted = HashSet::new();
    let mut round = 0;
    while let Some(url) = next {
        assert!(round < 100, "the walk does not end");
        let page = get_json(&app, &url).await;
        seen.extend(ids(page["value"].as_array().unwrap()));
        next = page["@odata.nextLink"].as_str().map(str::to_owned);
        // Between pages: new assignments in the same set, and some deleted.
        seed_into(&app, &package, 3).await;
        let victim = &base[(round * 7) % base.len()];
        if deleted.insert(victim.clone()) {
            let response = app
                .http
                .delete(app.url(&format!("/beta{COLLECTION}/{victim}")))
                .bearer_auth(&app.token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 204);
        }
        round += 1;
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "nothing seen twice");
    for id in base.iter().filter(|id| !deleted.contains(*id)) {
        assert!(
            unique.contains(id),
            "{id} existed for the whole walk but was not seen"
        );
    }
}

async fn seed_into(app: &TestApp, package: &str, n: usize) {
    for _ in 0..n {
        let body =
            json!({"accessPackageId": package, "assignmentPolicyId": "policy", "targetId": "late"});
        assert_eq!(
            app.post_assignment("/beta", body.to_string())
                .await
                .status()
                .as_u16(),
            201
        );
    }
}

#[tokio::test]
async fn bad_query_options_are_400_naming_the_option() {
    let app = TestApp::spawn().await;
    let (package, _) = seed(&app, 3, |_| json!({})).await;
    let filter = urlencode(&format!("accessPackageId eq '{package}'"));
    let first = get_json(
        &app,
        &app.url(&format!("/beta{COLLECTION}?$filter={filter}&$top=1")),
    )
    .await;
    let next = first["@odata.nextLink"].as_str().unwrap().to_owned();
    let token = next.split("$skiptoken=").nth(1).unwrap().to_owned();

    let cases = [
        ("$expand=accessPackage".to_owned(), "$expand"),
        ("$search=x".to_owned(), "$search"),
        ("$top=abc".to_owned(), "$top"),
        ("$top=0".to_owned(), "$top"),
        ("$top=1000".to_owned(), "$top"),
        ("$top=-1".to_owned(), "$top"),
        ("$top=1&$top=2".to_owned(), "more than once"),
        ("$count=maybe".to_owned(), "$count"),
        ("$select=manager".to_owned(), "manager"),
        ("$orderby=targetId".to_owned(), "$orderby"),
        ("$filter=targetId%20eq".to_owned(), "$filter"),
        ("$filter=startswith(targetId,'a')".to_owned(), "startswith"),
        ("$filter=foo%20eq%201".to_owned(), "'foo'"),
        ("$skiptoken=forged".to_owned(), "$skiptoken"),
        (format!("$skiptoken={token}x"), "$skiptoken"),
        // A token is bound to its query: reusing it with another filter is refused.
        (
            format!("$filter=targetId%20eq%20'x'&$skiptoken={token}"),
            "$skiptoken",
        ),
    ];
    for (query, needle) in cases {
        let response = app
            .http
            .get(app.url(&format!("/beta{COLLECTION}?{query}")))
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        let message = assert_graph_error(response, 400, "BadRequest").await;
        assert!(message.contains(needle), "{query} -> {message}");
    }
    // The genuine link still works.
    assert_eq!(
        get_json(&app, &next).await["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn delete_answers_204_then_404() {
    let app = TestApp::spawn().await;
    let (_, ids) = seed(&app, 1, |_| json!({})).await;
    let url = app.url(&format!("/beta{COLLECTION}/{}", ids[0]));

    let response = app
        .http
        .delete(&url)
        .bearer_auth(app.read_token())
        .send()
        .await
        .unwrap();
    assert_graph_error(response, 403, "Authorization_RequestDenied").await;
    let response = app.http.delete(&url).send().await.unwrap();
    assert_graph_error(response, 401, "InvalidAuthenticationToken").await;

    let response = app
        .http
        .delete(&url)
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(response.headers()["odata-version"], "4.0");
    assert!(response.bytes().await.unwrap().is_empty());
    assert_graph_error(
        app.get_assignment("/beta", &ids[0]).await,
        404,
        "Request_ResourceNotFound",
    )
    .await;
    let response = app
        .http
        .delete(&url)
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_graph_error(response, 404, "Request_ResourceNotFound").await;
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
