//! The access package assignment and its id.

use std::{fmt, str::FromStr};

use uuid::Uuid;

use super::DateTimeOffset;

/// The longest string property accepted, in characters (Unicode scalar values).
pub const MAX_TEXT_CHARS: usize = 1024;

/// The one description of `microsoft.graph.accessPackageAssignment`: every property,
/// in the order Graph writes it, with its name on each face. Each representation
/// (the domain type here, the protobuf message in `grpc` and `http::graph_json`, the
/// table row in `storage::sql`) is generated from this list by a macro of its own
/// module, which `for_each_property!` calls with the list:
///
/// ```text
/// Variant  "graphName"  proto_and_domain_field  kind  [columns]  (offset proto_offset_field)?
/// ```
///
/// The Graph name is also the proto3 JSON name. Kinds: `key` (the id, a GUID),
/// `text` (an optional string), `required_text` (a string every create carries),
/// `bool` (optional), `date_time` (an optional DateTimeOffset: a Timestamp plus the
/// offset field on the proto, ticks plus offset minutes in the table). Adding a
/// property means a line here, its field in the proto, and its column(s) in a
/// migration; every match over [`Kind`] is exhaustive, so a new kind must be decided
/// everywhere.
macro_rules! for_each_property {
    ($then:path) => {
        $then! {
            Id                 "id"                 id                   key           [id];
            CatalogId          "catalogId"          catalog_id           text          [catalog_id];
            AccessPackageId    "accessPackageId"    access_package_id    required_text [access_package_id];
            AssignmentPolicyId "assignmentPolicyId" assignment_policy_id required_text [assignment_policy_id];
            TargetId           "targetId"           target_id            required_text [target_id];
            AssignmentStatus   "assignmentStatus"   assignment_status    text          [assignment_status];
            AssignmentState    "assignmentState"    assignment_state     text          [assignment_state];
            IsExtended         "isExtended"         is_extended          bool          [is_extended];
            ExpiredDateTime    "expiredDateTime"    expired_date_time    date_time     [expired_ticks, expired_offset_minutes]
                offset expired_date_time_offset_minutes;
        }
    };
}
pub(crate) use for_each_property;

/// What kind of value a property holds: decides its EDM type, its type on each face,
/// the checks a create applies and the comparisons a filter may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The entity's key: a GUID, generated when a create has none.
    Key,
    /// A string of at most [`MAX_TEXT_CHARS`] characters, no NUL.
    Text,
    /// A [`Kind::Text`] every create must carry, non-empty.
    RequiredText,
    /// A boolean.
    Bool,
    /// A [`DateTimeOffset`].
    DateTime,
}

impl Kind {
    /// The EDM type of a property of this kind.
    pub const fn edm_type(self) -> &'static str {
        match self {
            Kind::Key | Kind::Text | Kind::RequiredText => "Edm.String",
            Kind::Bool => "Edm.Boolean",
            Kind::DateTime => "Edm.DateTimeOffset",
        }
    }

    /// Whether a filter may order-compare it (`lt`, `le`, `gt`, `ge`): date-times.
    pub const fn ordered(self) -> bool {
        match self {
            Kind::DateTime => true,
            Kind::Key | Kind::Text | Kind::RequiredText | Kind::Bool => false,
        }
    }
}

/// The domain's representation: [`Property`] with its metadata, and [`Assignment`].
macro_rules! domain_representation {
    ($($variant:ident $name:literal $field:ident $kind:ident [$($column:ident),+] $(offset $offset:ident)?;)*) => {
        /// The properties of `microsoft.graph.accessPackageAssignment`, in the order
        /// Graph writes them (see [`for_each_property!`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Property {
            $($variant,)*
        }

        impl Property {
            /// Every property, in Graph's order.
            pub const ALL: [Property; [$(Property::$variant),*].len()] = [$(Property::$variant),*];

            /// The property's Graph (and proto3 JSON) name, e.g. `accessPackageId`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Property::$variant => $name,)*
                }
            }

            /// The protobuf field's name, e.g. `access_package_id` (as in a FieldMask).
            pub const fn field_name(self) -> &'static str {
                match self {
                    $(Property::$variant => stringify!($field),)*
                }
            }

            /// What kind of value the property holds.
            pub const fn kind(self) -> Kind {
                match self {
                    $(Property::$variant => domain_representation!(@kind $kind),)*
                }
            }
        }

        /// A stored, valid access package assignment.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Assignment {
            $(pub $field: domain_representation!(@type $kind),)*
        }
    };
    (@kind key) => { Kind::Key };
    (@kind text) => { Kind::Text };
    (@kind required_text) => { Kind::RequiredText };
    (@kind bool) => { Kind::Bool };
    (@kind date_time) => { Kind::DateTime };
    (@type key) => { AssignmentId };
    (@type text) => { Option<String> };
    (@type required_text) => { String };
    (@type bool) => { Option<bool> };
    (@type date_time) => { Option<DateTimeOffset> };
}

for_each_property!(domain_representation);

impl Property {
    /// Whether a create must carry the property (the service refuses one without
    /// it; `$metadata` says `Nullable="false"`).
    pub const fn required_on_create(self) -> bool {
        matches!(self.kind(), Kind::RequiredText)
    }

    /// The property's EDM type name.
    pub const fn edm_type(self) -> &'static str {
        self.kind().edm_type()
    }

    /// The property with this Graph name, if there is one, matched exactly: how a
    /// JSON body names it.
    pub fn from_name(name: &str) -> Option<Property> {
        Property::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The property a query option names: its Graph name in any case, as Graph
    /// matches the names in `$filter`, `$orderby` and `$select`.
    pub fn from_query_name(name: &str) -> Option<Property> {
        Property::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// The property a gRPC field mask names: its field name (`target_id`) or its
    /// Graph name (`targetId`), in any case.
    pub fn from_mask_path(path: &str) -> Option<Property> {
        Property::ALL
            .into_iter()
            .find(|p| p.field_name().eq_ignore_ascii_case(path))
            .or_else(|| Property::from_query_name(path))
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of properties, e.g. the ones a `$select` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection(u32);

impl Selection {
    /// Every property.
    pub const ALL: Selection = Selection((1 << Property::ALL.len()) - 1);

    /// Only the id (which every selection includes).
    pub const fn id_only() -> Selection {
        Selection(1 << Property::Id as u32)
    }

    /// This selection plus `property`.
    #[must_use]
    pub const fn with(self, property: Property) -> Selection {
        Selection(self.0 | 1 << property as u32)
    }

    pub const fn contains(self, property: Property) -> bool {
        self.0 & (1 << property as u32) != 0
    }
}

/// An assignment's id: a GUID, always written lower-case and hyphenated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssignmentId(Uuid);

impl AssignmentId {
    /// A new id for an assignment the caller did not name: a version 7 GUID, random
    /// but ordered by creation time, so that new rows land beside each other in the
    /// id-ordered table and indexes (a group commit then writes a few pages, not a
    /// page per row and index).
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id's 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The id with these 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }
}

/// Why a string is not an assignment id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "it is not a GUID (expected 8-4-4-4-12 hexadecimal digits, e.g. e4383339-3339-e438-3933-38e4393338e4)"
)]
pub struct InvalidId;

impl FromStr for AssignmentId {
    type Err = InvalidId;

    /// Accepts only the hyphenated 36-character form, in either case.
    fn from_str(text: &str) -> Result<Self, InvalidId> {
        if text.len() != 36 {
            return Err(InvalidId);
        }
        Uuid::try_parse(text).map(Self).map_err(|_| InvalidId)
    }
}

impl fmt::Display for AssignmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// Checks a string property: at most [`MAX_TEXT_CHARS`] characters and no NUL
/// (which not every storage backend can keep).
///
/// # Errors
/// A description of what is wrong, for a field violation.
pub fn check_text(text: &str) -> Result<(), String> {
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(format!("it is longer than {MAX_TEXT_CHARS} characters"));
    }
    if text.contains('\0') {
        return Err("it contains the NUL character (U+0000), which is not allowed".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hyphenated_guids_written_lower_case() {
        let id: AssignmentId = "E4383339-3339-E438-3933-38E4393338E4".parse().unwrap();
        assert_eq!(id.to_string(), "e4383339-3339-e438-3933-38e4393338e4");
        for bad in [
            "",
            "e4383339333 9e438393338e4393338e4",
            "e43833393339e438393338e4393338e4",
            "{e4383339-3339-e438-3933-38e4393338e4}",
            "e4383339-3339-e438-3933-38e4393338eg",
        ] {
            assert_eq!(bad.parse::<AssignmentId>(), Err(InvalidId), "{bad}");
        }
    }

    #[test]
    fn text_is_bounded_and_nul_free() {
        assert!(check_text(&"é".repeat(MAX_TEXT_CHARS)).is_ok());
        assert!(check_text(&"a".repeat(MAX_TEXT_CHARS + 1)).is_err());
        assert!(check_text("a\0b").is_err());
        assert!(check_text("\u{1F600}\u{200F}").is_ok());
    }

    #[test]
    fn property_names_round_trip() {
        for p in Property::ALL {
            assert_eq!(Property::from_name(p.name()), Some(p));
            assert_eq!(
                p.field_name().replace('_', "").to_lowercase(),
                p.name().to_lowercase()
            );
        }
        assert_eq!(Property::from_name("AccessPackageId"), None);
    }

    #[test]
    fn query_names_and_mask_paths_match_in_any_case() {
        for (name, property) in [
            ("AccessPackageId", Property::AccessPackageId),
            ("TARGETID", Property::TargetId),
            ("expireddatetime", Property::ExpiredDateTime),
            ("Id", Property::Id),
        ] {
            assert_eq!(Property::from_query_name(name), Some(property), "{name}");
        }
        assert_eq!(Property::from_query_name("target_id"), None);
        assert_eq!(Property::from_query_name("accessPackage"), None);
        for (path, property) in [
            ("target_id", Property::TargetId),
            ("TARGET_ID", Property::TargetId),
            ("targetId", Property::TargetId),
            ("Is_Extended", Property::IsExtended),
        ] {
            assert_eq!(Property::from_mask_path(path), Some(property), "{path}");
        }
        assert_eq!(Property::from_mask_path("target"), None);
    }
}
