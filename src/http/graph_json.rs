//! The one mapping between Graph JSON and the protobuf `AccessPackageAssignment`,
//! both ways. Parsing goes straight from the bytes into the prost type, and follows
//! ODataLib's rules: unknown and duplicate properties are refused, every value must
//! have the property's EDM type, and `@odata.type` must name the entity type.

use std::{cell::Cell, fmt};

use prost_types::Timestamp;
use serde::{
    Deserializer, Serialize, Serializer,
    de::{self, DeserializeSeed, MapAccess, Visitor},
    ser::{Error as _, SerializeMap as _},
};

use crate::{
    domain::{DateTimeError, DateTimeOffset, Property, Selection, quote},
    proto::{Field, FieldMut, v1::AccessPackageAssignment},
};

/// The `@odata.type` of the entity, as Graph writes it.
pub const ODATA_TYPE: &str = "#microsoft.graph.accessPackageAssignment";
/// The entity type's qualified name.
const TYPE_NAME: &str = "microsoft.graph.accessPackageAssignment";

/// Why a request body is not a valid assignment. The text is Graph's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error(
        "Unable to read JSON request payload ({0}). Please ensure Content-Type header is set and payload is of valid JSON format."
    )]
    Malformed(String),
    #[error("The request body must be a JSON object: the accessPackageAssignment to create.")]
    NotAnObject,
    #[error(
        "The property '{0}' does not exist on type 'microsoft.graph.accessPackageAssignment'. Make sure to only use property names that are defined by the type or mark the type as open type."
    )]
    UnknownProperty(String),
    #[error(
        "Multiple properties with the name '{0}' were detected in a resource or a complex value. In OData, duplicate property names are not allowed."
    )]
    DuplicateProperty(String),
    #[error("Cannot convert {found} to the expected type '{edm_type}' of property '{property}'.")]
    WrongType {
        property: &'static str,
        edm_type: &'static str,
        found: String,
    },
    #[error(
        "A type named '{0}' could not be resolved by the model. When a model is available, each type name must resolve to a valid type: use '#microsoft.graph.accessPackageAssignment'."
    )]
    UnknownType(String),
    #[error(
        "Cannot convert the literal '{literal}' to the expected type 'Edm.DateTimeOffset' of property '{property}': {reason}."
    )]
    BadDateTime {
        property: &'static str,
        literal: String,
        reason: DateTimeError,
    },
}

/// Reads a Graph JSON body into the protobuf message.
///
/// # Errors
/// A [`JsonError`] whose text says what to fix.
pub fn parse_assignment(body: &[u8]) -> Result<AccessPackageAssignment, JsonError> {
    let error = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = AssignmentSeed { error: &error }
        .deserialize(&mut deserializer)
        .and_then(|assignment| deserializer.end().map(|()| assignment));
    parsed.map_err(|e| match error.take() {
        Some(ours) => ours,
        // Our visitors record every error of their own; a data error they did not
        // record is serde's "invalid type" for a top-level value that is no object.
        None if e.is_data() => JsonError::NotAnObject,
        None => JsonError::Malformed(e.to_string()),
    })
}

/// Writes the message as Graph JSON: `@odata.context` (when given), `@odata.type`,
/// then all nine properties in Graph's order, null where unset.
///
/// # Errors
/// When the message holds an expiredDateTime that no DateTimeOffset can express
/// (only a faulty upstream sends one).
pub fn write_assignment(
    assignment: &AccessPackageAssignment,
    odata_context: Option<&str>,
) -> Result<Vec<u8>, serde_json::Error> {
    write_selected(assignment, odata_context, Selection::ALL)
}

/// [`write_assignment`] with only the selected properties (`$select`).
///
/// # Errors
/// As [`write_assignment`].
pub fn write_selected(
    assignment: &AccessPackageAssignment,
    odata_context: Option<&str>,
    selection: Selection,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(512);
    GraphAssignment {
        assignment,
        odata_context,
        odata_type: true,
        selection,
    }
    .serialize(&mut serde_json::Serializer::new(&mut out))?;
    Ok(out)
}

/// One page of the collection, as Graph writes it.
pub struct CollectionPage<'a> {
    pub odata_context: &'a str,
    pub count: Option<i64>,
    pub next_link: Option<&'a str>,
    pub items: &'a [AccessPackageAssignment],
    /// The properties each item carries (`$select`).
    pub selection: Selection,
}

/// Writes `{"@odata.context", "@odata.count"?, "@odata.nextLink"?, "value": [...]}`;
/// items carry only the selected properties and, as in Graph's minimal metadata,
/// no `@odata.type`.
///
/// # Errors
/// As [`write_assignment`].
pub fn write_collection(page: &CollectionPage<'_>) -> Result<Vec<u8>, serde_json::Error> {
    struct Items<'a>(&'a CollectionPage<'a>);
    impl Serialize for Items<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(self.0.items.iter().map(|assignment| GraphAssignment {
                assignment,
                odata_context: None,
                odata_type: false,
                selection: self.0.selection,
            }))
        }
    }
    let mut out = Vec::with_capacity(256 + 400 * page.items.len());
    let mut serializer = serde_json::Serializer::new(&mut out);
    let mut map = serializer.serialize_map(None)?;
    map.serialize_entry("@odata.context", page.odata_context)?;
    if let Some(count) = page.count {
        map.serialize_entry("@odata.count", &count)?;
    }
    if let Some(next_link) = page.next_link {
        map.serialize_entry("@odata.nextLink", next_link)?;
    }
    map.serialize_entry("value", &Items(page))?;
    map.end()?;
    Ok(out)
}

struct GraphAssignment<'a> {
    assignment: &'a AccessPackageAssignment,
    odata_context: Option<&'a str>,
    odata_type: bool,
    selection: Selection,
}

impl Serialize for GraphAssignment<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let a = self.assignment;
        let mut map = serializer.serialize_map(None)?;
        if let Some(context) = self.odata_context {
            map.serialize_entry("@odata.context", context)?;
        }
        if self.odata_type {
            map.serialize_entry("@odata.type", ODATA_TYPE)?;
        }
        for property in Property::ALL {
            if !self.selection.contains(property) {
                continue;
            }
            let name = property.name();
            match a.field(property) {
                Field::Text(text) => map.serialize_entry(name, &text)?,
                Field::Bool(value) => map.serialize_entry(name, &value)?,
                Field::DateTime(instant, offset) => {
                    let text = instant
                        .map(|t| date_time_offset(*t, offset))
                        .transpose()
                        .map_err(|e| S::Error::custom(format_args!("{name}: {e}")))?;
                    map.serialize_entry(name, &text.map(|t| t.to_string()))?;
                }
            }
        }
        map.end()
    }
}

fn date_time_offset(
    t: Timestamp,
    offset_minutes: Option<i32>,
) -> Result<DateTimeOffset, DateTimeError> {
    let nanos = u32::try_from(t.nanos).map_err(|_| DateTimeError::Impossible)?;
    DateTimeOffset::from_parts(t.seconds, nanos, offset_minutes.unwrap_or(0))
}

/// Records `error` for [`parse_assignment`] and aborts the parse.
fn fail<T, E: de::Error>(slot: &Cell<Option<JsonError>>, error: JsonError) -> Result<T, E> {
    slot.set(Some(error));
    Err(E::custom("see the recorded error"))
}

struct AssignmentSeed<'a> {
    error: &'a Cell<Option<JsonError>>,
}

impl<'de> DeserializeSeed<'de> for AssignmentSeed<'_> {
    type Value = AccessPackageAssignment;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

/// A key of the body's object, borrowed when it has no escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a property name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(v.to_owned().into()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(v.into()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for AssignmentSeed<'_> {
    type Value = AccessPackageAssignment;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = AccessPackageAssignment::default();
        // One bit per property, plus one for @odata.type and one for @odata.context.
        const ODATA_TYPE_BIT: u32 = 1 << Property::ALL.len();
        const ODATA_CONTEXT_BIT: u32 = ODATA_TYPE_BIT << 1;
        let mut seen = 0u32;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let (bit, property) = match key.as_ref() {
                "@odata.type" => (ODATA_TYPE_BIT, None),
                "@odata.context" => (ODATA_CONTEXT_BIT, None),
                name => match Property::from_name(name) {
                    Some(p) => (1 << (p as u32), Some(p)),
                    None => {
                        return fail(
                            self.error,
                            JsonError::UnknownProperty(quote(name).into_owned()),
                        );
                    }
                },
            };
            if seen & bit != 0 {
                return fail(self.error, JsonError::DuplicateProperty(key.into_owned()));
            }
            seen |= bit;
            match property {
                None if key == "@odata.type" => {
                    let value =
                        map.next_value_seed(ValueSeed::<String>::new("@odata.type", self.error))?;
                    match value.as_deref() {
                        Some(ODATA_TYPE | TYPE_NAME) => {}
                        other => {
                            let name =
                                other.map_or_else(|| "null".to_owned(), |v| quote(v).into_owned());
                            return fail(self.error, JsonError::UnknownType(name));
                        }
                    }
                }
                // @odata.context is an annotation of responses; a body copied from
                // one may carry it, and it changes nothing. It must be a URL string.
                None => {
                    map.next_value_seed(ValueSeed::<String>::new("@odata.context", self.error))?;
                }
                Some(p) => {
                    let name = p.name();
                    match out.field_mut(p) {
                        FieldMut::Text(field) => {
                            *field =
                                map.next_value_seed(ValueSeed::<String>::new(name, self.error))?;
                        }
                        FieldMut::Bool(field) => {
                            *field =
                                map.next_value_seed(ValueSeed::<bool>::new(name, self.error))?;
                        }
                        FieldMut::DateTime(instant, offset) => {
                            let text =
                                map.next_value_seed(ValueSeed::<String>::new(name, self.error))?;
                            if let Some(text) = text {
                                match DateTimeOffset::parse(&text) {
                                    Ok(value) => {
                                        *instant = Some(Timestamp {
                                            seconds: value.seconds(),
                                            nanos: value.nanos() as i32,
                                        });
                                        *offset = Some(value.offset_minutes());
                                    }
                                    Err(reason) => {
                                        let literal = quote(&text).into_owned();
                                        return fail(
                                            self.error,
                                            JsonError::BadDateTime {
                                                property: name,
                                                literal,
                                                reason,
                                            },
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A JSON value of one EDM primitive type, or null. Anything else is recorded as a
/// `WrongType` naming the property.
struct ValueSeed<'a, T> {
    property: &'static str,
    error: &'a Cell<Option<JsonError>>,
    _type: std::marker::PhantomData<T>,
}

impl<'a, T> ValueSeed<'a, T> {
    fn new(property: &'static str, error: &'a Cell<Option<JsonError>>) -> Self {
        Self {
            property,
            error,
            _type: std::marker::PhantomData,
        }
    }
}

/// What a [`ValueSeed`] accepts: strings or booleans.
trait Primitive: Sized {
    const EDM_TYPE: &'static str;
    fn from_str(_: &str) -> Option<Self> {
        None
    }
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
}

impl Primitive for String {
    const EDM_TYPE: &'static str = "Edm.String";
    fn from_str(v: &str) -> Option<Self> {
        Some(v.to_owned())
    }
}

impl Primitive for bool {
    const EDM_TYPE: &'static str = "Edm.Boolean";
    fn from_bool(v: bool) -> Option<Self> {
        Some(v)
    }
}

impl<T: Primitive> ValueSeed<'_, T> {
    fn wrong<V, E: de::Error>(&self, found: String) -> Result<V, E> {
        let edm_type = if self.property.starts_with('@') {
            "Edm.String"
        } else {
            T::EDM_TYPE
        };
        fail(
            self.error,
            JsonError::WrongType {
                property: self.property,
                edm_type,
                found,
            },
        )
    }
}

impl<'de, T: Primitive> DeserializeSeed<'de> for ValueSeed<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: Primitive> Visitor<'de> for ValueSeed<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a value of type {}", T::EDM_TYPE)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match T::from_str(v) {
            Some(value) => Ok(Some(value)),
            None => self.wrong(format!("the literal '{}'", quote(v))),
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        match T::from_bool(v) {
            Some(value) => Ok(Some(value)),
            None => self.wrong(format!("the literal '{v}'")),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.wrong(format!("the literal '{v}'"))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.wrong(format!("the literal '{v}'"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.wrong(format!("the literal '{v}'"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        self.wrong("a JSON array".to_owned())
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        self.wrong("a JSON object".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_REQUEST: &str = include_str!("../../tests/fixtures/seed/request.json");

    #[test]
    fn the_seed_example_round_trips() {
        let mut parsed = parse_assignment(SEED_REQUEST.as_bytes()).unwrap();
        assert_eq!(parsed.expired_date_time_offset_minutes, Some(180));
        parsed.id = Some("e4383339-3339-e438-3933-38e4393338e4".into());
        let written: serde_json::Value =
            serde_json::from_slice(&write_assignment(&parsed, None).unwrap()).unwrap();
        let mut expected: serde_json::Value = serde_json::from_str(SEED_REQUEST).unwrap();
        expected["id"] = "e4383339-3339-e438-3933-38e4393338e4".into();
        assert_eq!(written, expected);
    }

    #[test]
    fn unset_properties_are_written_as_null_in_graph_order() {
        let written = write_assignment(&AccessPackageAssignment::default(), Some("ctx")).unwrap();
        assert_eq!(
            String::from_utf8(written).unwrap(),
            r##"{"@odata.context":"ctx","@odata.type":"#microsoft.graph.accessPackageAssignment","id":null,"catalogId":null,"accessPackageId":null,"assignmentPolicyId":null,"targetId":null,"assignmentStatus":null,"assignmentState":null,"isExtended":null,"expiredDateTime":null}"##
        );
    }

    #[test]
    fn collections_carry_only_the_selected_properties() {
        let item = AccessPackageAssignment {
            id: Some("i".into()),
            target_id: Some("t".into()),
            catalog_id: Some("c".into()),
            ..Default::default()
        };
        let page = CollectionPage {
            odata_context: "ctx",
            count: Some(3),
            next_link: Some("next"),
            items: &[item],
            selection: Selection::id_only()
                .with(Property::TargetId)
                .with(Property::AssignmentState),
        };
        assert_eq!(
            String::from_utf8(write_collection(&page).unwrap()).unwrap(),
            r#"{"@odata.context":"ctx","@odata.count":3,"@odata.nextLink":"next","value":[{"id":"i","targetId":"t","assignmentState":null}]}"#
        );
    }

    #[test]
    fn nulls_and_escaped_keys_are_read() {
        let parsed =
            parse_assignment(br#"{"catalogId": null, "target\u0049d": "t", "isExtended": null}"#)
                .unwrap();
        assert_eq!(parsed.catalog_id, None);
        assert_eq!(parsed.target_id.as_deref(), Some("t"));
        assert_eq!(parsed.is_extended, None);
    }

    #[test]
    fn refuses_what_odatalib_refuses() {
        type Check = fn(&JsonError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, JsonError::Malformed(_))),
            ("{", |e| matches!(e, JsonError::Malformed(_))),
            ("{} {}", |e| matches!(e, JsonError::Malformed(_))),
            ("[]", |e| *e == JsonError::NotAnObject),
            ("\"x\"", |e| *e == JsonError::NotAnObject),
            ("null", |e| *e == JsonError::NotAnObject),
            (r#"{"foo": 1}"#, |e| {
                *e == JsonError::UnknownProperty("foo".into())
            }),
            (r#"{"CatalogId": "x"}"#, |e| {
                *e == JsonError::UnknownProperty("CatalogId".into())
            }),
            (r#"{"targetId": "a", "targetId": "a"}"#, |e| {
                *e == JsonError::DuplicateProperty("targetId".into())
            }),
            (r#"{"isExtended": "true"}"#, |e| {
                matches!(
                    e,
                    JsonError::WrongType {
                        property: "isExtended",
                        ..
                    }
                )
            }),
            (r#"{"isExtended": 0}"#, |e| {
                e.to_string().contains("the literal '0'") && e.to_string().contains("Edm.Boolean")
            }),
            (r#"{"targetId": 5}"#, |e| {
                matches!(
                    e,
                    JsonError::WrongType {
                        property: "targetId",
                        ..
                    }
                )
            }),
            (r#"{"targetId": ["a"]}"#, |e| {
                matches!(
                    e,
                    JsonError::WrongType {
                        property: "targetId",
                        ..
                    }
                )
            }),
            (r#"{"targetId": {"a": 1}}"#, |e| {
                matches!(
                    e,
                    JsonError::WrongType {
                        property: "targetId",
                        ..
                    }
                )
            }),
            (r##"{"@odata.type": "#microsoft.graph.user"}"##, |e| {
                matches!(e, JsonError::UnknownType(_))
            }),
            (r#"{"@odata.type": null}"#, |e| {
                matches!(e, JsonError::UnknownType(_))
            }),
            (r#"{"expiredDateTime": "2017-01-01T00:03:03"}"#, |e| {
                matches!(
                    e,
                    JsonError::BadDateTime {
                        reason: DateTimeError::MissingOffset,
                        ..
                    }
                )
            }),
            (r#"{"expiredDateTime": 1}"#, |e| {
                matches!(
                    e,
                    JsonError::WrongType {
                        property: "expiredDateTime",
                        ..
                    }
                )
            }),
            (r#"{"targetId": "\ud800"}"#, |e| {
                matches!(e, JsonError::Malformed(_))
            }),
        ];
        for (body, check) in cases {
            let error = parse_assignment(body.as_bytes()).unwrap_err();
            assert!(check(&error), "{body}: {error:?}");
        }
        assert!(matches!(
            parse_assignment(b"{\"targetId\": \"\xff\"}"),
            Err(JsonError::Malformed(_))
        ));
    }
}
