//! Hostile and malformed HTTP requests against one running app: each answers its
//! exact status and Graph error code (never a 5xx, never a non-Graph body), and the
//! app keeps serving afterwards. Plus: valid Unicode of up to 1024 characters
//! round-trips exactly through create, get and an exact-match filter (none of it
//! may be refused), and NUL is refused with 400 naming the property.

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use entitlement_gateway::auth::{READ_ALL, READ_WRITE_ALL, SigningKey};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{COLLECTION, SEED_REQUEST, TestApp, assert_graph_error};

/// An id no test ever creates.
const UNKNOWN_ID: &str = "0b0e7a1e-5a5e-4f1d-9c0d-7e57ab1e0000";

/// Who the request claims to be.
#[derive(Clone)]
enum Auth {
    /// The app's ReadWrite.All token.
    Write,
    /// A Read.All token.
    Read,
    /// A token of the app's key with these scopes.
    Scopes(&'static [&'static str]),
    /// No Authorization header.
    Missing,
    /// This exact Authorization header value.
    Raw(String),
}

/// One request and the error it must get.
struct Case {
    what: String,
    method: Method,
    /// After the origin, e.g. `/beta/identityGovernance/...`.
    path: String,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    auth: Auth,
    status: u16,
    code: &'static str,
    /// Substrings the message must contain.
    needles: Vec<String>,
}

impl Case {
    fn new(what: impl Into<String>, method: Method, path: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            method,
            path: path.into(),
            content_type: None,
            headers: Vec::new(),
            body: None,
            auth: Auth::Write,
            status: 400,
            code: "BadRequest",
            needles: Vec::new(),
        }
    }

    /// A create with this body, as JSON, expected to be a 400.
    fn post(what: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        let mut case = Self::new(what, Method::POST, format!("/beta{COLLECTION}"));
        case.content_type = Some("application/json".into());
        case.body = Some(body.into());
        case
    }

    /// A GET of the collection with this query string.
    fn list(query: impl Into<String>) -> Self {
        let query = query.into();
        Self::new(
            format!("GET ?{query}"),
            Method::GET,
            format!("/beta{COLLECTION}?{query}"),
        )
    }

    /// A request on the item with this (raw, already encoded) id segment.
    fn item(method: Method, id: &str) -> Self {
        Self::new(
            format!("{method} item {id}"),
            method,
            format!("/beta{COLLECTION}/{id}"),
        )
    }

    fn named(mut self, what: impl Into<String>) -> Self {
        self.what = what.into();
        self
    }

    fn expect(mut self, status: u16, code: &'static str) -> Self {
        self.status = status;
        self.code = code;
        self
    }

    fn needle(mut self, needle: impl Into<String>) -> Self {
        self.needles.push(needle.into());
        self
    }

    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    fn content_type(mut self, content_type: Option<&str>) -> Self {
        self.content_type = content_type.map(str::to_owned);
        self
    }

    fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The seed request with `property` set to `value`.
fn with(property: &str, value: Value) -> String {
    let mut body: Value = serde_json::from_str(SEED_REQUEST).unwrap();
    body[property] = value;
    body.to_string()
}

/// The seed request with `property` set to the raw JSON text `raw`.
fn with_raw(property: &str, raw: &str) -> Vec<u8> {
    let mut body: Value = serde_json::from_str(SEED_REQUEST).unwrap();
    body.as_object_mut().unwrap().remove(property);
    let text = body.to_string();
    let mut out = format!("{{\"{property}\":").into_bytes();
    out.extend_from_slice(raw.as_bytes());
    out.push(b',');
    out.extend_from_slice(&text.as_bytes()[1..]);
    out
}

/// The same, with raw bytes (which need not be UTF-8).
fn with_raw_bytes(property: &str, raw: &[u8]) -> Vec<u8> {
    let placeholder = "\"__RAW__\"";
    let text = String::from_utf8(with_raw(property, placeholder)).unwrap();
    let (head, tail) = text.split_once(placeholder).unwrap();
    [head.as_bytes(), raw, tail.as_bytes()].concat()
}

fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn nested_objects(key: &str, depth: usize) -> String {
    format!(
        "{}1{}",
        format!("{{\"{key}\":").repeat(depth),
        "}".repeat(depth)
    )
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A token signed with the app's own secret but with these claims, for tokens
/// `SigningKey::issue` cannot make (wrong audience or issuer, no expiry, ...).
fn forge(app: &TestApp, header: jsonwebtoken::Header, claims: &Value) -> String {
    let text = std::fs::read_to_string(app.data_dir.path().join("signing-key")).unwrap();
    let secret = STANDARD.decode(text.trim()).unwrap();
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap()
}

/// Claims as the app's key issues them, valid now for 10 minutes.
fn claims() -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({
        "iss": "entitlement-gateway",
        "aud": "entitlement-gateway",
        "sub": "hostile",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "scp": READ_WRITE_ALL,
    })
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Every case of the table.
fn cases(app: &TestApp, existing_id: &str) -> Vec<Case> {
    let mut cases = Vec::new();

    // Every property with every wrong JSON type.
    let properties = [
        "id",
        "catalogId",
        "accessPackageId",
        "assignmentPolicyId",
        "targetId",
        "assignmentStatus",
        "assignmentState",
        "isExtended",
        "expiredDateTime",
        "@odata.type",
    ];
    for property in properties {
        let mut wrong = vec![
            ("number", json!(5)),
            ("negative float", json!(-1.5)),
            ("array", json!(["x"])),
            ("empty array", json!([])),
            ("object", json!({"x": 1})),
            ("empty object", json!({})),
        ];
        if property == "isExtended" {
            wrong.push(("string", json!("true")));
            wrong.push(("empty string", json!("")));
        } else {
            wrong.push(("bool", json!(false)));
        }
        for (kind, value) in wrong {
            cases.push(
                Case::post(format!("{property} as {kind}"), with(property, value))
                    .needle(format!("'{property}'")),
            );
        }
    }
    // Null for a required property (or the type annotation).
    for property in ["accessPackageId", "assignmentPolicyId", "targetId"] {
        cases.push(
            Case::post(format!("{property} null"), with(property, Value::Null))
                .needle(format!("'{property}'"))
                .needle("required"),
        );
    }
    cases.push(
        Case::post("@odata.type null", with("@odata.type", Value::Null))
            .needle("could not be resolved"),
    );
    // Empty strings.
    for property in ["accessPackageId", "assignmentPolicyId", "targetId"] {
        cases.push(
            Case::post(format!("{property} empty"), with(property, json!("")))
                .needle(format!("'{property}'"))
                .needle("must not be empty"),
        );
    }
    cases.push(
        Case::post("id empty", with("id", json!("")))
            .needle("'id'")
            .needle("not a GUID"),
    );
    cases.push(
        Case::post("expiredDateTime empty", with("expiredDateTime", json!("")))
            .needle("'expiredDateTime'"),
    );
    cases.push(
        Case::post("@odata.type empty", with("@odata.type", json!("")))
            .needle("could not be resolved"),
    );
    // Over-long strings: 1025 characters, in ASCII and in 2- and 4-byte characters.
    for property in [
        "catalogId",
        "accessPackageId",
        "assignmentPolicyId",
        "targetId",
        "assignmentStatus",
        "assignmentState",
    ] {
        cases.push(
            Case::post(
                format!("{property} 1025 chars"),
                with(property, json!("x".repeat(1025))),
            )
            .needle(format!("'{property}'"))
            .needle("longer than 1024"),
        );
    }
    cases.push(
        Case::post(
            "targetId 1025 x é",
            with("targetId", json!("é".repeat(1025))),
        )
        .needle("'targetId'")
        .needle("longer than 1024"),
    );
    cases.push(
        Case::post(
            "targetId 1025 x 😀",
            with("targetId", json!("😀".repeat(1025))),
        )
        .needle("'targetId'")
        .needle("longer than 1024"),
    );
    cases.push(
        Case::post("id 1025 chars", with("id", json!("a".repeat(1025))))
            .needle("'id'")
            .needle("not a GUID"),
    );
    cases.push(
        Case::post(
            "expiredDateTime 1025 chars",
            with("expiredDateTime", json!("2".repeat(1025))),
        )
        .needle("'expiredDateTime'"),
    );
    cases.push(
        Case::post(
            "@odata.type 1025 chars",
            with("@odata.type", json!("#".repeat(1025))),
        )
        .needle("could not be resolved"),
    );
    // Invalid UTF-8 and lone surrogates.
    let unreadable = "Unable to read JSON request payload";
    for (what, raw) in [
        ("0xFF in a string", &b"\"\xff\""[..]),
        ("truncated 2-byte sequence", b"\"\xc3\""),
        ("overlong encoding of '/'", b"\"\xc0\xaf\""),
        ("UTF-8-encoded surrogate (CESU-8)", b"\"\xed\xa0\x80\""),
        ("code point above U+10FFFF", b"\"\xf4\x90\x80\x80\""),
    ] {
        cases.push(Case::post(what, with_raw_bytes("targetId", raw)).needle(unreadable));
    }
    cases.push(
        Case::post("0xFF in a key", b"{\"target\xffId\": \"t\"}".to_vec()).needle(unreadable),
    );
    cases.push(
        Case::post("a UTF-16 body", {
            let text = with("targetId", json!("t"));
            let mut bytes = vec![0xFF, 0xFE];
            bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
            bytes
        })
        .needle(unreadable),
    );
    cases.push(
        Case::post(
            "a UTF-8 byte order mark before the body",
            [&b"\xef\xbb\xbf"[..], SEED_REQUEST.as_bytes()].concat(),
        )
        .needle(unreadable),
    );
    for (what, raw) in [
        ("lone high surrogate", r#""\ud800""#),
        ("lone low surrogate", r#""\udc00""#),
        ("high surrogate then a letter", r#""\ud800\u0041""#),
        ("two high surrogates", r#""\ud800\ud800""#),
        ("a raw tab inside a string", "\"a\tb\""),
        ("a raw newline inside a string", "\"a\nb\""),
        ("a bad escape", r#""\x41""#),
        ("a short \\u escape", r#""\u41""#),
    ] {
        cases.push(Case::post(what, with_raw("targetId", raw)).needle(unreadable));
    }
    // Duplicates.
    for (what, body) in [
        (
            "duplicate targetId",
            r#"{"accessPackageId":"p","assignmentPolicyId":"q","targetId":"a","targetId":"a"}"#,
        ),
        (
            "duplicate targetId, one escaped",
            r#"{"accessPackageId":"p","assignmentPolicyId":"q","targetId":"a","target\u0049d":"b"}"#,
        ),
        (
            "duplicate isExtended",
            r#"{"accessPackageId":"p","assignmentPolicyId":"q","targetId":"a","isExtended":true,"isExtended":false}"#,
        ),
        (
            "duplicate @odata.type",
            r##"{"@odata.type":"#microsoft.graph.accessPackageAssignment","accessPackageId":"p","assignmentPolicyId":"q","targetId":"a","@odata.type":"#microsoft.graph.accessPackageAssignment"}"##,
        ),
        (
            "duplicate id, null then a GUID",
            r#"{"id":null,"accessPackageId":"p","assignmentPolicyId":"q","targetId":"a","id":"e4383339-3339-e438-3933-38e4393338e4"}"#,
        ),
    ] {
        cases.push(Case::post(what, body).needle("Multiple properties with the name"));
    }
    // Unknown properties, by case and by spelling.
    for (what, key) in [
        ("TargetId (case)", "TargetId"),
        ("a NUL key", "\\u0000"),
        ("an empty key", ""),
        ("principal (Graph's navigation)", "principal"),
        ("@odata.id", "@odata.id"),
    ] {
        let body = format!(
            r#"{{"accessPackageId":"p","assignmentPolicyId":"q","targetId":"t","{key}":1}}"#
        );
        cases.push(
            Case::post(format!("unknown property {what}"), body).needle("does not exist on type"),
        );
    }
    let long_key = "k".repeat(100_000);
    cases.push(
        Case::post(
            "unknown 100000-char property",
            format!(r#"{{"{long_key}":1}}"#),
        )
        .needle("does not exist on type"),
    );
    // Deep nesting, as a property's value and as the body.
    cases.push(
        Case::post(
            "10000 nested arrays as targetId",
            with_raw("targetId", &nested_arrays(10_000)),
        )
        .needle("'targetId'"),
    );
    cases.push(
        Case::post(
            "10000 nested objects as catalogId",
            with_raw("catalogId", &nested_objects("a", 10_000)),
        )
        .needle("'catalogId'"),
    );
    // @odata.context is ignored, but it is a context URL: not any JSON value.
    cases.push(
        Case::post(
            "10000 nested arrays as @odata.context",
            with_raw("@odata.context", &nested_arrays(10_000)),
        )
        .needle("'@odata.context'"),
    );
    cases.push(
        Case::post(
            "@odata.context as a number",
            with("@odata.context", json!(5)),
        )
        .needle("'@odata.context'"),
    );
    cases.push(
        Case::post("10000 nested arrays as the body", nested_arrays(10_000)).needle("JSON object"),
    );
    cases.push(
        Case::post("10000 unclosed arrays as the body", "[".repeat(10_000)).needle("JSON object"),
    );
    cases.push(
        Case::post(
            "10000 nested objects as the body",
            nested_objects("@odata.context", 10_000),
        )
        .needle("'@odata.context'"),
    );
    // Other bodies that are no object.
    for (what, body) in [
        ("empty body", ""),
        ("whitespace body", " \n\t "),
        ("null body", "null"),
        ("string body", "\"x\""),
        ("number body", "1"),
        ("truncated object", "{\"targetId\": \"t\""),
        (
            "trailing comma",
            "{\"accessPackageId\":\"p\",\"assignmentPolicyId\":\"q\",\"targetId\":\"t\",}",
        ),
        ("two objects", "{} {}"),
        (
            "trailing garbage",
            "{\"accessPackageId\":\"p\",\"assignmentPolicyId\":\"q\",\"targetId\":\"t\"}x",
        ),
        ("single quotes", "{'targetId': 't'}"),
        ("comment", "{/* */\"targetId\": \"t\"}"),
        ("NaN", "{\"isExtended\": NaN}"),
    ] {
        let needle = if matches!(body, "null" | "\"x\"" | "1") {
            "JSON object"
        } else {
            unreadable
        };
        cases.push(Case::post(what, body).needle(needle));
    }
    // Huge numbers.
    // Beyond f64: not readable as JSON numbers at all; the message says where.
    for (property, raw) in [("catalogId", "1e400"), ("isExtended", "-1e400")] {
        cases.push(
            Case::post(format!("{property} = {raw}"), with_raw(property, raw))
                .needle("number out of range at line 1"),
        );
    }
    for (property, raw) in [
        ("targetId", "1180591620717411303424"),
        ("expiredDateTime", "1180591620717411303424"),
        ("isExtended", "18446744073709551616"),
        ("id", "-9223372036854775809"),
    ] {
        cases.push(
            Case::post(format!("{property} = {raw}"), with_raw(property, raw))
                .needle(format!("'{property}'")),
        );
    }
    cases.push(
        Case::post(
            "a 100000-digit number",
            with_raw("catalogId", &"9".repeat(100_000)),
        )
        .needle("number out of range at line 1"),
    );
    // Bad dates.
    for (what, text, reason) in [
        ("no offset", "2017-01-01T00:03:03.9221806", "no UTC offset"),
        (
            "8 fractional digits",
            "2017-01-01T00:03:03.92218061+03:00",
            "100 ns",
        ),
        (
            "Feb 30",
            "2017-02-30T00:00:00Z",
            "not a valid calendar date",
        ),
        (
            "Feb 29 of a common year",
            "2017-02-29T00:00:00Z",
            "not a valid calendar date",
        ),
        (
            "month 13",
            "2017-13-01T00:00:00Z",
            "not a valid calendar date",
        ),
        (
            "hour 24",
            "2017-01-01T24:00:00Z",
            "not a valid calendar date or time",
        ),
        (
            "leap second",
            "2016-12-31T23:59:60Z",
            "not a valid calendar date or time",
        ),
        (
            "offset minutes 60",
            "2017-01-01T00:00:00+01:60",
            "not a valid calendar date or time",
        ),
        (
            "offset +15:00",
            "2017-01-01T00:00:00+15:00",
            "outside ±14:00",
        ),
        (
            "offset -14:01",
            "2017-01-01T00:00:00-14:01",
            "outside ±14:00",
        ),
        ("year 0000", "0000-01-01T00:00:00Z", "outside 0001-01-01"),
        (
            "before year 1 in UTC",
            "0001-01-01T00:00:00+01:00",
            "outside 0001-01-01",
        ),
        (
            "after 9999 in UTC",
            "9999-12-31T23:59:59-01:00",
            "outside 0001-01-01",
        ),
        ("garbage", "yesterday", "not an RFC 3339 date-time"),
        ("date only", "2017-01-01", "not an RFC 3339 date-time"),
        (
            "space instead of T",
            "2017-01-01 00:03:03Z",
            "not an RFC 3339 date-time",
        ),
        (
            "offset without colon",
            "2017-01-01T00:03:03+0300",
            "not an RFC 3339 date-time",
        ),
        (
            "empty fraction",
            "2017-01-01T00:03:03.Z",
            "not an RFC 3339 date-time",
        ),
        (
            "one-digit month",
            "2017-1-01T00:03:03Z",
            "not an RFC 3339 date-time",
        ),
        (
            "trailing space",
            "2017-01-01T00:03:03Z ",
            "not an RFC 3339 date-time",
        ),
        (
            "leading space",
            " 2017-01-01T00:03:03Z",
            "not an RFC 3339 date-time",
        ),
        (
            "full-width digits",
            "２０１７-01-01T00:03:03Z",
            "not an RFC 3339 date-time",
        ),
        (
            "Arabic-Indic fraction",
            "2017-01-01T00:03:03.٣Z",
            "not an RFC 3339 date-time",
        ),
        (
            "signed year",
            "+2017-01-01T00:03:03Z",
            "not an RFC 3339 date-time",
        ),
        (
            "NUL inside",
            "2017-01-01T00:03:03\u{0}Z",
            "not an RFC 3339 date-time",
        ),
    ] {
        cases.push(
            Case::post(
                format!("expiredDateTime {what}"),
                with("expiredDateTime", json!(text)),
            )
            .needle("'expiredDateTime'")
            .needle(reason),
        );
    }
    // Bad GUIDs as the id.
    for (what, id) in [
        ("short", "e4383339-3339-e438-3933-38e4393338e"),
        ("braces", "{e4383339-3339-e438-3933-38e4393338e4}"),
        ("non-hex", "g4383339-3339-e438-3933-38e4393338e4"),
        ("no hyphens", "e43833393339e438393338e4393338e4"),
        ("urn", "urn:uuid:e4383339-3339-e438-3933-38e4393338e4"),
        ("padded", " e4383339-3339-e438-3933-38e4393338e4 "),
        ("hyphens moved", "e438333-93339-e438-3933-38e4393338e4"),
        ("full-width", "ｅ4383339-3339-e438-3933-38e4393338e4"),
    ] {
        cases.push(
            Case::post(format!("id {what}"), with("id", json!(id)))
                .needle("'id'")
                .needle("not a GUID"),
        );
    }
    // Bad @odata.type.
    for (what, name) in [
        ("another type", "#microsoft.graph.user"),
        ("another case", "#Microsoft.Graph.AccessPackageAssignment"),
        (
            "a derived-looking name",
            "#microsoft.graph.accessPackageAssignmentRequest",
        ),
        (
            "a trailing space",
            "#microsoft.graph.accessPackageAssignment ",
        ),
        ("two hashes", "##microsoft.graph.accessPackageAssignment"),
    ] {
        cases.push(
            Case::post(
                format!("@odata.type {what}"),
                with("@odata.type", json!(name)),
            )
            .needle("could not be resolved"),
        );
    }
    // NUL in every string property.
    for property in [
        "catalogId",
        "accessPackageId",
        "assignmentPolicyId",
        "targetId",
        "assignmentStatus",
        "assignmentState",
    ] {
        cases.push(
            Case::post(
                format!("{property} with NUL"),
                with(property, json!("a\u{0}b")),
            )
            .needle(format!("'{property}'"))
            .needle("NUL"),
        );
    }
    // A create with a taken id and other content.
    cases.push(
        Case::post(
            "an existing id with other content",
            with("id", json!(existing_id)).replace("Target Id value", "someone else"),
        )
        .expect(409, "Conflict")
        .needle(existing_id),
    );

    // Content types.
    for content_type in [
        Some("text/plain"),
        None,
        Some("application/json; charset=latin1"),
        Some("application/json; charset=utf-16"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
        Some("application/json-patch+json"),
        Some("application/json, text/plain"),
        Some(""),
    ] {
        cases.push(
            Case::post(format!("Content-Type {content_type:?}"), SEED_REQUEST)
                .content_type(content_type)
                .expect(415, "UnsupportedMediaType")
                .needle("Content-Type: application/json"),
        );
    }
    // Too large.
    cases.push(
        Case::post(
            "a body over 1 MiB",
            format!(r#"{{"catalogId": "{}"}}"#, "x".repeat(1024 * 1024)),
        )
        .expect(413, "RequestEntityTooLarge")
        .needle("1 MiB"),
    );
    cases.push(
        Case::post("a body of 1 MiB + 1 byte of spaces", {
            let mut body = SEED_REQUEST.as_bytes().to_vec();
            body.resize(1024 * 1024 + 1, b' ');
            body
        })
        .expect(413, "RequestEntityTooLarge"),
    );

    // Methods.
    let collection = format!("/beta{COLLECTION}");
    let item = format!("/beta{COLLECTION}/{existing_id}");
    for (method, path) in [
        (Method::PUT, &collection),
        (Method::PATCH, &collection),
        (Method::DELETE, &collection),
        (Method::POST, &item),
        (Method::PUT, &item),
        (Method::PATCH, &item),
        (Method::OPTIONS, &collection),
        (Method::TRACE, &item),
        (Method::from_bytes(b"FOO").unwrap(), &collection),
    ] {
        cases.push(
            Case::new(format!("{method} {path}"), method, path.clone())
                .expect(405, "MethodNotAllowed"),
        );
    }
    cases.push(
        Case::new("GET $ref", Method::GET, format!("/beta{COLLECTION}/$ref"))
            .expect(405, "MethodNotAllowed"),
    );

    // Unknown paths.
    for path in [
        "/".to_owned(),
        "/beta/users".to_owned(),
        format!("/v2.0{COLLECTION}"),
        format!("/BETA{COLLECTION}"),
        format!("/beta{COLLECTION}/{existing_id}/extra"),
        format!("/beta{COLLECTION}/{existing_id}/$ref"),
        format!(
            "/beta/identityGovernance/entitlementManagement/accessPackageAssignment/{existing_id}"
        ),
        format!("/beta{COLLECTION}%2F{existing_id}"),
        format!("/beta/{}", "a/".repeat(2000)),
    ] {
        cases.push(
            Case::new(
                format!("GET {}", &path[..path.len().min(100)]),
                Method::GET,
                path,
            )
            .expect(404, "Request_ResourceNotFound"),
        );
    }

    // Bad query options on the list.
    let deep = format!("{}targetId eq 'a'{}", "(".repeat(100), ")".repeat(100));
    let wide = vec!["targetId eq 'a'"; 100].join(" or ");
    let long = format!("targetId eq '{}'", "a".repeat(5000));
    for (query, needle) in [
        ("$top=abc".to_owned(), "'$top'"),
        ("$top=0".to_owned(), "'$top'"),
        ("$top=5000".to_owned(), "$top"),
        ("$top=-1".to_owned(), "$top"),
        ("$top=1.5".to_owned(), "'$top'"),
        ("$top=2147483648".to_owned(), "'$top'"),
        ("$top=".to_owned(), "'$top'"),
        ("$TOP=abc".to_owned(), "'$top'"),
        ("$top=1&$top=2".to_owned(), "more than once"),
        (
            "$expand=accessPackage".to_owned(),
            "'$expand' is not supported",
        ),
        ("$search=x".to_owned(), "'$search' is not supported"),
        ("$skip=1".to_owned(), "'$skip' is not supported"),
        ("$format=xml".to_owned(), "'$format' is not supported"),
        ("$count=maybe".to_owned(), "'$count'"),
        ("$count=1".to_owned(), "'$count'"),
        ("$select=manager".to_owned(), "'manager'"),
        ("$select=".to_owned(), "$select"),
        ("$select=targetId,,catalogId".to_owned(), "$select"),
        ("$select=targetIds".to_owned(), "'targetIds'"),
        // Without `$` (beta): the same options, never ignored.
        ("filter=targetId%20eq".to_owned(), "expected a value"),
        ("top=abc".to_owned(), "'$top'"),
        ("Top=0".to_owned(), "'$top'"),
        (
            "expand=target".to_owned(),
            "'$expand' (as 'expand') is not supported",
        ),
        (
            "search=x".to_owned(),
            "'$search' (as 'search') is not supported",
        ),
        ("filter=a&$filter=b".to_owned(), "more than once"),
        ("$TOP=1&top=2".to_owned(), "more than once"),
        ("foo=bar".to_owned(), "'foo' is not supported"),
        ("api-version=2".to_owned(), "'api-version' is not supported"),
        ("=x".to_owned(), "'' is not supported"),
        ("$orderby=targetId".to_owned(), "$orderby"),
        ("$orderby=id%20sideways".to_owned(), "sideways"),
        ("$orderby=id%20asc%20extra".to_owned(), "extra"),
        ("$orderby=id,expiredDateTime".to_owned(), "$orderby"),
        ("$filter=targetId%20eq".to_owned(), "expected a value"),
        (
            format!("$filter={}", urlencode("targetId eq 'a")),
            "not closed",
        ),
        (
            format!("$filter={}", urlencode("(targetId eq 'a'")),
            "expected ')'",
        ),
        (
            format!("$filter={}", urlencode("targetId eq 'a')")),
            "expected 'and', 'or'",
        ),
        (
            format!("$filter={}", urlencode("targetId eq 'a' and")),
            "expected a property name",
        ),
        (
            format!("$filter={}", urlencode("targetId lt 'a'")),
            "only be compared with eq or ne",
        ),
        (
            format!("$filter={}", urlencode("startswith(targetId,'a')")),
            "startswith",
        ),
        (
            format!("$filter={}", urlencode("not targetId eq 'a'")),
            "'not'",
        ),
        (format!("$filter={}", urlencode("foo eq 1")), "'foo'"),
        (
            format!("$filter={}", urlencode("id eq 'nope'")),
            "not a GUID",
        ),
        (
            format!("$filter={}", urlencode("isExtended eq 'true'")),
            "not a valid value",
        ),
        (
            format!(
                "$filter={}",
                urlencode("expiredDateTime gt 2030-02-30T00:00:00Z")
            ),
            "Edm.DateTimeOffset",
        ),
        (
            format!("$filter={}", urlencode("expiredDateTime gt null")),
            "null can only",
        ),
        (format!("$filter={}", urlencode(&deep)), "nested deeper"),
        (
            format!("$filter={}", urlencode(&wide)),
            "more than 64 comparisons",
        ),
        (
            format!("$filter={}", urlencode(&long)),
            "longer than 4096 bytes",
        ),
        ("$filter=%FF".to_owned(), "$filter"),
        ("$filter=%00".to_owned(), "$filter"),
        ("$skiptoken=forged".to_owned(), "$skiptoken"),
        ("$skiptoken=%00%FF".to_owned(), "$skiptoken"),
        (format!("$skiptoken={}", "A".repeat(10_000)), "$skiptoken"),
        ("$skiptoken=a&$skiptoken=b".to_owned(), "more than once"),
        // Long caller text in an option: a 400 whose message quotes it shortly
        // (the service's error travels in gRPC headers, which are bounded).
        (format!("$orderby={}", "x".repeat(4500)), "$orderby"),
        (format!("$orderby=id%20{}", "x".repeat(4500)), "$orderby"),
        (
            format!(
                "$filter={}",
                urlencode(&format!("{} eq 'a'", "€".repeat(1000)))
            ),
            "is not a property",
        ),
        (
            format!(
                "$filter={}",
                urlencode(&format!("{} eq 'a'", "y".repeat(4000)))
            ),
            "is not a property",
        ),
    ] {
        cases.push(Case::list(query).needle(needle));
    }
    // On /v1.0 a system option needs its `$`.
    for (query, needle) in [
        ("filter=targetId%20eq%20'a'", "use '$filter'"),
        ("top=1", "use '$top'"),
        ("foo=bar", "'foo' is not supported"),
    ] {
        cases.push(
            Case::new(
                format!("GET /v1.0 ?{query}"),
                Method::GET,
                format!("/v1.0{COLLECTION}?{query}"),
            )
            .needle(needle),
        );
    }
    // The count: $filter only.
    for (query, needle) in [
        ("$search=x", "'$search' is not supported on a count"),
        ("$top=1", "'$top' is not supported on a count"),
        ("$count=true", "'$count' is not supported on a count"),
        ("foo=bar", "'foo' is not supported"),
        ("$filter=foo%20eq%201", "'foo'"),
        ("filter=a&$filter=b", "more than once"),
    ] {
        cases.push(
            Case::new(
                format!("GET $count?{query}"),
                Method::GET,
                format!("/beta{COLLECTION}/$count?{query}"),
            )
            .needle(needle),
        );
    }
    cases.push(
        Case::new(
            "GET $count without a token",
            Method::GET,
            format!("/beta{COLLECTION}/$count"),
        )
        .auth(Auth::Missing)
        .expect(401, "InvalidAuthenticationToken"),
    );
    cases.push(
        Case::new(
            "GET $count without the permission",
            Method::GET,
            format!("/beta{COLLECTION}/$count"),
        )
        .auth(Auth::Scopes(&["User.Read"]))
        .expect(403, "Authorization_RequestDenied"),
    );
    cases.push(
        Case::new(
            "POST $count",
            Method::POST,
            format!("/beta{COLLECTION}/$count"),
        )
        .expect(405, "MethodNotAllowed"),
    );

    // Tokens.
    let other_key = SigningKey::load_or_create(tempfile::tempdir().unwrap().path())
        .unwrap()
        .issue("x", &[READ_WRITE_ALL.to_owned()], Duration::from_secs(60))
        .unwrap();
    let own_key = SigningKey::load_or_create(app.data_dir.path()).unwrap();
    let ten_minutes_ago = jsonwebtoken::get_current_timestamp() - 600;
    let expired = own_key
        .issue_at(
            "x",
            &[READ_WRITE_ALL.to_owned()],
            ten_minutes_ago,
            Duration::from_secs(1),
        )
        .unwrap();
    let in_an_hour = jsonwebtoken::get_current_timestamp() + 3600;
    let not_yet = own_key
        .issue_at(
            "x",
            &[READ_WRITE_ALL.to_owned()],
            in_an_hour,
            Duration::from_secs(600),
        )
        .unwrap();
    let mut wrong_audience = claims();
    wrong_audience["aud"] = json!("https://graph.microsoft.com");
    let mut wrong_issuer = claims();
    wrong_issuer["iss"] = json!("https://sts.windows.net/x/");
    let mut no_expiry = claims();
    no_expiry.as_object_mut().unwrap().remove("exp");
    let hs256 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let hs512 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512);
    let alg_none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims().to_string().as_bytes())
    );
    let payload_swapped = {
        let token = app.token.clone();
        let parts: Vec<&str> = token.split('.').collect();
        let mut more = claims();
        more["scp"] = json!(format!("{READ_WRITE_ALL} Directory.ReadWrite.All"));
        format!(
            "{}.{}.{}",
            parts[0],
            b64url(more.to_string().as_bytes()),
            parts[2]
        )
    };
    let empty = "Access token is empty.";
    let invalid = "Access token validation failure.";
    for (what, authorization, message) in [
        ("none", None, empty),
        ("'Bearer'", Some("Bearer".to_owned()), empty),
        ("'Bearer '", Some("Bearer ".to_owned()), empty),
        ("Basic", Some("Basic x".to_owned()), empty),
        (
            "Basic with the token",
            Some(format!("Basic {}", app.token)),
            empty,
        ),
        ("the token without a scheme", Some(app.token.clone()), empty),
        ("garbage JWT", Some("Bearer not.a.jwt".to_owned()), invalid),
        ("garbage", Some("Bearer %%%%".to_owned()), invalid),
        (
            "another key's token",
            Some(format!("Bearer {other_key}")),
            invalid,
        ),
        (
            "an expired token",
            Some(format!("Bearer {expired}")),
            invalid,
        ),
        (
            "a token valid only in an hour",
            Some(format!("Bearer {not_yet}")),
            invalid,
        ),
        (
            "a token for another audience",
            Some(format!(
                "Bearer {}",
                forge(app, hs256.clone(), &wrong_audience)
            )),
            invalid,
        ),
        (
            "a token of another issuer",
            Some(format!(
                "Bearer {}",
                forge(app, hs256.clone(), &wrong_issuer)
            )),
            invalid,
        ),
        (
            "a token without exp",
            Some(format!("Bearer {}", forge(app, hs256.clone(), &no_expiry))),
            invalid,
        ),
        (
            "an HS512 token",
            Some(format!("Bearer {}", forge(app, hs512, &claims()))),
            invalid,
        ),
        ("alg none", Some(format!("Bearer {alg_none}")), invalid),
        (
            "payload swapped under the signature",
            Some(format!("Bearer {payload_swapped}")),
            invalid,
        ),
        (
            "the token with a char appended",
            Some(format!("Bearer {}x", app.token)),
            invalid,
        ),
        (
            "two tokens",
            Some(format!("Bearer {} {}", app.token, app.token)),
            invalid,
        ),
    ] {
        let auth = authorization.map_or(Auth::Missing, Auth::Raw);
        cases.push(
            Case::post(format!("token: {what}"), SEED_REQUEST)
                .auth(auth.clone())
                .expect(401, "InvalidAuthenticationToken")
                .needle(message),
        );
    }
    cases.push(
        Case::item(Method::GET, existing_id)
            .auth(Auth::Missing)
            .expect(401, "InvalidAuthenticationToken"),
    );
    cases.push(
        Case::post("a 64 KiB token", SEED_REQUEST)
            .auth(Auth::Raw(format!("Bearer {}", "a".repeat(64 * 1024))))
            .expect(431, "RequestHeaderFieldsTooLarge")
            .needle("16 KiB"),
    );
    // A token just under the gateway's header limit, which the gateway forwards
    // to the service: still the caller's problem, not a 500.
    cases.push(
        Case::item(Method::GET, UNKNOWN_ID)
            .named("a 16200-char token (under the gateway's 16 KiB header limit)")
            .auth(Auth::Raw(format!("Bearer {}", "a".repeat(16_200))))
            .expect(401, "InvalidAuthenticationToken"),
    );
    // (Many small headers over hyper's own limit of 100 are refused by hyper with a
    // bare 431 before the application sees the request; not a case here.)
    //
    // The gateway checks only that a token is there; the service verifies it. A
    // request the gateway itself must refuse (an unreadable body, a wrong content
    // type, a bad query option) is refused before the token is verified, and its
    // answer says nothing the API's documentation does not.
    cases.push(
        Case::post("a bad body with an expired token", "{")
            .auth(Auth::Raw(format!("Bearer {expired}")))
            .expect(400, "BadRequest"),
    );
    cases.push(
        Case::post("text/plain with another key's token", SEED_REQUEST)
            .content_type(Some("text/plain"))
            .auth(Auth::Raw(format!("Bearer {other_key}")))
            .expect(415, "UnsupportedMediaType"),
    );
    cases.push(
        Case::list("$top=abc")
            .auth(Auth::Raw(format!("Bearer {expired}")))
            .expect(400, "BadRequest"),
    );
    // With a well-formed request, a token that does not verify is a 401.
    cases.push(
        Case::post("a good body with an expired token", SEED_REQUEST)
            .auth(Auth::Raw(format!("Bearer {expired}")))
            .expect(401, "InvalidAuthenticationToken"),
    );
    cases.push(
        Case::item(Method::DELETE, "nope")
            .auth(Auth::Missing)
            .expect(401, "InvalidAuthenticationToken"),
    );

    // Permissions.
    cases.push(
        Case::post("create with Read.All", SEED_REQUEST)
            .auth(Auth::Read)
            .expect(403, "Authorization_RequestDenied")
            .needle(READ_WRITE_ALL),
    );
    cases.push(
        Case::item(Method::DELETE, existing_id)
            .auth(Auth::Read)
            .expect(403, "Authorization_RequestDenied")
            .needle(READ_WRITE_ALL),
    );
    cases.push(
        Case::item(Method::GET, existing_id)
            .auth(Auth::Scopes(&["User.Read"]))
            .expect(403, "Authorization_RequestDenied")
            .needle(READ_ALL),
    );
    cases.push(
        Case::list("")
            .auth(Auth::Scopes(&[]))
            .expect(403, "Authorization_RequestDenied")
            .needle(READ_ALL),
    );
    cases.push(
        Case::list("")
            .auth(Auth::Scopes(&["entitlementmanagement.read.all"]))
            .expect(403, "Authorization_RequestDenied"),
    );

    // Malformed and unknown ids.
    for id in [
        "nope",
        "e4383339-3339-e438-3933-38e4393338e",
        "e4383339-3339-e438-3933-38e4393338e4a",
        "%7Be4383339-3339-e438-3933-38e4393338e4%7D",
        "g4383339-3339-e438-3933-38e4393338e4",
        "e43833393339e438393338e4393338e4",
        "%20e4383339-3339-e438-3933-38e4393338e4",
        "e4383339-3339-e438-3933-38e4393338e4%00",
        "%27e4383339-3339-e438-3933-38e4393338e4%27",
        "...",
    ] {
        for method in [Method::GET, Method::DELETE] {
            cases.push(Case::item(method, id).needle("'id'").needle("not a GUID"));
        }
    }
    for method in [Method::GET, Method::DELETE] {
        cases.push(Case::item(method.clone(), "%FF").needle("percent-encoded UTF-8"));
        cases.push(
            Case::item(method, UNKNOWN_ID)
                .expect(404, "Request_ResourceNotFound")
                .needle(UNKNOWN_ID),
        );
    }

    // Hostile request ids are not echoed as is.
    cases.push(
        Case::item(Method::GET, "nope")
            .header("client-request-id", "\"},\"injected\":{\"x\":\"")
            .needle("'id'"),
    );
    cases.push(
        Case::item(Method::GET, "nope")
            .header("client-request-id", "x".repeat(10_000))
            .needle("'id'"),
    );

    cases
}

/// Sends `case` and checks its answer; returns why it failed, if it did.
async fn run(app: &TestApp, case: Case) -> Result<(), String> {
    let mut request = app.http.request(case.method.clone(), app.url(&case.path));
    request = match &case.auth {
        Auth::Write => request.bearer_auth(&app.token),
        Auth::Read => request.bearer_auth(app.read_token()),
        Auth::Scopes(scopes) => request.bearer_auth(app.mint(scopes)),
        Auth::Missing => request,
        Auth::Raw(value) => request.header("authorization", value),
    };
    if let Some(content_type) = &case.content_type {
        request = request.header("content-type", content_type);
    }
    for (name, value) in &case.headers {
        request = request.header(name.as_str(), value);
    }
    if let Some(body) = &case.body {
        request = request.body(body.clone());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{}: no response: {e}", case.what))?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("{}: the body broke off: {e}", case.what))?;
    check(&case, status, headers, bytes).await
}

/// Checks an answer against `case`; returns why it is wrong, if it is.
async fn check(
    case: &Case,
    status: http::StatusCode,
    headers: http::HeaderMap,
    bytes: bytes::Bytes,
) -> Result<(), String> {
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(600)]).into_owned();
    let mut what: String = case.what.chars().take(100).collect();
    if what.len() < case.what.len() {
        what.push('…');
    }
    let report = |why: &str| format!("{what}: {why}\n    got {status} {shown}");
    if status.is_server_error() {
        return Err(report("a 5xx"));
    }
    if case.status == 405 && status.as_u16() == 405 && !headers.contains_key("allow") {
        return Err(report("a 405 without an Allow header"));
    }
    if case.status == 401
        && status.as_u16() == 401
        && headers
            .get("www-authenticate")
            .is_none_or(|v| v != "Bearer")
    {
        return Err(report("a 401 without WWW-Authenticate: Bearer"));
    }
    // First a check that does not panic, so that one run reports every failing
    // case; then assert_graph_error for all that it checks besides.
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(body) => body,
        Err(_) => return Err(report("not a JSON body")),
    };
    let message = body["error"]["message"].as_str().unwrap_or_default();
    if status.as_u16() != case.status || body["error"]["code"] != case.code {
        return Err(report(&format!("expected {} {}", case.status, case.code)));
    }
    for needle in &case.needles {
        if !message.contains(needle.as_str()) {
            return Err(report(&format!("the message lacks {needle:?}")));
        }
    }
    if message.chars().count() > 1024 {
        return Err(report(&format!(
            "a message of {} chars",
            message.chars().count()
        )));
    }
    let mut rebuilt = http::Response::builder().status(status);
    for (name, value) in &headers {
        rebuilt = rebuilt.header(name, value);
    }
    let rebuilt: reqwest::Response = rebuilt.body(bytes).unwrap().into();
    assert_graph_error(rebuilt, case.status, case.code).await;
    Ok(())
}

#[tokio::test]
async fn hostile_requests_get_exact_graph_errors_and_the_server_keeps_serving() {
    let app = TestApp::spawn().await;
    let created = app.post_assignment("/beta", SEED_REQUEST).await;
    assert_eq!(created.status().as_u16(), 201);
    let existing: Value = created.json().await.unwrap();
    let existing_id = existing["id"].as_str().unwrap().to_owned();

    let cases = cases(&app, &existing_id);
    let total = cases.len();
    assert!(total >= 60, "{total} cases");
    let mut failures = Vec::new();
    for case in cases {
        if let Err(why) = run(&app, case).await {
            failures.push(why);
        }
    }

    for failure in &failures {
        eprintln!("FAILED {failure}");
    }

    // Still serving: a valid create, a valid read, a list.
    let response = app.post_assignment("/beta", SEED_REQUEST).await;
    assert_eq!(response.status().as_u16(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.get_assignment("/beta", &id).await.status().as_u16(),
        200
    );
    assert_eq!(
        app.get_assignment("/beta", &existing_id)
            .await
            .status()
            .as_u16(),
        200
    );
    let listed = app
        .http
        .get(app.url(&format!("/beta{COLLECTION}?$count=true")))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    let count = listed.json::<Value>().await.unwrap()["@odata.count"].clone();
    if count != 2 {
        failures.push(format!(
            "hostile requests created {} assignments (the count is {count}, not 2)",
            count.as_i64().unwrap_or_default() - 2
        ));
    }

    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Strings of valid Unicode within the 1024-character limit (emoji sequences,
/// bidi controls, noncharacters, private use, C0/C1 controls, combining marks, the
/// longest allowed) round-trip exactly through create, get and a `$filter` for the
/// exact value: every one is a legal value, so a refusal fails the test. NUL is
/// refused with 400, naming the property and U+0000. (Over-long strings are among
/// the hostile requests.)
#[tokio::test]
async fn valid_unicode_round_trips_exactly_and_nul_is_refused_with_400() {
    let app = TestApp::spawn().await;
    let samples = [
        "😀",
        "👩‍👩‍👧‍👦",
        "🏳️‍🌈",
        "👍🏽",
        "🇫🇷🇩🇪",
        "\u{200F}abc\u{202E}def\u{202C}",
        "\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}",
        "中文字符 日本語 한국어",
        "𠜎𠜱𠝹𠱓",
        "e\u{301}\u{302}\u{303}\u{304}\u{305}\u{306}\u{307}\u{308}",
        "Z\u{36B}\u{343}\u{36A}\u{302}\u{36B}\u{33D}\u{34F}\u{334}\u{319}\u{324}\u{31E}",
        "\u{FFFF}\u{FFFE}\u{FDD0}",
        "\u{10FFFF}\u{E000}\u{F8FF}",
        "tab\there\nnewline\r\nCRLF",
        "\u{1}\u{1F}\u{7F}\u{80}\u{85}\u{9F}",
        "\u{2028}\u{2029}",
        "\"quotes\" \\backslash\\ /slash/ 'single'",
        "</script><script>alert(1)</script>",
        "' OR 1=1 --",
        "%00%ff%s%n{0}",
        " leading and trailing spaces ",
        "\u{3000}",
        "ﷺ𒐫",
        "İıŞş ß ẞ ǅ",
        "\u{1F600}\u{FE0F}\u{20E3}",
    ];
    let long_ascii = "a".repeat(1024);
    let long_emoji = "😀".repeat(1024);
    let long_combining = "\u{301}".repeat(1024);
    let mut texts: Vec<String> = samples.iter().map(|s| (*s).to_owned()).collect();
    texts.extend([long_ascii, long_emoji, long_combining]);

    let properties = [
        "catalogId",
        "accessPackageId",
        "assignmentPolicyId",
        "targetId",
        "assignmentStatus",
        "assignmentState",
    ];
    let mut round_tripped = 0;
    for (i, text) in texts.iter().enumerate() {
        let property = properties[i % properties.len()];
        let body = with(property, json!(text));
        let response = app.post_assignment("/beta", body).await;
        match response.status().as_u16() {
            201 => {
                let created: Value = response.json().await.unwrap();
                assert_eq!(
                    created[property],
                    json!(text),
                    "{property} {text:?} as created"
                );
                let id = created["id"].as_str().unwrap();
                let read = app.get_assignment("/beta", id).await;
                assert_eq!(read.status().as_u16(), 200);
                let read: Value = read.json().await.unwrap();
                assert_eq!(read[property], json!(text), "{property} {text:?} as read");
                // And the list finds it by exact value.
                if text.len() > 3000 {
                    round_tripped += 1;
                    continue;
                }
                let filter = format!(
                    "{property} eq '{}' and id eq {id}",
                    text.replace('\'', "''")
                );
                let listed = app
                    .http
                    .get(app.url(&format!("/beta{COLLECTION}?$filter={}", urlencode(&filter))))
                    .bearer_auth(&app.token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(listed.status().as_u16(), 200, "{filter}");
                let listed: Value = listed.json().await.unwrap();
                assert_eq!(listed["value"].as_array().unwrap().len(), 1, "{filter}");
                round_tripped += 1;
            }
            other => panic!(
                "{property} {text:?} is valid and within the limit, but was answered {other}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }
    assert_eq!(round_tripped, texts.len(), "all valid Unicode is kept");

    for property in properties {
        for text in ["\u{0}", "a\u{0}", "\u{0}\u{0}\u{0}"] {
            let response = app
                .post_assignment("/beta", with(property, json!(text)))
                .await;
            let message = assert_graph_error(response, 400, "BadRequest").await;
            assert!(message.contains(&format!("'{property}'")), "{message}");
            assert!(message.contains("U+0000"), "{message}");
        }
    }
}

/// Sends raw bytes on a new connection and reads one response, for `within`.
async fn raw_exchange(
    addr: &str,
    request: &[u8],
    within: Duration,
) -> Result<(http::StatusCode, http::HeaderMap, bytes::Bytes), String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut received = Vec::new();
        let mut buffer = [0u8; 8192];
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).into_owned();
                let mut lines = head.split("\r\n");
                let status_line = lines.next().unwrap_or_default();
                let status = status_line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse::<u16>().ok())
                    .and_then(|s| http::StatusCode::from_u16(s).ok())
                    .ok_or_else(|| format!("not an HTTP response: {status_line:?}"))?;
                let mut headers = http::HeaderMap::new();
                for line in lines {
                    if let Some((name, value)) = line.split_once(':') {
                        headers.append(
                            http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                            http::HeaderValue::from_str(value.trim()).unwrap(),
                        );
                    }
                }
                let length: usize = headers
                    .get("content-length")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(0);
                if received.len() >= end + 4 + length {
                    let body = bytes::Bytes::copy_from_slice(&received[end + 4..end + 4 + length]);
                    return Ok((status, headers, body));
                }
            }
            let n = stream
                .read(&mut buffer)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "the connection was closed after {:?}",
                    String::from_utf8_lossy(&received)
                ));
            }
            received.extend_from_slice(&buffer[..n]);
        }
    };
    tokio::time::timeout(within, exchange)
        .await
        .map_err(|_| format!("no answer within {within:?}"))?
}

/// Clients that lie about their body or stall get a prompt 4xx (headers that never
/// end: a 408 or a closed connection), never a 5xx, and do not hold a connection
/// forever. On an app whose request timeout is 1 s.
#[tokio::test]
async fn lying_and_stalling_clients_get_a_prompt_4xx_or_a_closed_connection() {
    use entitlement_gateway::{Listeners, config::Role};

    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::serve_args(Role::All, dir.path(), &[]);
    config.request_timeout_secs = 1;
    let listeners = Listeners {
        http: Some(entitlement_gateway::listen(config.http_addr).unwrap()),
        grpc: Some(entitlement_gateway::listen(config.grpc_addr).unwrap()),
        admin: None,
    };
    let addr = listeners
        .http
        .as_ref()
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(entitlement_gateway::run(
        config,
        listeners,
        stop.clone().cancelled_owned(),
    ));
    let token = SigningKey::load_or_create(dir.path())
        .unwrap()
        .issue("x", &[READ_WRITE_ALL.to_owned()], Duration::from_secs(600))
        .unwrap();
    let post = |extra_headers: &str, body: &str| {
        format!(
            "POST /beta{COLLECTION} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n{extra_headers}\r\n{body}"
        )
        .into_bytes()
    };
    // Within the 1 s request timeout plus a generous margin for a slow machine.
    let within = Duration::from_secs(5);

    let cases = [
        (
            "Content-Length over 1 MiB with no body: refused on the declared length",
            post("Content-Length: 2000000\r\n", ""),
            Case::post("", "").expect(413, "RequestEntityTooLarge"),
        ),
        (
            "a body that stops half-way: the client's fault (408), not the upstream's (504)",
            post("Content-Length: 100\r\n", "{\"targetId\""),
            Case::post("", "").expect(408, "RequestTimeout"),
        ),
        (
            "headers that never end: answered or closed, not held open",
            format!("GET /beta{COLLECTION} HTTP/1.1\r\nHost: {addr}\r\nX-Slow: 1\r\n").into_bytes(),
            Case::post("", "").expect(408, "RequestTimeout"),
        ),
        (
            "Content-Length and Transfer-Encoding together",
            post(
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            Case::post("", "").needle("Unable to read JSON request payload"),
        ),
    ];
    let mut failures = Vec::new();
    for (what, request, mut expected) in cases {
        expected.what = what.to_owned();
        // Headers that never end may also just be closed (as a server with a
        // header read timeout does); everything else must be answered.
        let may_close = what.starts_with("headers that never end");
        let outcome = match raw_exchange(&addr, &request, within).await {
            Ok((status, headers, body)) => check(&expected, status, headers, body).await,
            Err(why) if may_close && why.starts_with("the connection was closed after \"\"") => {
                Ok(())
            }
            Err(why) => Err(format!("{what}: {why}")),
        };
        if let Err(why) = outcome {
            eprintln!("FAILED {why}");
            failures.push(why);
        }
    }

    // Still serving.
    let (status, _, _) = raw_exchange(
        &addr,
        &post(
            &format!("Content-Length: {}\r\n", SEED_REQUEST.len()),
            SEED_REQUEST,
        ),
        within,
    )
    .await
    .unwrap();
    assert_eq!(status.as_u16(), 201);
    stop.cancel();
    task.await.unwrap().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
