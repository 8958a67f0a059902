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
            "assignmentStatus": if i < 4 { json!("Delivered") } else { Value::Null },
            "assignmentPolicyId": if i == 4 { "policy-b" } else { "policy" },
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
    // The ids of `created` at these indexes, sorted (the list's default order is
    // by id).
    let of = |indexes: &[usize]| {
        let mut ids: Vec<String> = indexes.iter().map(|&i| created[i].clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(
        list(format!("accessPackageId eq '{package}'"), "").await,
        of(&[0, 1, 2, 3, 4, 5])
    );
    assert_eq!(
        list(format!("{p} and assignmentStatus eq 'Delivered'"), "").await,
        of(&[0, 1, 2, 3])
    );
    assert_eq!(
        list(format!("{p} and assignmentStatus eq null"), "").await,
        of(&[4, 5])
    );
    assert_eq!(
        list(format!("{p} and assignmentPolicyId eq 'policy-b'"), "").await,
        of(&[4])
    );
    assert_eq!(
        list(
            format!("{p} and accessPackageAssignmentPolicy/id ne 'policy-b'"),
            ""
        )
        .await,
        of(&[0, 1, 2, 3, 5])
    );
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

/// A walk of `$top=4` pages while spawned tasks create and delete assignments of
/// the same set: before each page, the walker and every writer meet, then the
/// page's GET and each writer's POST or DELETE are sent at once, so every page is
/// read while writes land. Whatever existed for the whole walk is seen exactly
/// once, nothing is seen twice, and nothing outside the set is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_is_stable_under_concurrent_creates_and_deletes() {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    };
    use tokio::sync::Barrier;

    /// Creates by each creator, at most one a page.
    const CREATES_EACH: usize = 10;
    const CREATORS: usize = 2;

    let app = TestApp::spawn().await;
    let (package, base) = seed(&app, 30, |_| json!({})).await;
    // Deleted during the walk, one a page, spread over the id order.
    let victims: Vec<String> = (0..10)
        .map(|k| base[(k * 7) % base.len()].clone())
        .collect();
    let collection = app.url(&format!("/beta{COLLECTION}"));

    // The walker and the writers meet before each page; `done` lets the writers go.
    let barrier = Arc::new(Barrier::new(CREATORS + 2));
    let done = Arc::new(AtomicBool::new(false));
    let walking = Arc::new(AtomicBool::new(false));
    // Writes answered while the walk was in progress.
    let landed_during_walk = Arc::new(AtomicUsize::new(0));
    let created = Arc::new(Mutex::new(Vec::<String>::new()));
    // Victims whose DELETE was sent (they may not exist for the whole walk).
    let delete_sent = Arc::new(Mutex::new(HashSet::<String>::new()));

    // The walker's side of the meeting; a writer that failed never comes.
    let meet = |barrier: Arc<Barrier>| async move {
        tokio::time::timeout(std::time::Duration::from_secs(30), barrier.wait())
            .await
            .expect("the writers come to the barrier (one failed if not: see its panic)");
    };

    let mut writers = Vec::new();
    for creator in 0..CREATORS {
        let (http, token, url) = (app.http.clone(), app.token.clone(), collection.clone());
        let (barrier, done, walking, landed, created, package) = (
            barrier.clone(),
            done.clone(),
            walking.clone(),
            landed_during_walk.clone(),
            created.clone(),
            package.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut left = CREATES_EACH;
            loop {
                barrier.wait().await;
                if done.load(Ordering::SeqCst) {
                    return;
                }
                if left == 0 {
                    continue;
                }
                left -= 1;
                let body = json!({"accessPackageId": package, "assignmentPolicyId": "policy",
                    "targetId": format!("late-{creator}-{left}")});
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status().as_u16(), 201, "a create during the walk");
                let id = response.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                if walking.load(Ordering::SeqCst) {
                    landed.fetch_add(1, Ordering::SeqCst);
                }
                created.lock().unwrap().push(id);
            }
        }));
    }
    {
        let (http, token, url) = (app.http.clone(), app.token.clone(), collection.clone());
        let (barrier, done, walking, landed, sent, victims) = (
            barrier.clone(),
            done.clone(),
            walking.clone(),
            landed_during_walk.clone(),
            delete_sent.clone(),
            victims.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut victims = victims.into_iter();
            loop {
                barrier.wait().await;
                if done.load(Ordering::SeqCst) {
                    return;
                }
                let Some(victim) = victims.next() else {
                    continue;
                };
                sent.lock().unwrap().insert(victim.clone());
                let response = http
                    .delete(format!("{url}/{victim}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status().as_u16(), 204, "a delete during the walk");
                if walking.load(Ordering::SeqCst) {
                    landed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }

    let filter = urlencode(&format!("accessPackageId eq '{package}'"));
    let mut next = Some(format!("{collection}?$filter={filter}&$top=4"));
    let mut seen = Vec::new();
    let mut pages = 0;
    walking.store(true, Ordering::SeqCst);
    while let Some(url) = next {
        assert!(pages < 100, "the walk does not end");
        // Every writer is ready: the GET and the writes go out together.
        meet(barrier.clone()).await;
        let page = get_json(&app, &url).await;
        seen.extend(ids(page["value"].as_array().unwrap()));
        next = page["@odata.nextLink"].as_str().map(str::to_owned);
        pages += 1;
    }
    walking.store(false, Ordering::SeqCst);
    // Release the writers from the barrier they wait at, and let them end.
    done.store(true, Ordering::SeqCst);
    meet(barrier.clone()).await;
    for writer in writers {
        writer.await.expect("a writer failed");
    }

    let landed = landed_during_walk.load(Ordering::SeqCst);
    let created = created.lock().unwrap().clone();
    let delete_sent = delete_sent.lock().unwrap().clone();
    assert!(
        pages >= 5 && landed >= 10,
        "the writes ran with the walk: {pages} pages, {landed} writes landed during it"
    );
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "nothing seen twice: {seen:?}");
    for id in base.iter().filter(|id| !delete_sent.contains(*id)) {
        assert!(
            unique.contains(id),
            "{id} existed for the whole walk but was not seen"
        );
    }
    let known: HashSet<&String> = base.iter().chain(&created).collect();
    for id in &seen {
        assert!(known.contains(id), "{id} is not of this set");
    }
    eprintln!(
        "paging: {pages} pages, {} seen; {} created and {} deleted concurrently ({landed} \
         answered during the walk)",
        seen.len(),
        created.len(),
        delete_sent.len()
    );
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

    // The query, the option its message must name, and what else it must say.
    let cases = [
        (
            "$expand=accessPackage".to_owned(),
            "$expand",
            "not supported",
        ),
        ("$search=x".to_owned(), "$search", "not supported"),
        ("$top=abc".to_owned(), "$top", "'abc'"),
        ("$top=0".to_owned(), "$top", "1 to 999"),
        ("$top=1000".to_owned(), "$top", "1 to 999"),
        ("$top=-1".to_owned(), "$top", "1 to 999"),
        ("$top=1&$top=2".to_owned(), "$top", "more than once"),
        ("$count=maybe".to_owned(), "$count", "'maybe'"),
        ("$select=manager".to_owned(), "$select", "'manager'"),
        ("$orderby=targetId".to_owned(), "$orderby", "'targetId'"),
        ("$filter=targetId%20eq".to_owned(), "$filter", "targetId"),
        (
            "$filter=startswith(targetId,'a')".to_owned(),
            "$filter",
            "startswith",
        ),
        ("$filter=foo%20eq%201".to_owned(), "$filter", "'foo'"),
        ("$skiptoken=forged".to_owned(), "$skiptoken", "not valid"),
        (format!("$skiptoken={token}x"), "$skiptoken", "not valid"),
        // A token is bound to its query: reusing it with another filter is refused.
        (
            format!("$filter=targetId%20eq%20'x'&$skiptoken={token}"),
            "$skiptoken",
            "not a page token of this query",
        ),
    ];
    for (query, option, needle) in cases {
        let response = app
            .http
            .get(app.url(&format!("/beta{COLLECTION}?{query}")))
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        let message = assert_graph_error(response, 400, "BadRequest").await;
        assert!(
            message.contains(option),
            "{query} -> {message}: the option is not named"
        );
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
