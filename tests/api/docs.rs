//! The API documents, checked against what the running servers do: `/openapi.json`
//! (OpenAPI 3.1: routes, query options, headers, schemas, the bearer scheme, the
//! Graph error body) and `{prefix}/$metadata` (OData CSDL of the entity).

use std::collections::{BTreeMap, BTreeSet};

use entitlement_gateway::http::PREFIXES;
use reqwest::{Method, Response};
use serde_json::Value;

use crate::helpers::{COLLECTION, SEED_REQUEST, TestApp, assert_graph_error};

/// The methods probed on every documented path.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// A GUID no assignment has.
const UNKNOWN_ID: &str = "0f6c7b1e-5d2a-4c3b-9e8f-1a2b3c4d5e6f";

/// One operation of the document.
struct Operation {
    path: String,
    /// Upper case, as on the wire.
    method: String,
    spec: Value,
}

impl Operation {
    fn secured(&self) -> bool {
        self.spec["security"]
            .as_array()
            .is_some_and(|requirements| !requirements.is_empty())
    }

    /// The response codes the operation lists explicitly (not `4XX`, `5XX`).
    fn statuses(&self) -> BTreeSet<u16> {
        self.spec["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .filter_map(|code| code.parse().ok())
            .collect()
    }

    fn parameter(&self, name: &str) -> Option<&Value> {
        self.spec["parameters"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)
    }

    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

async fn openapi(app: &TestApp) -> Value {
    let response = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        content_type(&response).starts_with("application/json"),
        "{}",
        content_type(&response)
    );
    response.json().await.expect("the document is JSON")
}

fn operations(document: &Value) -> Vec<Operation> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, spec) in item.as_object().expect("a path item") {
            if [
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ]
            .contains(&method.as_str())
            {
                operations.push(Operation {
                    path: path.clone(),
                    method: method.to_uppercase(),
                    spec: spec.clone(),
                });
            }
        }
    }
    operations
}

/// Follows `$ref`s into the document's components.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let mut target = document;
            for part in reference.trim_start_matches("#/").split('/') {
                target = &target[part.replace("~1", "/").replace("~0", "~")];
            }
            assert!(!target.is_null(), "{reference} resolves");
            resolve(document, target)
        }
        None => value,
    }
}

fn schema_properties(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .expect("an object schema")
        .keys()
        .cloned()
        .collect()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

/// The JSON types a schema allows (`type` is a string or, in 3.1, a list).
fn schema_types(schema: &Value) -> BTreeSet<String> {
    match &schema["type"] {
        Value::String(t) => BTreeSet::from([t.clone()]),
        Value::Array(types) => types
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect(),
        other => panic!("a schema without a type: {other}"),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks a real JSON body against an object schema: no property the schema does
/// not declare, every required one present, each value of a declared type.
fn assert_conforms(document: &Value, schema: &Value, body: &Value, what: &str) {
    let schema = resolve(document, schema);
    let declared = schema_properties(schema);
    for (name, value) in body.as_object().unwrap_or_else(|| panic!("{what}: {body}")) {
        assert!(
            declared.contains(name),
            "{what}: '{name}' is not in the schema {declared:?}"
        );
        let property = resolve(document, &schema["properties"][name]);
        if property.get("type").is_some() {
            let types = schema_types(property);
            let actual = json_type(value);
            assert!(
                types.contains(actual) || (actual == "integer" && types.contains("number")),
                "{what}: '{name}' is {actual}, the schema says {types:?}"
            );
            match value {
                Value::Object(_) => {
                    assert_conforms(document, property, value, &format!("{what}.{name}"));
                }
                Value::Array(items) => {
                    for item in items.iter().filter(|i| i.is_object()) {
                        assert_conforms(
                            document,
                            &property["items"],
                            item,
                            &format!("{what}.{name}[]"),
                        );
                    }
                }
                _ => {}
            }
        } else {
            assert_conforms(document, property, value, &format!("{what}.{name}"));
        }
    }
    for required in schema["required"].as_array().into_iter().flatten() {
        let required = required.as_str().unwrap();
        assert!(
            body.get(required).is_some(),
            "{what}: required '{required}' is missing from {body}"
        );
    }
}

fn content_type(response: &Response) -> String {
    response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The schema of the response `status` of `operation`, for JSON.
fn response_schema<'a>(document: &'a Value, operation: &'a Operation, status: u16) -> &'a Value {
    let response = resolve(document, &operation.spec["responses"][status.to_string()]);
    &response["content"]["application/json"]["schema"]
}

fn find<'a>(operations: &'a [Operation], method: &str, path: &str) -> &'a Operation {
    operations
        .iter()
        .find(|o| o.method == method && o.path == path)
        .unwrap_or_else(|| panic!("{method} {path} is documented"))
}

#[tokio::test]
async fn openapi_json_is_openapi_3_1_with_the_bearer_scheme_error_schema_and_query_options() {
    let app = TestApp::spawn().await;
    let document = openapi(&app).await;
    let operations = operations(&document);

    let version = document["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "{version}");

    // The bearer scheme, and on which operations it is required.
    let schemes = document["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    let (bearer, scheme) = schemes
        .iter()
        .find(|(_, s)| {
            s["type"] == "http" && s["scheme"].as_str().unwrap().eq_ignore_ascii_case("bearer")
        })
        .expect("an HTTP bearer scheme");
    assert_eq!(scheme["bearerFormat"], "JWT");
    for operation in &operations {
        let api = operation.path.contains(COLLECTION);
        assert_eq!(operation.secured(), api, "{}", operation.label());
        if api {
            assert_eq!(
                operation.spec["security"],
                serde_json::json!([{ bearer.as_str(): [] }]),
                "{}",
                operation.label()
            );
            assert!(operation.statuses().contains(&401), "{}", operation.label());
        }
        assert!(
            operation
                .parameter("client-request-id")
                .is_some_and(|p| p["in"] == "header"),
            "{}",
            operation.label()
        );
        assert!(
            operation.spec["operationId"].is_string(),
            "{}",
            operation.label()
        );
    }
    let ids: BTreeSet<&str> = operations
        .iter()
        .map(|o| o.spec["operationId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), operations.len(), "operation ids are unique");

    // The error schema is the body of a real error, and every response names the
    // headers every response has.
    let list_path = format!("/beta{COLLECTION}");
    let list = find(&operations, "GET", &list_path);
    let unauthorized = app.http.get(app.url(&list_path)).send().await.unwrap();
    let error_schema = response_schema(&document, list, 401).clone();
    assert!(
        resolve(&document, &error_schema)["required"]
            .as_array()
            .unwrap()
            .contains(&"error".into())
    );
    let body: Value = {
        let headers = unauthorized.headers().clone();
        let text = unauthorized.text().await.unwrap();
        assert!(headers.contains_key("request-id"));
        serde_json::from_str(&text).unwrap()
    };
    assert_conforms(&document, &error_schema, &body, "401 body");
    let inner = resolve(
        &document,
        &resolve(
            &document,
            &resolve(&document, &error_schema)["properties"]["error"],
        )["properties"]["innerError"],
    );
    assert_eq!(
        schema_properties(inner),
        BTreeSet::from(["date", "request-id", "client-request-id"].map(String::from))
    );
    for operation in &operations {
        for (status, response) in operation.spec["responses"].as_object().unwrap() {
            let response = resolve(&document, response);
            for header in ["request-id", "client-request-id", "OData-Version"] {
                assert!(
                    response["headers"][header].is_object(),
                    "{} {status}: {header}",
                    operation.label()
                );
            }
        }
    }

    // The list's query options: each one documented is accepted with its example,
    // and answers with a page of the documented collection schema.
    for _ in 0..3 {
        app.create_seed("").await;
    }
    let mut names = BTreeSet::new();
    for parameter in list.spec["parameters"].as_array().unwrap() {
        if parameter["in"] != "query" {
            continue;
        }
        let name = parameter["name"].as_str().unwrap();
        names.insert(name.to_owned());
        let value = match &parameter["example"] {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(","),
            Value::Null => continue,
            other => other.to_string(),
        };
        let query: String = form_encode(&[(name, &value)]);
        let response = app
            .http
            .get(app.url(&format!("{list_path}?{query}")))
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{name}={value}");
        let page: Value = response.json().await.unwrap();
        assert_conforms(
            &document,
            response_schema(&document, list, 200),
            &page,
            name,
        );
    }
    assert_eq!(
        names,
        BTreeSet::from(
            [
                "$filter",
                "$top",
                "$skiptoken",
                "$count",
                "$select",
                "$orderby"
            ]
            .map(String::from)
        )
    );
    // `$skiptoken` takes the token of a real next link.
    let page: Value = app
        .http
        .get(app.url(&format!("{list_path}?$top=1&$count=true")))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_conforms(
        &document,
        response_schema(&document, list, 200),
        &page,
        "page",
    );
    assert!(page["@odata.count"].as_i64().unwrap() >= 3);
    let next = page["@odata.nextLink"].as_str().expect("a next link");
    assert!(next.contains("$skiptoken="), "{next}");
    let response = app
        .http
        .get(next)
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // An option the document does not list is refused.
    let response = app
        .http
        .get(app.url(&format!("{list_path}?$expand=accessPackage")))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_graph_error(response, 400, "BadRequest").await;

    // The entity schema is what a create answers, and the create's body schema
    // requires what the service requires.
    let create = find(&operations, "POST", &list_path);
    let created = app.post_assignment("/beta", SEED_REQUEST).await;
    assert_eq!(created.status().as_u16(), 201);
    assert!(
        create.spec["responses"]["201"]["headers"]["Location"].is_object(),
        "201 documents Location"
    );
    assert!(created.headers().contains_key("location"));
    let created: Value = created.json().await.unwrap();
    let entity = response_schema(&document, create, 201);
    assert_conforms(&document, entity, &created, "201 body");
    let declared: BTreeSet<String> = schema_properties(resolve(&document, entity))
        .into_iter()
        .filter(|p| !p.starts_with('@'))
        .collect();
    let written: BTreeSet<String> = keys(&created)
        .into_iter()
        .filter(|p| !p.starts_with('@'))
        .collect();
    assert_eq!(
        declared, written,
        "the schema has every property the JSON has"
    );
    assert_eq!(
        resolve(&document, entity)["properties"]["expiredDateTime"]["format"],
        "date-time"
    );
    let request = resolve(
        &document,
        &create.spec["requestBody"]["content"]["application/json"]["schema"],
    );
    let seed: Value = serde_json::from_str(SEED_REQUEST).unwrap();
    assert_conforms(&document, request, &seed, "the seed's request");
    let required: BTreeSet<String> = request["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(required, required_by_the_service(&app).await);
}

/// The properties without which the service refuses the seed's create.
async fn required_by_the_service(app: &TestApp) -> BTreeSet<String> {
    let seed: Value = serde_json::from_str(SEED_REQUEST).unwrap();
    let mut required = BTreeSet::new();
    for name in keys(&seed).into_iter().filter(|k| !k.starts_with('@')) {
        let mut body = seed.clone();
        body.as_object_mut().unwrap().remove(&name);
        let response = app.post_assignment("", body.to_string()).await;
        match response.status().as_u16() {
            201 => {}
            400 => {
                let message = assert_graph_error(response, 400, "BadRequest").await;
                assert!(message.contains(&name), "{name}: {message}");
                required.insert(name);
            }
            other => panic!("{name}: {other}"),
        }
    }
    required
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| {
            let value: String = value
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Sends `operation` as a caller would: the path's `{id}` filled in, the seed as a
/// POST body, with `token` when given.
async fn send(app: &TestApp, operation: &Operation, id: &str, token: Option<&str>) -> Response {
    let path = operation.path.replace("{id}", id);
    let method = Method::from_bytes(operation.method.as_bytes()).unwrap();
    let mut request = app.http.request(method, app.url(&path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if operation.method == "POST" {
        request = request
            .header("content-type", "application/json")
            .body(SEED_REQUEST);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn every_documented_operation_is_served_as_documented() {
    let app = TestApp::spawn().await;
    let document = openapi(&app).await;
    let operations = operations(&document);
    assert!(operations.len() >= 4 * 8 + 3, "{}", operations.len());
    for operation in &operations {
        let label = operation.label();
        let documented = operation.statuses();

        // Without a token: a secured operation is refused by its handler (so it was
        // routed there), an open one answers.
        let response = send(&app, operation, UNKNOWN_ID, None).await;
        let status = response.status().as_u16();
        if operation.secured() {
            assert_graph_error(response, 401, "InvalidAuthenticationToken").await;
        } else {
            assert!((200..300).contains(&status), "{label}: {status}");
        }
        assert!(
            documented.contains(&status),
            "{label}: {status} is not documented"
        );

        // With a token, on an assignment that exists (a new one each time, since
        // the operation may be a DELETE).
        let id = app.create_seed("").await["id"].as_str().unwrap().to_owned();
        let response = send(&app, operation, &id, Some(&app.token)).await;
        let status = response.status().as_u16();
        assert!(
            (200..300).contains(&status),
            "{label}: {status} {}",
            response.text().await.unwrap()
        );
        assert!(
            documented.contains(&status),
            "{label}: {status} is not documented"
        );
        let documented_types: Vec<String> =
            resolve(&document, &operation.spec["responses"][status.to_string()])["content"]
                .as_object()
                .map(|content| content.keys().cloned().collect())
                .unwrap_or_default();
        let actual = content_type(&response);
        let essence = actual.split(';').next().unwrap_or_default().trim();
        if status == 204 {
            assert!(documented_types.is_empty(), "{label}");
        } else {
            assert!(
                documented_types.iter().any(|t| t == essence),
                "{label}: {actual} is not among {documented_types:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_router_serves_nothing_that_the_document_does_not_list() {
    let app = TestApp::spawn().await;
    let document = openapi(&app).await;
    let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for operation in operations(&document) {
        by_path
            .entry(operation.path.clone())
            .or_default()
            .insert(operation.method.clone());
    }

    // Every prefix has the whole API.
    for prefix in PREFIXES {
        for (path, methods) in [
            (format!("{prefix}{COLLECTION}"), &["GET", "POST"][..]),
            (format!("{prefix}{COLLECTION}/$ref"), &["POST"][..]),
            (format!("{prefix}{COLLECTION}/$count"), &["GET"][..]),
            (
                format!("{prefix}{COLLECTION}/filterByCurrentUser(on='target')"),
                &["GET"][..],
            ),
            (
                format!("{prefix}{COLLECTION}/{{id}}"),
                &["DELETE", "GET"][..],
            ),
            (format!("{prefix}/$metadata"), &["GET"][..]),
        ] {
            let documented: Vec<&str> = by_path
                .get(&path)
                .unwrap_or_else(|| panic!("{path} is documented"))
                .iter()
                .map(String::as_str)
                .collect();
            assert_eq!(documented, methods, "{path}");
        }
    }

    // On a documented path, every other method is refused with 405, and Allow
    // names exactly the documented ones (GET brings HEAD with it).
    for (path, methods) in &by_path {
        let url = app.url(&path.replace("{id}", UNKNOWN_ID));
        for method in METHODS.iter().filter(|m| !methods.contains(**m)) {
            let response = app
                .http
                .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .bearer_auth(&app.token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 405, "{method} {path}");
            let allow: BTreeSet<String> = response
                .headers()
                .get("allow")
                .unwrap_or_else(|| panic!("{method} {path}: no Allow"))
                .to_str()
                .unwrap()
                .split(',')
                .map(|m| m.trim().to_owned())
                .filter(|m| m != "HEAD")
                .collect();
            assert_graph_error(response, 405, "MethodNotAllowed").await;
            assert_eq!(&allow, methods, "{method} {path}");
        }
    }

    // Paths the document does not list are not served, whatever the method.
    let mut undocumented = vec![
        "/".to_owned(),
        "/metrics".to_owned(),
        "/openapi.yaml".to_owned(),
        "/openapi".to_owned(),
        "/swagger-ui".to_owned(),
        "/docs".to_owned(),
        "/api-docs/openapi.json".to_owned(),
        "/health".to_owned(),
        "/livez".to_owned(),
        "/healthz/x".to_owned(),
        format!("/v2.0{COLLECTION}"),
        format!("/BETA{COLLECTION}"),
        format!("{COLLECTION}/{UNKNOWN_ID}/x"),
        format!("{COLLECTION}/$ref/x"),
    ];
    for prefix in PREFIXES.into_iter().filter(|p| !p.is_empty()) {
        undocumented.extend([
            prefix.to_owned(),
            format!("{prefix}/openapi.json"),
            format!("{prefix}/healthz"),
            format!("{prefix}/readyz"),
            format!("{prefix}/identityGovernance"),
            format!("{prefix}/identityGovernance/entitlementManagement"),
            format!("{prefix}/$metadata/x"),
        ]);
    }
    for path in undocumented {
        assert!(!by_path.contains_key(&path), "{path} is documented");
        for method in METHODS {
            let response = app
                .http
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    app.url(&path),
                )
                .bearer_auth(&app.token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 404, "{method} {path}");
            assert_graph_error(response, 404, "Request_ResourceNotFound").await;
        }
    }
}

/// `{prefix}/$metadata`, parsed.
async fn metadata(app: &TestApp, prefix: &str) -> String {
    let response = app
        .http
        .get(app.url(&format!("{prefix}/$metadata")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{prefix}");
    assert_eq!(content_type(&response), "application/xml", "{prefix}");
    response.text().await.unwrap()
}

const EDMX: &str = "http://docs.oasis-open.org/odata/ns/edmx";
const EDM: &str = "http://docs.oasis-open.org/odata/ns/edm";

fn child<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    tag: &str,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    node.children()
        .find(|n| n.has_tag_name((EDM, tag)) && n.attribute("Name") == Some(name))
}

/// The EDM type a value written in Graph JSON has.
fn edm_type_of(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "Edm.Boolean",
        // A DateTimeOffset: yyyy-mm-ddThh:mm:ss[.f]Z or ±hh:mm.
        Value::String(s)
            if s.len() >= 20
                && s.as_bytes()[4] == b'-'
                && s.as_bytes()[10] == b'T'
                && (s.ends_with('Z')
                    || s.as_bytes()[s.len() - 6] == b'+'
                    || s.as_bytes()[s.len() - 6] == b'-') =>
        {
            "Edm.DateTimeOffset"
        }
        Value::String(_) => "Edm.String",
        other => panic!("no EDM type for {other}"),
    }
}

#[tokio::test]
async fn metadata_is_csdl_of_the_entity_as_the_json_has_it_on_every_prefix() {
    let app = TestApp::spawn().await;
    let created = app.create_seed("").await;
    let id = created["id"].as_str().unwrap();
    for prefix in PREFIXES {
        let xml = metadata(&app, prefix).await;
        let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{prefix}: {e}"));
        let root = doc.root_element();
        assert!(root.has_tag_name((EDMX, "Edmx")), "{prefix}");
        assert_eq!(root.attribute("Version"), Some("4.0"));
        let services = root
            .children()
            .find(|n| n.has_tag_name((EDMX, "DataServices")))
            .expect("DataServices");
        let schema = services
            .children()
            .find(|n| n.has_tag_name((EDM, "Schema")))
            .expect("a Schema");
        assert_eq!(schema.attribute("Namespace"), Some("microsoft.graph"));

        let entity = child(schema, "EntityType", "accessPackageAssignment")
            .expect("EntityType accessPackageAssignment");
        let key: Vec<&str> = entity
            .children()
            .filter(|n| n.has_tag_name((EDM, "Key")))
            .flat_map(|k| {
                k.children()
                    .filter(|n| n.has_tag_name((EDM, "PropertyRef")))
            })
            .filter_map(|r| r.attribute("Name"))
            .collect();
        assert_eq!(key, ["id"]);
        let properties: BTreeMap<&str, (&str, bool)> = entity
            .children()
            .filter(|n| n.has_tag_name((EDM, "Property")))
            .map(|p| {
                (
                    p.attribute("Name").unwrap(),
                    (
                        p.attribute("Type").unwrap(),
                        p.attribute("Nullable") != Some("false"),
                    ),
                )
            })
            .collect();
        assert_eq!(
            properties["id"],
            ("Edm.String", false),
            "a key is not nullable"
        );

        // The JSON of a real GET: the same properties, with matching EDM types.
        let body: Value = app.get_assignment(prefix, id).await.json().await.unwrap();
        let written: BTreeMap<&str, &Value> = body
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| !k.starts_with('@'))
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        assert_eq!(
            properties.keys().collect::<Vec<_>>(),
            written.keys().collect::<Vec<_>>(),
            "{prefix}"
        );
        for (name, value) in &written {
            assert_eq!(properties[name].0, edm_type_of(value), "{prefix} {name}");
        }

        // The context URL the service writes points into this document: its
        // fragment names an entity set of this entity type.
        let context = body["@odata.context"].as_str().unwrap();
        let (base, fragment) = context.split_once('#').unwrap();
        assert_eq!(base, app.url(&format!("{prefix}/$metadata")));
        let set_name = fragment.trim_end_matches("/$entity");
        let container = schema
            .children()
            .find(|n| n.has_tag_name((EDM, "EntityContainer")))
            .expect("an EntityContainer");
        let set = child(container, "EntitySet", set_name).expect("the context's entity set");
        assert_eq!(
            set.attribute("EntityType"),
            Some("microsoft.graph.accessPackageAssignment")
        );

        // And the URL's path resolves: singleton identityGovernance, then the
        // navigation properties entitlementManagement and accessPackageAssignments,
        // bound to that entity set.
        let mut segments = COLLECTION.trim_start_matches('/').split('/');
        let singleton = child(container, "Singleton", segments.next().unwrap())
            .expect("singleton identityGovernance");
        let mut type_name = singleton.attribute("Type").unwrap().to_owned();
        let mut navigated = Vec::new();
        for segment in segments {
            let local = type_name
                .strip_prefix("microsoft.graph.")
                .unwrap_or_else(|| panic!("{type_name} is in microsoft.graph"));
            let owner = child(schema, "EntityType", local).unwrap_or_else(|| panic!("{local}"));
            let navigation = child(owner, "NavigationProperty", segment)
                .unwrap_or_else(|| panic!("{local}/{segment}"));
            navigated.push(segment);
            type_name = navigation.attribute("Type").unwrap().to_owned();
        }
        assert_eq!(
            type_name,
            "Collection(microsoft.graph.accessPackageAssignment)"
        );
        let binding = singleton
            .children()
            .find(|n| {
                n.has_tag_name((EDM, "NavigationPropertyBinding"))
                    && n.attribute("Path") == Some(navigated.join("/").as_str())
            })
            .expect("a binding of the path");
        assert_eq!(binding.attribute("Target"), Some(set_name));

        // The function segment a caller's own list is read through: bound to the
        // collection, its `on` of an enum type that has the value the route takes.
        let function =
            child(schema, "Function", "filterByCurrentUser").expect("Function filterByCurrentUser");
        assert_eq!(function.attribute("IsBound"), Some("true"));
        let parameters: Vec<(&str, &str)> = function
            .children()
            .filter(|n| n.has_tag_name((EDM, "Parameter")))
            .map(|p| (p.attribute("Name").unwrap(), p.attribute("Type").unwrap()))
            .collect();
        assert_eq!(parameters[0].1, type_name, "bound to the collection");
        assert_eq!(parameters[1].0, "on");
        let options = parameters[1]
            .1
            .strip_prefix("microsoft.graph.")
            .expect("an enum of microsoft.graph");
        let members: Vec<&str> = child(schema, "EnumType", options)
            .expect("the enum type of on")
            .children()
            .filter(|n| n.has_tag_name((EDM, "Member")))
            .filter_map(|m| m.attribute("Name"))
            .collect();
        assert!(members.contains(&"target"), "{members:?}");
        let returns = function
            .children()
            .find(|n| n.has_tag_name((EDM, "ReturnType")))
            .expect("a ReturnType");
        assert_eq!(returns.attribute("Type"), Some(type_name.as_str()));
    }
}

#[tokio::test]
async fn metadata_says_not_nullable_for_the_key_and_what_a_create_requires() {
    let app = TestApp::spawn().await;
    let xml = metadata(&app, "/beta").await;
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let entity = doc
        .descendants()
        .find(|n| {
            n.has_tag_name((EDM, "EntityType"))
                && n.attribute("Name") == Some("accessPackageAssignment")
        })
        .unwrap();
    let mut not_nullable: BTreeSet<String> = entity
        .children()
        .filter(|n| n.has_tag_name((EDM, "Property")) && n.attribute("Nullable") == Some("false"))
        .map(|p| p.attribute("Name").unwrap().to_owned())
        .collect();
    // The key: declared as the key, and not nullable (a create need not send it).
    let key: Vec<&str> = entity
        .descendants()
        .filter(|n| n.has_tag_name((EDM, "PropertyRef")))
        .filter_map(|r| r.attribute("Name"))
        .collect();
    assert_eq!(key, ["id"]);
    assert!(not_nullable.remove("id"), "the key id is not nullable");
    // The rest: exactly what a create is refused without.
    assert_eq!(not_nullable, required_by_the_service(&app).await);
    assert!(!not_nullable.is_empty());
}

/// The entity type's properties, written out here (not taken from the library):
/// name, EDM type, nullable. In this order, each once, and nothing else.
const ASSIGNMENT_PROPERTIES: [(&str, &str, bool); 9] = [
    ("id", "Edm.String", false),
    ("catalogId", "Edm.String", true),
    ("accessPackageId", "Edm.String", false),
    ("assignmentPolicyId", "Edm.String", false),
    ("targetId", "Edm.String", false),
    ("assignmentStatus", "Edm.String", true),
    ("assignmentState", "Edm.String", true),
    ("isExtended", "Edm.Boolean", true),
    ("expiredDateTime", "Edm.DateTimeOffset", true),
];

/// `GET /beta/$metadata`, read as XML: the one EntityType
/// microsoft.graph.accessPackageAssignment declares exactly the properties of
/// the table, each once, in its order, with its type and nullability (a missing
/// `Nullable` means nullable, as CSDL says), and `id` as its only key.
#[tokio::test]
async fn metadata_declares_each_assignment_property_once_in_order_with_its_type() {
    let app = TestApp::spawn().await;
    let xml = metadata(&app, "/beta").await;
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let schemas: Vec<_> = doc
        .descendants()
        .filter(|n| {
            n.has_tag_name((EDM, "Schema")) && n.attribute("Namespace") == Some("microsoft.graph")
        })
        .collect();
    assert_eq!(schemas.len(), 1, "one microsoft.graph schema");
    let entities: Vec<_> = schemas[0]
        .children()
        .filter(|n| {
            n.has_tag_name((EDM, "EntityType"))
                && n.attribute("Name") == Some("accessPackageAssignment")
        })
        .collect();
    assert_eq!(entities.len(), 1, "one EntityType accessPackageAssignment");
    let entity = entities[0];

    let declared: Vec<(String, String, bool)> = entity
        .children()
        .filter(|n| n.has_tag_name((EDM, "Property")))
        .map(|p| {
            let nullable = match p.attribute("Nullable") {
                None | Some("true") => true,
                Some("false") => false,
                Some(other) => panic!("Nullable=\"{other}\""),
            };
            (
                p.attribute("Name").expect("a Name").to_owned(),
                p.attribute("Type").expect("a Type").to_owned(),
                nullable,
            )
        })
        .collect();
    let expected: Vec<(String, String, bool)> = ASSIGNMENT_PROPERTIES
        .iter()
        .map(|&(name, edm_type, nullable)| (name.to_owned(), edm_type.to_owned(), nullable))
        .collect();
    assert_eq!(declared, expected, "{xml}");
    let keys: Vec<_> = entity
        .children()
        .filter(|n| n.has_tag_name((EDM, "Key")))
        .collect();
    assert_eq!(keys.len(), 1, "one Key");
    let key: Vec<&str> = keys[0]
        .children()
        .filter(|n| n.is_element())
        .map(|r| {
            assert!(r.has_tag_name((EDM, "PropertyRef")), "{r:?}");
            r.attribute("Name").expect("a PropertyRef Name")
        })
        .collect();
    assert_eq!(key, ["id"]);
}
