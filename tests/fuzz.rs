//! Property tests ("fuzzing" on stable) of the two parsers that read caller input
//! before anything else does: the Graph JSON body (`parse_assignment`) and the
//! OData `$filter` (`filter::parse`).
//!
//! 2,000 cases per property by default; `PROPTEST_CASES=N` runs N instead. Failures
//! are not persisted to files: proptest prints the minimal failing input.

use entitlement_gateway::{
    domain::{
        DateTimeOffset, Property,
        filter::{self, Filter, Op, Value as Literal},
    },
    http::graph_json::{parse_assignment, write_assignment},
    proto::v1::AccessPackageAssignment,
};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;

const DEFAULT_CASES: u32 = 2_000;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        failure_persistence: None,
        // Shrinking is bounded in time, not only in iterations.
        max_shrink_time: 60_000,
        ..Config::default()
    }
}

const ODATA_TYPE: &str = "#microsoft.graph.accessPackageAssignment";

// ---------------------------------------------------------------------------
// Strategies: JSON values, property values, bodies.
// ---------------------------------------------------------------------------

/// Strings that stress a parser: any Unicode, control characters, NUL, lengths
/// around the 1024-character limit.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        2 => "[a-zA-Z0-9 ._-]{0,20}",
        1 => "[\\x00-\\x1f\"\\\\/'\u{7f}\u{200f}\u{202e}\u{ffff}\u{fffd}😀]{0,8}",
        1 => (1020usize..1030, prop::sample::select(vec!['x', 'é', '😀']))
            .prop_map(|(n, c)| std::iter::repeat_n(c, n).collect()),
    ]
}

/// An arbitrary JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Date-time texts near the valid form: each part in or just beyond its range,
/// 0 to 9 fractional digits, Z, an offset, or nothing.
fn date_text() -> impl Strategy<Value = String> {
    let year = prop_oneof![0u32..=2, 1u32..=9999, 9997u32..=9999];
    let fraction = prop_oneof![Just(String::new()), "\\.[0-9]{0,9}"];
    let offset = prop_oneof![
        Just("Z".to_owned()),
        Just("z".to_owned()),
        Just(String::new()),
        (prop::bool::ANY, 0u32..=16, 0u32..=61)
            .prop_map(|(minus, h, m)| format!("{}{h:02}:{m:02}", if minus { '-' } else { '+' })),
        "[+-][0-9]{4}",
    ];
    let well_formed = (
        year,
        0u32..=13,
        0u32..=32,
        prop::sample::select(vec!['T', 't', ' ']),
        0u32..=25,
        0u32..=60,
        0u32..=61,
        fraction,
        offset,
    )
        .prop_map(|(y, mo, d, t, h, mi, s, f, o)| {
            format!("{y:04}-{mo:02}-{d:02}{t}{h:02}:{mi:02}:{s:02}{f}{o}")
        });
    prop_oneof![
        8 => well_formed,
        1 => "[0-9T:Zz.+-]{0,30}",
        1 => text(),
    ]
}

fn valid_guid_text() -> impl Strategy<Value = String> {
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
}

/// Date-times that are valid by construction.
fn valid_date_text() -> impl Strategy<Value = String> {
    (
        2u32..=9998,
        1u32..=12,
        1u32..=28,
        0u32..=23,
        0u32..=59,
        0u32..=59,
        prop_oneof![Just(String::new()), "\\.[0-9]{1,7}"],
        prop_oneof![
            Just("Z".to_owned()),
            (prop::bool::ANY, 0u32..=13, 0u32..=59).prop_map(|(minus, h, m)| format!(
                "{}{h:02}:{m:02}",
                if minus { '-' } else { '+' }
            )),
        ],
    )
        .prop_map(|(y, mo, d, h, mi, s, f, o)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{f}{o}")
        })
}

fn guid_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        1 => "\\{?[0-9a-gA-G-]{30,38}\\}?",
        1 => text(),
    ]
}

/// A value for `key`: mostly one of the property's type, sometimes any JSON.
fn value_for(key: &'static str) -> BoxedStrategy<Value> {
    let typed: BoxedStrategy<Value> = match key {
        "id" => guid_text().prop_map(Value::String).boxed(),
        "isExtended" => any::<bool>().prop_map(Value::Bool).boxed(),
        "expiredDateTime" => date_text().prop_map(Value::String).boxed(),
        "@odata.type" => prop_oneof![
            4 => Just(Value::from(ODATA_TYPE)),
            2 => Just(Value::from("microsoft.graph.accessPackageAssignment")),
            1 => text().prop_map(Value::String),
        ]
        .boxed(),
        "@odata.context" => prop_oneof![
            Just(Value::from(
                "http://localhost/beta/$metadata#accessPackageAssignments/$entity"
            )),
            text().prop_map(Value::String),
        ]
        .boxed(),
        _ => text().prop_map(Value::String).boxed(),
    };
    prop_oneof![
        6 => typed,
        1 => Just(Value::Null),
        1 => json_value(),
    ]
    .boxed()
}

/// JSON texts that no `Value` serializes to: lone surrogates, numbers beyond
/// f64, deep nesting, broken syntax.
fn raw_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#""\ud800""#.to_owned()),
        Just(r#""\udc00x""#.to_owned()),
        Just(r#""\ud83d\ude00""#.to_owned()),
        Just("1e400".to_owned()),
        Just("-0".to_owned()),
        Just("123456789012345678901234567890".to_owned()),
        (1usize..300).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        (1usize..300).prop_map(|n| "[".repeat(n)),
        (1usize..300).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))),
        Just("\"\t\"".to_owned()),
        Just("tru".to_owned()),
        Just("\"unterminated".to_owned()),
        Just("NaN".to_owned()),
    ]
}

/// One member of a body's object.
#[derive(Debug, Clone)]
struct Member {
    key: String,
    /// The key written with a `\u` escape for its first character.
    escaped_key: bool,
    value: Result<Value, String>,
}

impl Member {
    fn json(&self) -> String {
        let key = if self.escaped_key && !self.key.is_empty() {
            let mut chars = self.key.chars();
            let first = chars.next().unwrap();
            let rest: String = chars.collect();
            let rest = serde_json::to_string(&rest).unwrap();
            let mut units = [0u16; 2];
            let escape: String = first
                .encode_utf16(&mut units)
                .iter()
                .map(|u| format!("\\u{u:04x}"))
                .collect();
            format!("\"{escape}{}", &rest[1..])
        } else {
            serde_json::to_string(&self.key).unwrap()
        };
        let value = match &self.value {
            Ok(value) => value.to_string(),
            Err(raw) => raw.clone(),
        };
        format!("{key}:{value}")
    }
}

const KEYS: [&str; 11] = [
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
    "@odata.context",
];

fn member() -> impl Strategy<Value = Member> {
    let known = prop::sample::select(KEYS.to_vec())
        .prop_flat_map(|key| (Just(key.to_owned()), value_for(key)));
    let unknown = (
        prop_oneof![
            Just("TargetId".to_owned()),
            Just("@odata.id".to_owned()),
            Just("".to_owned()),
            text(),
        ],
        json_value(),
    );
    let raw = (prop::sample::select(KEYS.to_vec()), raw_fragment())
        .prop_map(|(key, raw)| (key.to_owned(), raw));
    prop_oneof![
        20 => (known, prop::bool::weighted(0.1))
            .prop_map(|((key, value), escaped_key)| Member { key, escaped_key, value: Ok(value) }),
        1 => (unknown, prop::bool::ANY)
            .prop_map(|((key, value), escaped_key)| Member { key, escaped_key, value: Ok(value) }),
        1 => raw.prop_map(|(key, raw)| Member { key, escaped_key: false, value: Err(raw) }),
    ]
}

/// A body: an object of members (duplicates possible), with some whitespace.
fn body() -> impl Strategy<Value = (Vec<Member>, String)> {
    (
        prop::collection::vec(member(), 0..12),
        prop::sample::select(vec!["", " ", "\n  ", "\t"]),
    )
        .prop_map(|(members, ws)| {
            let inner: Vec<String> = members.iter().map(Member::json).collect();
            let text = format!("{{{ws}{}{ws}}}", inner.join(&format!(",{ws}")));
            (members, text)
        })
}

/// Whether `parse_assignment` must accept these members, by the rules it
/// documents: known keys, none twice, every value of its property's type or
/// null, a valid date-time, and the entity's type name. `None` when this model
/// does not say: a raw JSON fragment, or an `@odata.context` that is no string
/// (accepted today; tests/api/hostile.rs holds that it should not be).
fn should_parse(members: &[Member]) -> Option<bool> {
    if members.iter().any(|m| match &m.value {
        Err(_) => true,
        Ok(value) => m.key == "@odata.context" && !value.is_string() && !value.is_null(),
    }) {
        return None;
    }
    let mut seen = std::collections::HashSet::new();
    Some(members.iter().all(|m| {
        let Ok(value) = &m.value else { return false };
        if !KEYS.contains(&m.key.as_str()) || !seen.insert(m.key.clone()) {
            return false;
        }
        match (m.key.as_str(), value) {
            ("@odata.context", _) => true,
            ("@odata.type", Value::String(s)) => {
                s == ODATA_TYPE || s == "microsoft.graph.accessPackageAssignment"
            }
            ("@odata.type", _) => false,
            (_, Value::Null) => true,
            ("isExtended", v) => v.is_boolean(),
            ("expiredDateTime", Value::String(s)) => DateTimeOffset::parse(s).is_ok(),
            (_, v) => v.is_string(),
        }
    }))
}

/// The message field behind a string property.
fn text_field<'a>(a: &'a AccessPackageAssignment, key: &str) -> &'a Option<String> {
    match key {
        "id" => &a.id,
        "catalogId" => &a.catalog_id,
        "accessPackageId" => &a.access_package_id,
        "assignmentPolicyId" => &a.assignment_policy_id,
        "targetId" => &a.target_id,
        "assignmentStatus" => &a.assignment_status,
        "assignmentState" => &a.assignment_state,
        other => panic!("{other} is not a string property"),
    }
}

/// Checks a successful parse against the members it came from, and that writing
/// it gives JSON that parses back to the same message.
fn check_parsed(members: &[Member], parsed: &AccessPackageAssignment) -> Result<(), TestCaseError> {
    for m in members {
        let Ok(value) = &m.value else { continue };
        match m.key.as_str() {
            "@odata.type" | "@odata.context" => {}
            "isExtended" => prop_assert_eq!(parsed.is_extended, value.as_bool()),
            "expiredDateTime" => match value.as_str() {
                None => {
                    prop_assert_eq!(parsed.expired_date_time, None);
                    prop_assert_eq!(parsed.expired_date_time_offset_minutes, None);
                }
                Some(text) => {
                    let expected = DateTimeOffset::parse(text).unwrap();
                    let t = parsed.expired_date_time.unwrap();
                    prop_assert_eq!(t.seconds, expected.seconds());
                    prop_assert_eq!(t.nanos, expected.nanos() as i32);
                    prop_assert_eq!(
                        parsed.expired_date_time_offset_minutes,
                        Some(expected.offset_minutes())
                    );
                }
            },
            key => prop_assert_eq!(
                text_field(parsed, key).as_deref(),
                value.as_str(),
                "{}",
                key
            ),
        }
    }
    for key in KEYS.iter().take(7) {
        if !members.iter().any(|m| m.key == *key) {
            prop_assert_eq!(text_field(parsed, key), &None, "{} absent", key);
        }
    }

    let written = write_assignment(parsed, None)
        .map_err(|e| TestCaseError::fail(format!("write_assignment failed: {e}")))?;
    let as_json: Value = serde_json::from_slice(&written)
        .map_err(|e| TestCaseError::fail(format!("written JSON is invalid: {e}")))?;
    prop_assert_eq!(as_json["@odata.type"].as_str(), Some(ODATA_TYPE));
    let reparsed = parse_assignment(&written).map_err(|e| {
        TestCaseError::fail(format!(
            "the written JSON does not parse back: {e}\n{}",
            String::from_utf8_lossy(&written)
        ))
    })?;
    // Modulo id: the id is the only property a write may have to fill in.
    let mut left = parsed.clone();
    let mut right = reparsed.clone();
    prop_assert_eq!(&left.id, &right.id, "the id round-trips");
    left.id = None;
    right.id = None;
    prop_assert_eq!(left, right);
    // And writing is deterministic.
    prop_assert_eq!(write_assignment(&reparsed, None).unwrap(), written);
    Ok(())
}

// ---------------------------------------------------------------------------
// Strategies: $filter.
// ---------------------------------------------------------------------------

/// A comparison as generated, valid or not, and the Filter it must parse to.
#[derive(Debug, Clone)]
enum Expr {
    Compare {
        text: String,
        expected: Option<Filter>,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Paren(Box<Expr>),
}

impl Expr {
    fn render(&self, out: &mut Vec<String>) {
        match self {
            Expr::Compare { text, .. } => out.push(text.clone()),
            Expr::And(l, r) => {
                l.render_wrapped(out, matches!(**l, Expr::Or(..)));
                out.push("and".into());
                r.render_wrapped(out, matches!(**r, Expr::Or(..) | Expr::And(..)));
            }
            Expr::Or(l, r) => {
                l.render(out);
                out.push("or".into());
                r.render_wrapped(out, matches!(**r, Expr::Or(..)));
            }
            Expr::Paren(inner) => inner.render_wrapped(out, true),
        }
    }

    fn render_wrapped(&self, out: &mut Vec<String>, parens: bool) {
        if parens {
            out.push("(".into());
            self.render(out);
            out.push(")".into());
        } else {
            self.render(out);
        }
    }

    /// The Filter the rendered text means, when every comparison is valid.
    fn expected(&self) -> Option<Filter> {
        Some(match self {
            Expr::Compare { expected, .. } => expected.clone()?,
            Expr::And(l, r) => Filter::And(Box::new(l.expected()?), Box::new(r.expected()?)),
            Expr::Or(l, r) => Filter::Or(Box::new(l.expected()?), Box::new(r.expected()?)),
            Expr::Paren(inner) => inner.expected()?,
        })
    }

    fn depth(tokens: &[String]) -> usize {
        let mut depth = 0usize;
        let mut max = 0;
        for t in tokens {
            if t == "(" {
                depth += 1;
                max = max.max(depth);
            } else if t == ")" {
                depth = depth.saturating_sub(1);
            }
        }
        max
    }

    fn comparisons(&self) -> usize {
        match self {
            Expr::Compare { .. } => 1,
            Expr::And(l, r) | Expr::Or(l, r) => l.comparisons() + r.comparisons(),
            Expr::Paren(inner) => inner.comparisons(),
        }
    }
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A comparison: usually a valid one (with the Filter it means), sometimes with
/// a wrong property, operator or literal.
fn comparison() -> impl Strategy<Value = Expr> {
    let names = prop::sample::select(vec![
        ("id", Property::Id),
        ("catalogId", Property::CatalogId),
        ("accessPackageId", Property::AccessPackageId),
        ("accessPackage/id", Property::AccessPackageId),
        ("assignmentPolicyId", Property::AssignmentPolicyId),
        (
            "accessPackageAssignmentPolicy/id",
            Property::AssignmentPolicyId,
        ),
        ("targetId", Property::TargetId),
        ("assignmentStatus", Property::AssignmentStatus),
        ("assignmentState", Property::AssignmentState),
        ("isExtended", Property::IsExtended),
        ("expiredDateTime", Property::ExpiredDateTime),
    ]);
    let ops = prop::sample::select(vec![
        ("eq", Op::Eq),
        ("ne", Op::Ne),
        ("lt", Op::Lt),
        ("le", Op::Le),
        ("gt", Op::Gt),
        ("ge", Op::Ge),
    ]);
    let short_text = prop_oneof!["\\PC{0,12}", "[a-z' ()]{0,10}", any::<String>(),];
    let guid = prop_oneof![9 => valid_guid_text(), 1 => guid_text()];
    let date = prop_oneof![9 => valid_date_text(), 1 => date_text()];
    let valid = (
        names,
        ops,
        prop::bool::weighted(0.9),
        any::<prop::sample::Index>(),
        short_text,
        guid,
        date,
    )
        .prop_map(
            |((name, property), (op_text, op), keep_op_valid, pick, s, guid, date)| {
                // Mostly an operator the property allows.
                let (op_text, op) = if keep_op_valid && property != Property::ExpiredDateTime {
                    if matches!(op, Op::Eq | Op::Lt | Op::Gt) {
                        ("eq", Op::Eq)
                    } else {
                        ("ne", Op::Ne)
                    }
                } else {
                    (op_text, op)
                };
                // The literal: null, or one of the property's type.
                let (literal, value): (String, Option<Literal>) = if pick.index(8) == 0 {
                    ("null".into(), Some(Literal::Null))
                } else {
                    match property {
                        Property::Id => {
                            let parsed = uuid::Uuid::try_parse(&guid)
                                .ok()
                                .filter(|_| guid.len() == 36);
                            let bare = pick.index(2) == 0;
                            let literal = if bare { guid.clone() } else { quote(&guid) };
                            let splits = |c: char| c.is_whitespace() || "()'".contains(c);
                            let ok = parsed.is_some() && !(bare && guid.contains(splits));
                            (
                                literal,
                                ok.then(|| Literal::Text(parsed.unwrap().hyphenated().to_string())),
                            )
                        }
                        Property::IsExtended => {
                            let b = pick.index(2) == 0;
                            (b.to_string(), Some(Literal::Bool(b)))
                        }
                        Property::ExpiredDateTime => {
                            let ok =
                                !date.contains(|c: char| c.is_whitespace() || "()'".contains(c));
                            let parsed = DateTimeOffset::parse(&date).ok().filter(|_| ok);
                            (date.clone(), parsed.map(Literal::DateTime))
                        }
                        _ => (quote(&s), Some(Literal::Text(s.clone()))),
                    }
                };
                let op_ok = matches!(op, Op::Eq | Op::Ne)
                    || (property == Property::ExpiredDateTime && value != Some(Literal::Null));
                let expected = value
                    .filter(|_| op_ok)
                    .map(|v| Filter::Compare(property, op, v));
                Expr::Compare {
                    text: format!("{name} {op_text} {literal}"),
                    expected,
                }
            },
        );
    let invalid = prop_oneof![
        "[a-zA-Z/]{1,12} (eq|ne|has|in|lt) '[a-z]{0,4}'",
        "(startswith|contains|not|any)\\(targetId, ?'a'\\)",
        "not targetId eq 'a'",
        "targetId eq [0-9]{1,3}",
        "isExtended eq (True|'true'|1)",
    ]
    .prop_map(|text| Expr::Compare {
        text,
        expected: None,
    });
    prop_oneof![9 => valid, 1 => invalid]
}

fn expr() -> impl Strategy<Value = Expr> {
    comparison().prop_recursive(5, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::Or(Box::new(l), Box::new(r))),
            inner.prop_map(|e| Expr::Paren(Box::new(e))),
        ]
    })
}

/// Tokens that do not belong: stray keywords, brackets, quotes, Unicode.
fn noise() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "(", ")", "'", "''", "and", "or", "not", "eq", "null", "true", "/", ",", "$filter=",
            "\u{0}", "\u{3000}", "\u{200f}", "é", "😀", "%27", "\\", "id", "targetId",
        ])
        .prop_map(str::to_owned),
        "[ -~]{1,6}",
        any::<String>(),
    ]
}

/// How a rendered filter is disturbed.
#[derive(Debug, Clone)]
enum Mutation {
    Delete(prop::sample::Index),
    Duplicate(prop::sample::Index),
    Insert(prop::sample::Index, String),
    Swap(prop::sample::Index, prop::sample::Index),
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::Delete),
        any::<prop::sample::Index>().prop_map(Mutation::Duplicate),
        (any::<prop::sample::Index>(), noise()).prop_map(|(i, n)| Mutation::Insert(i, n)),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(a, b)| Mutation::Swap(a, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(tokens: &mut Vec<String>, mutation: &Mutation) {
    if tokens.is_empty() {
        if let Mutation::Insert(_, n) = mutation {
            tokens.push(n.clone());
        }
        return;
    }
    match mutation {
        Mutation::Delete(i) => {
            tokens.remove(i.index(tokens.len()));
        }
        Mutation::Duplicate(i) => {
            let i = i.index(tokens.len());
            tokens.insert(i, tokens[i].clone());
        }
        Mutation::Insert(i, n) => tokens.insert(i.index(tokens.len() + 1), n.clone()),
        Mutation::Swap(a, b) => {
            let (a, b) = (a.index(tokens.len()), b.index(tokens.len()));
            tokens.swap(a, b);
        }
        Mutation::Truncate(i) => tokens.truncate(i.index(tokens.len())),
    }
}

/// Parses twice; checks both answers are the same and returns it.
fn parse_twice(text: &str) -> Result<Result<Filter, filter::FilterError>, TestCaseError> {
    let first = filter::parse(text);
    let second = filter::parse(text);
    prop_assert_eq!(&first, &second, "parse is deterministic");
    if let Err(e) = &first {
        prop_assert!(
            e.position <= text.len(),
            "position {} of {}",
            e.position,
            text.len()
        );
        prop_assert!(!e.message.is_empty());
    }
    Ok(first)
}

// ---------------------------------------------------------------------------
// The properties.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// (a) Arbitrary bytes never make either parser panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_assignment(&bytes);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = parse_twice(text)?;
        }
    }

    /// (a) Arbitrary strings never make either parser panic.
    #[test]
    fn arbitrary_strings_never_panic(text in prop_oneof![
        any::<String>(),
        "[{}\\[\\]\":,0-9a-zA-Z@.#\\\\ u-]{0,80}",
        "[()' a-zA-Z0-9/:+.-]{0,80}",
    ]) {
        if let Ok(parsed) = parse_assignment(text.as_bytes()) {
            // Whatever parses, writes and parses back.
            let written = write_assignment(&parsed, None).unwrap();
            prop_assert_eq!(parse_assignment(&written).unwrap(), parsed);
        }
        let _ = parse_twice(&text)?;
    }

    /// (b) Bodies over the known property names with arbitrary values: never a
    /// panic; exactly the bodies the rules allow parse; what parses holds the
    /// values sent, and writes JSON that parses back to the same message.
    #[test]
    fn json_bodies_parse_by_the_rules_and_round_trip((members, text) in body()) {
        let parsed = parse_assignment(text.as_bytes());
        if let Some(expected) = should_parse(&members) {
            prop_assert_eq!(parsed.is_ok(), expected, "{}\n{:?}", text, parsed);
        }
        if let Ok(parsed) = parsed {
            check_parsed(&members, &parsed)?;
        }
    }

    /// (b) Valid messages, written, parse back to themselves.
    #[test]
    fn written_messages_parse_back(
        strings in prop::collection::vec(prop::option::of(text()), 7),
        is_extended in prop::option::of(any::<bool>()),
        date in prop::option::of(date_text()),
    ) {
        let date = date.and_then(|d| DateTimeOffset::parse(&d).ok());
        let message = AccessPackageAssignment {
            id: strings[0].clone(),
            catalog_id: strings[1].clone(),
            access_package_id: strings[2].clone(),
            assignment_policy_id: strings[3].clone(),
            target_id: strings[4].clone(),
            assignment_status: strings[5].clone(),
            assignment_state: strings[6].clone(),
            is_extended,
            expired_date_time: date.map(|d| prost_types::Timestamp {
                seconds: d.seconds(),
                nanos: d.nanos() as i32,
            }),
            expired_date_time_offset_minutes: date.map(|d| d.offset_minutes()),
        };
        let written = write_assignment(&message, None).unwrap();
        let reparsed = parse_assignment(&written);
        prop_assert_eq!(reparsed.as_ref(), Ok(&message), "{}", String::from_utf8_lossy(&written));
    }

    /// DateTimeOffset::parse never panics, and what it accepts it writes back in
    /// a form it reads as the same value.
    #[test]
    fn date_times_parse_and_format_consistently(text in date_text()) {
        if let Ok(value) = DateTimeOffset::parse(&text) {
            let written = value.to_string();
            prop_assert_eq!(DateTimeOffset::parse(&written), Ok(value), "{} -> {}", text, written);
            // As ODataLib writes it: Z for UTC, no trailing zeros.
            prop_assert!(written.ends_with('Z') == (value.offset_minutes() == 0), "{}", written);
            if let Some((_, fraction)) = written.split_once('.') {
                let digits: String = fraction.chars().take_while(char::is_ascii_digit).collect();
                prop_assert!(!digits.is_empty() && !digits.ends_with('0'), "{}", written);
            }
        }
    }

    /// (c) Filters from the grammar: never a panic, deterministic, and a valid one
    /// parses to exactly the tree it was built from (and binds as documented).
    #[test]
    fn grammar_filters_parse_to_their_tree(expr in expr()) {
        let mut tokens = Vec::new();
        expr.render(&mut tokens);
        let text = tokens.join(" ");
        let parsed = parse_twice(&text)?;
        let depth = Expr::depth(&tokens);
        let within_limits = expr.comparisons() <= 64
            && depth <= 16
            && text.len() <= filter::MAX_FILTER_BYTES;
        match expr.expected() {
            Some(expected) if within_limits => {
                prop_assert_eq!(&parsed, &Ok(expected), "{}", text);
            }
            _ => {}
        }
        // Whitespace between tokens does not matter.
        let spaced = tokens.join(" \t\n\u{3000} ");
        if spaced.len() <= filter::MAX_FILTER_BYTES && text.len() <= filter::MAX_FILTER_BYTES {
            let again = parse_twice(&spaced)?;
            prop_assert_eq!(again.is_ok(), parsed.is_ok(), "{:?} vs {:?}", text, spaced);
            if let (Ok(a), Ok(b)) = (&again, &parsed) {
                prop_assert_eq!(a, b);
            }
        }
        // A valid filter in parentheses means the same.
        if let Ok(inner) = &parsed {
            let wrapped = format!("({text})");
            if wrapped.len() <= filter::MAX_FILTER_BYTES && depth < 16 {
                let again = parse_twice(&wrapped)?;
                prop_assert_eq!(again.as_ref(), Ok(inner), "{}", wrapped);
            }
        }
    }

    /// (c) Grammar filters disturbed by noise tokens: never a panic, deterministic.
    #[test]
    fn noisy_filters_never_panic(
        expr in expr(),
        mutations in prop::collection::vec(mutation(), 1..5),
        separator in prop::sample::select(vec![" ", "", "  ", "\t", "\u{a0}"]),
    ) {
        let mut tokens = Vec::new();
        expr.render(&mut tokens);
        for m in &mutations {
            mutate(&mut tokens, m);
        }
        let text = tokens.join(separator);
        let _ = parse_twice(&text)?;
    }
}

/// The generators are not vacuous: many bodies parse, many grammar filters are
/// valid, and those do parse.
#[test]
fn the_generators_reach_valid_inputs() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let draws = 1_000;
    let (mut bodies_ok, mut filters_valid, mut filters_ok) = (0, 0, 0);
    for _ in 0..draws {
        let (_, text) = body().new_tree(&mut runner).unwrap().current();
        bodies_ok += usize::from(parse_assignment(text.as_bytes()).is_ok());
        let expr = expr().new_tree(&mut runner).unwrap().current();
        let mut tokens = Vec::new();
        expr.render(&mut tokens);
        let text = tokens.join(" ");
        let valid = expr.expected().is_some()
            && expr.comparisons() <= 64
            && Expr::depth(&tokens) <= 16
            && text.len() <= filter::MAX_FILTER_BYTES;
        filters_valid += usize::from(valid);
        filters_ok += usize::from(filter::parse(&text).is_ok());
    }
    eprintln!(
        "of {draws}: {bodies_ok} bodies parse; {filters_valid} filters valid by construction, {filters_ok} parse"
    );
    assert!(
        bodies_ok * 10 >= draws,
        "{bodies_ok} of {draws} bodies parse"
    );
    assert!(
        filters_valid * 4 >= draws,
        "{filters_valid} of {draws} filters are valid"
    );
    assert!(filters_ok >= filters_valid);
}
