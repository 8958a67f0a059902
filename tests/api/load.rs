//! Many concurrent clients: no errors, every id unique, and the store holds exactly
//! what was acknowledged.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::helpers::{COLLECTION, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_creating_for_two_seconds() {
    let app = TestApp::spawn().await;
    let package = format!("load-{}", uuid::Uuid::new_v4());
    let until = Instant::now() + Duration::from_secs(2);
    let mut clients = Vec::new();
    for client in 0..64 {
        let (http, url, token, package) = (
            app.http.clone(),
            app.url(&format!("/beta{COLLECTION}")),
            app.token.clone(),
            package.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while Instant::now() < until {
                let body = json!({"accessPackageId": package, "assignmentPolicyId": "p", "targetId": format!("c{client}")});
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status().as_u16(), 201, "{}", response.text().await.unwrap());
                ids.push(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
            }
            ids
        }));
    }
    let mut acknowledged = Vec::new();
    for client in clients {
        acknowledged.extend(client.await.unwrap());
    }
    let unique: HashSet<&String> = acknowledged.iter().collect();
    assert_eq!(unique.len(), acknowledged.len(), "every id unique");
    assert!(acknowledged.len() >= 64);

    let filter =
        form_urlencoded::byte_serialize(format!("accessPackageId eq '{package}'").as_bytes())
            .collect::<String>();
    let page: Value = app
        .http
        .get(app.url(&format!(
            "/beta{COLLECTION}?$filter={filter}&$count=true&$top=1"
        )))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["@odata.count"],
        acknowledged.len(),
        "the store holds exactly the 201s"
    );
}
