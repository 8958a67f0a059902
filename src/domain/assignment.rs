//! The access package assignment and its id.

use std::{fmt, str::FromStr};

use uuid::Uuid;

use super::DateTimeOffset;

/// The longest string property accepted, in characters (Unicode scalar values).
pub const MAX_TEXT_CHARS: usize = 1024;

/// The properties of `microsoft.graph.accessPackageAssignment`, in the order Graph
/// writes them. The name is both the Graph JSON name and the proto3 JSON name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property {
    Id,
    CatalogId,
    AccessPackageId,
    AssignmentPolicyId,
    TargetId,
    AssignmentStatus,
    AssignmentState,
    IsExtended,
    ExpiredDateTime,
}

impl Property {
    /// Every property, in Graph's order.
    pub const ALL: [Property; 9] = [
        Property::Id,
        Property::CatalogId,
        Property::AccessPackageId,
        Property::AssignmentPolicyId,
        Property::TargetId,
        Property::AssignmentStatus,
        Property::AssignmentState,
        Property::IsExtended,
        Property::ExpiredDateTime,
    ];

    /// Whether a create must carry the property (the service refuses one without
    /// it; `$metadata` says `Nullable="false"`). No wildcard arm: a new property
    /// must be decided here.
    pub const fn required_on_create(self) -> bool {
        match self {
            Property::AccessPackageId | Property::AssignmentPolicyId | Property::TargetId => true,
            // The id is generated when absent.
            Property::Id
            | Property::CatalogId
            | Property::AssignmentStatus
            | Property::AssignmentState
            | Property::IsExtended
            | Property::ExpiredDateTime => false,
        }
    }

    /// The property's Graph (and proto3 JSON) name, e.g. `accessPackageId`.
    pub const fn name(self) -> &'static str {
        match self {
            Property::Id => "id",
            Property::CatalogId => "catalogId",
            Property::AccessPackageId => "accessPackageId",
            Property::AssignmentPolicyId => "assignmentPolicyId",
            Property::TargetId => "targetId",
            Property::AssignmentStatus => "assignmentStatus",
            Property::AssignmentState => "assignmentState",
            Property::IsExtended => "isExtended",
            Property::ExpiredDateTime => "expiredDateTime",
        }
    }

    /// The protobuf field's name, e.g. `access_package_id` (as in a FieldMask).
    pub const fn field_name(self) -> &'static str {
        match self {
            Property::Id => "id",
            Property::CatalogId => "catalog_id",
            Property::AccessPackageId => "access_package_id",
            Property::AssignmentPolicyId => "assignment_policy_id",
            Property::TargetId => "target_id",
            Property::AssignmentStatus => "assignment_status",
            Property::AssignmentState => "assignment_state",
            Property::IsExtended => "is_extended",
            Property::ExpiredDateTime => "expired_date_time",
        }
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

    /// The property's EDM type name, for messages.
    pub const fn edm_type(self) -> &'static str {
        match self {
            Property::IsExtended => "Edm.Boolean",
            Property::ExpiredDateTime => "Edm.DateTimeOffset",
            _ => "Edm.String",
        }
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of properties, e.g. the ones a `$select` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection(u16);

impl Selection {
    /// Every property.
    pub const ALL: Selection = Selection((1 << Property::ALL.len()) - 1);

    /// Only the id (which every selection includes).
    pub const fn id_only() -> Selection {
        Selection(1 << Property::Id as u16)
    }

    /// This selection plus `property`.
    #[must_use]
    pub const fn with(self, property: Property) -> Selection {
        Selection(self.0 | 1 << property as u16)
    }

    pub const fn contains(self, property: Property) -> bool {
        self.0 & (1 << property as u16) != 0
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

/// A stored, valid access package assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub id: AssignmentId,
    pub catalog_id: Option<String>,
    pub access_package_id: String,
    pub assignment_policy_id: String,
    pub target_id: String,
    pub assignment_status: Option<String>,
    pub assignment_state: Option<String>,
    pub is_extended: Option<bool>,
    pub expired_date_time: Option<DateTimeOffset>,
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
