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

/// A date-time as generated, part by part, before it is written out: each part in
/// or just beyond its range, 0 to 9 fractional digits, Z, an offset, or nothing.
#[derive(Debug, Clone)]
struct DateParts {
    year: u32,
    month: u32,
    day: u32,
    /// Between the date and the time: `T`, `t` or a space.
    separator: char,
    hour: u32,
    minute: u32,
    second: u32,
    /// The digits after a `.`; `None`: no `.` at all.
    fraction: Option<String>,
    offset: OffsetText,
}

#[derive(Debug, Clone)]
enum OffsetText {
    /// Nothing after the time.
    Missing,
    /// `Z` or `z`.
    Zulu(char),
    /// `±hh:mm`.
    Colon {
        minus: bool,
        hours: u32,
        minutes: u32,
    },
    /// `±hhmm` and the like: a form RFC 3339 does not have.
    Other(String),
}

impl DateParts {
    fn text(&self) -> String {
        let Self {
            year,
            month,
            day,
            separator,
            hour,
            minute,
            second,
            ..
        } = self;
        let fraction = self
            .fraction
            .as_ref()
            .map_or(String::new(), |digits| format!(".{digits}"));
        let offset = match &self.offset {
            OffsetText::Missing => String::new(),
            OffsetText::Zulu(z) => z.to_string(),
            OffsetText::Colon {
                minus,
                hours,
                minutes,
            } => format!("{}{hours:02}:{minutes:02}", if *minus { '-' } else { '+' }),
            OffsetText::Other(text) => text.clone(),
        };
        format!(
            "{year:04}-{month:02}-{day:02}{separator}{hour:02}:{minute:02}:{second:02}{fraction}{offset}"
        )
    }

    /// What the text must parse to, from the parts themselves (see [`calendar`]).
    fn expected(&self) -> Option<ExpectedDate> {
        if !matches!(self.separator, 'T' | 't') {
            return None;
        }
        let offset_minutes = match self.offset {
            OffsetText::Zulu(_) => 0,
            OffsetText::Colon {
                minus,
                hours,
                minutes,
            } => signed_offset(minus, hours, minutes)?,
            OffsetText::Missing | OffsetText::Other(_) => return None,
        };
        calendar(
            [
                self.year,
                self.month,
                self.day,
                self.hour,
                self.minute,
                self.second,
            ],
            self.fraction.as_deref(),
            offset_minutes,
        )
    }
}

/// Generated date-times near the valid form.
fn date_parts() -> impl Strategy<Value = DateParts> {
    let year = prop_oneof![0u32..=2, 1u32..=9999, 9997u32..=9999];
    let fraction = prop_oneof![Just(None), "[0-9]{0,9}".prop_map(Some)];
    let offset = prop_oneof![
        prop::sample::select(vec!['Z', 'z']).prop_map(OffsetText::Zulu),
        Just(OffsetText::Missing),
        (prop::bool::ANY, 0u32..=16, 0u32..=61).prop_map(|(minus, hours, minutes)| {
            OffsetText::Colon {
                minus,
                hours,
                minutes,
            }
        }),
        "[+-][0-9]{4}".prop_map(OffsetText::Other),
    ];
    (
        (year, 0u32..=13, 0u32..=32),
        prop::sample::select(vec!['T', 't', ' ']),
        (0u32..=25, 0u32..=60, 0u32..=61),
        fraction,
        offset,
    )
        .prop_map(
            |((year, month, day), separator, (hour, minute, second), fraction, offset)| DateParts {
                year,
                month,
                day,
                separator,
                hour,
                minute,
                second,
                fraction,
                offset,
            },
        )
}

/// Texts that are not built from parts: mostly not date-times at all.
fn unstructured_date_text() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9T:Zz.+-]{0,30}", text()]
}

/// Date-time texts near the valid form, and some that are nowhere near.
fn date_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => date_parts().prop_map(|parts| parts.text()),
        2 => unstructured_date_text(),
    ]
}

// ---------------------------------------------------------------------------
// The date-time oracle: what a text must parse to, worked out with calendar
// arithmetic written here, never with the code under test.
// ---------------------------------------------------------------------------

/// A date-time the service must accept: the instant, the offset, and the text
/// Graph (ODataLib) writes for it.
#[derive(Debug, Clone, PartialEq)]
struct ExpectedDate {
    /// Seconds since 1970-01-01T00:00:00Z.
    seconds: i64,
    /// Within the second.
    nanos: u32,
    /// East of UTC.
    offset_minutes: i32,
    /// `yyyy-MM-ddTHH:mm:ss`, the local time as written; the fraction without
    /// trailing zeros (no `.` when nothing is left); `Z` for a zero offset, else
    /// `±hh:mm`.
    graph: String,
}

/// Days from 1970-01-01 to this date of the proleptic Gregorian calendar
/// (H. Hinnant's `days_from_civil`, with March as the first month of a year).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn days_in_month(year: u32, month: u32) -> u32 {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `±hours:minutes` in minutes east of UTC, when it is one (at most ±14:00).
fn signed_offset(minus: bool, hours: u32, minutes: u32) -> Option<i32> {
    if minutes > 59 || hours * 60 + minutes > 14 * 60 {
        return None;
    }
    let total = (hours * 60 + minutes) as i32;
    Some(if minus { -total } else { total })
}

/// The date-time of these local parts (year, month, day, hour, minute, second),
/// fractional digits and offset: `None` unless it is a real calendar date and
/// time of day (no leap second), with 0 to 7 fractional digits, whose local time
/// and instant are both within 0001-01-01T00:00:00..9999-12-31T23:59:59.9999999.
fn calendar(
    [year, month, day, hour, minute, second]: [u32; 6],
    fraction: Option<&str>,
    offset_minutes: i32,
) -> Option<ExpectedDate> {
    let valid = (1..=9999).contains(&year)
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour <= 23
        && minute <= 59
        && second <= 59;
    let fraction = match fraction {
        None => "",
        Some(digits) if (1..=7).contains(&digits.len()) => digits,
        Some(_) => return None,
    };
    if !valid || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let local = days_from_civil(year.into(), month.into(), day.into()) * 86_400
        + i64::from(hour * 3600 + minute * 60 + second);
    let seconds = local - i64::from(offset_minutes) * 60;
    let first = days_from_civil(1, 1, 1) * 86_400;
    let last = days_from_civil(9999, 12, 31) * 86_400 + 86_399;
    if !(first..=last).contains(&seconds) {
        return None;
    }
    let nanos = format!("{fraction:0<9}").parse().unwrap();
    let trimmed = fraction.trim_end_matches('0');
    let fraction_text = if trimmed.is_empty() {
        String::new()
    } else {
        format!(".{trimmed}")
    };
    let offset_text = if offset_minutes == 0 {
        "Z".to_owned()
    } else {
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let minutes = offset_minutes.unsigned_abs();
        format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    };
    Some(ExpectedDate {
        seconds,
        nanos,
        offset_minutes,
        graph: format!(
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction_text}{offset_text}"
        ),
    })
}

/// What any text must parse to: cut into the parts of
/// `yyyy-MM-ddTHH:mm:ss[.f…](Z|±hh:mm)` when it has that shape (ASCII digits
/// where digits go, `T` or `t`, `Z` or `z`), then as [`calendar`] says.
fn expected_date(text: &str) -> Option<ExpectedDate> {
    let bytes = text.as_bytes();
    let number = |at: usize, len: usize| -> Option<u32> {
        let digits = bytes.get(at..at + len)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(digits).unwrap().parse().unwrap())
    };
    let parts = [
        number(0, 4)?,
        number(5, 2)?,
        number(8, 2)?,
        number(11, 2)?,
        number(14, 2)?,
        number(17, 2)?,
    ];
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, byte)| bytes[at] != byte) || !b"Tt".contains(&bytes[10]) {
        return None;
    }
    // Bytes 0..19 are ASCII: 19 is a character boundary.
    let mut rest = &text[19..];
    let mut fraction = None;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        fraction = Some(&after_dot[..len]);
        rest = &after_dot[len..];
    }
    let offset_minutes = match rest.as_bytes() {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()) =>
        {
            let value = |a: &u8, b: &u8| u32::from(a - b'0') * 10 + u32::from(b - b'0');
            signed_offset(*sign == b'-', value(h1, h2), value(m1, m2))?
        }
        _ => return None,
    };
    calendar(parts, fraction, offset_minutes)
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
            ("expiredDateTime", Value::String(s)) => expected_date(s).is_some(),
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
                    let Some(expected) = expected_date(text) else {
                        return Err(TestCaseError::fail(format!(
                            "{text:?} was accepted, but is no date-time the calendar allows"
                        )));
                    };
                    let t = parsed.expired_date_time.unwrap();
                    prop_assert_eq!(t.seconds, expected.seconds, "{}", text);
                    prop_assert_eq!(t.nanos, expected.nanos as i32, "{}", text);
                    prop_assert_eq!(
                        parsed.expired_date_time_offset_minutes,
                        Some(expected.offset_minutes),
                        "{}",
                        text
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
    // The date-time as Graph writes it: the text the oracle gives.
    let sent_date = members
        .iter()
        .rev()
        .find(|m| m.key == "expiredDateTime")
        .and_then(|m| m.value.as_ref().ok()?.as_str());
    if let Some(expected) = sent_date.and_then(expected_date) {
        prop_assert_eq!(
            as_json["expiredDateTime"].as_str(),
            Some(expected.graph.as_str())
        );
    }
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
                            // The value the oracle works out, not one parsed by
                            // the code under test.
                            let value = expected_date(&date).filter(|_| ok).map(|e| {
                                DateTimeOffset::from_parts(e.seconds, e.nanos, e.offset_minutes)
                                    .unwrap_or_else(|error| {
                                        panic!("{date}: {e:?} cannot be built: {error}")
                                    })
                            });
                            (date.clone(), value.map(Literal::DateTime))
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
        // A valid date-time's parts, as the oracle works them out.
        let date = date.as_deref().and_then(expected_date);
        let message = AccessPackageAssignment {
            id: strings[0].clone(),
            catalog_id: strings[1].clone(),
            access_package_id: strings[2].clone(),
            assignment_policy_id: strings[3].clone(),
            target_id: strings[4].clone(),
            assignment_status: strings[5].clone(),
            assignment_state: strings[6].clone(),
            is_extended,
            expired_date_time: date.as_ref().map(|d| prost_types::Timestamp {
                seconds: d.seconds,
                nanos: d.nanos as i32,
            }),
            expired_date_time_offset_minutes: date.as_ref().map(|d| d.offset_minutes),
        };
        let written = write_assignment(&message, None).unwrap();
        if let Some(date) = &date {
            let as_json: Value = serde_json::from_slice(&written).unwrap();
            prop_assert_eq!(as_json["expiredDateTime"].as_str(), Some(date.graph.as_str()));
        }
        let reparsed = parse_assignment(&written);
        prop_assert_eq!(reparsed.as_ref(), Ok(&message), "{}", String::from_utf8_lossy(&written));
    }

    /// DateTimeOffset::parse accepts exactly the date-times the calendar allows,
    /// keeps the instant and the offset they name, and writes them as Graph does;
    /// each checked against the oracle, worked out from the generated parts (and,
    /// for texts not built from parts, from the text's own parts). Never a panic.
    #[test]
    fn date_times_parse_to_the_instant_offset_and_text_the_calendar_gives(
        parts in date_parts(),
        unstructured in unstructured_date_text(),
    ) {
        let text = parts.text();
        let expected = parts.expected();
        // The oracle's two routes agree: from the parts, and from the text.
        prop_assert_eq!(&expected_date(&text), &expected, "{}", text);
        let cases = [
            (text.clone(), expected),
            (unstructured.clone(), expected_date(&unstructured)),
        ];
        for (text, expected) in cases {
            let parsed = DateTimeOffset::parse(&text);
            match expected {
                None => prop_assert!(parsed.is_err(), "{:?} was accepted as {:?}", text, parsed),
                Some(expected) => {
                    let Ok(value) = parsed else {
                        return Err(TestCaseError::fail(format!(
                            "{text:?} was refused: {parsed:?}; expected {expected:?}"
                        )));
                    };
                    prop_assert_eq!(value.seconds(), expected.seconds, "{}", text);
                    prop_assert_eq!(value.nanos(), expected.nanos, "{}", text);
                    prop_assert_eq!(value.offset_minutes(), expected.offset_minutes, "{}", text);
                    prop_assert_eq!(value.to_string(), expected.graph, "{}", text);
                }
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
    let mut dates_valid = 0;
    for _ in 0..draws {
        let parts = date_parts().new_tree(&mut runner).unwrap().current();
        dates_valid += usize::from(parts.expected().is_some());
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
        "of {draws}: {bodies_ok} bodies parse; {filters_valid} filters valid by construction, \
         {filters_ok} parse; {dates_valid} generated date-times valid"
    );
    assert!(
        dates_valid * 10 >= draws,
        "{dates_valid} of {draws} generated date-times are valid"
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

/// The date-time oracle knows the calendar: instants (from `date -u +%s`), leap
/// years, the range, offsets, and how Graph writes a value, all written out here.
#[test]
fn the_date_oracle_agrees_with_known_dates() {
    let valid = [
        // text, seconds, nanos, offset, as Graph writes it
        (
            "2017-01-01T00:03:03.9221806+03:00",
            1_483_218_183,
            922_180_600,
            180,
            "2017-01-01T00:03:03.9221806+03:00",
        ),
        ("1970-01-01T00:00:00Z", 0, 0, 0, "1970-01-01T00:00:00Z"),
        (
            "1969-12-31T23:59:59.5z",
            -1,
            500_000_000,
            0,
            "1969-12-31T23:59:59.5Z",
        ),
        (
            "2000-03-01t00:00:00Z",
            951_868_800,
            0,
            0,
            "2000-03-01T00:00:00Z",
        ),
        (
            "2024-02-29T12:00:00-05:30",
            1_709_227_800,
            0,
            -330,
            "2024-02-29T12:00:00-05:30",
        ),
        (
            "2000-02-29T00:00:00.1200000-00:00",
            951_782_400,
            120_000_000,
            0,
            "2000-02-29T00:00:00.12Z",
        ),
        (
            "0001-01-01T00:00:00Z",
            -62_135_596_800,
            0,
            0,
            "0001-01-01T00:00:00Z",
        ),
        (
            "0001-01-01T14:00:00+14:00",
            -62_135_596_800,
            0,
            840,
            "0001-01-01T14:00:00+14:00",
        ),
        (
            "9999-12-31T23:59:59.9999999Z",
            253_402_300_799,
            999_999_900,
            0,
            "9999-12-31T23:59:59.9999999Z",
        ),
        (
            "9999-12-31T09:59:59-14:00",
            253_402_300_799,
            0,
            -840,
            "9999-12-31T09:59:59-14:00",
        ),
        (
            "2021-05-01T10:00:00.000000+00:00",
            1_619_863_200,
            0,
            0,
            "2021-05-01T10:00:00Z",
        ),
    ];
    for (text, seconds, nanos, offset_minutes, graph) in valid {
        assert_eq!(
            expected_date(text),
            Some(ExpectedDate {
                seconds,
                nanos,
                offset_minutes,
                graph: graph.to_owned()
            }),
            "{text}"
        );
    }
    for text in [
        "1900-02-29T00:00:00Z",
        "2100-02-29T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2023-04-31T00:00:00Z",
        "2023-00-01T00:00:00Z",
        "2023-13-01T00:00:00Z",
        "2023-01-00T00:00:00Z",
        "2023-01-01T24:00:00Z",
        "2023-01-01T23:60:00Z",
        "2023-01-01T23:59:60Z",
        "0000-12-31T23:00:00Z",
        "0001-01-01T00:30:00+01:00",
        "9999-12-31T23:00:00-01:00",
        "2023-01-01T00:00:00",
        "2023-01-01 00:00:00Z",
        "2023-01-01T00:00:00.Z",
        "2023-01-01T00:00:00.12345678Z",
        "2023-01-01T00:00:00+14:01",
        "2023-01-01T00:00:00+03:60",
        "2023-01-01T00:00:00+0300",
        "2023-01-01T00:00:00ZZ",
        "２023-01-01T00:00:00Z",
        "2023-1-01T00:00:00Z",
        "",
    ] {
        assert_eq!(expected_date(text), None, "{text}");
    }
}
