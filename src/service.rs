//! The operations on assignments (create, get) over a [`Store`]. Every rule about
//! what a valid assignment is lives here, so gRPC and HTTP callers get the same
//! answers.

use std::sync::Arc;

use crate::{
    domain::{
        Assignment, AssignmentId, DateTimeError, DateTimeOffset, Error, FieldViolation, InvalidId,
        Property, check_text,
    },
    storage::{Inserted, Store, StoreError},
};

/// An assignment as a caller sent it, not yet validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewAssignment {
    pub id: Option<String>,
    pub catalog_id: Option<String>,
    pub access_package_id: Option<String>,
    pub assignment_policy_id: Option<String>,
    pub target_id: Option<String>,
    pub assignment_status: Option<String>,
    pub assignment_state: Option<String>,
    pub is_extended: Option<bool>,
    /// The instant as `google.protobuf.Timestamp` parts: seconds and nanos.
    pub expired_date_time: Option<(i64, i32)>,
    /// The offset `expired_date_time` was written with, in minutes east of UTC.
    pub expired_date_time_offset_minutes: Option<i32>,
}

/// The name of the field that carries expiredDateTime's offset (gRPC only).
const OFFSET_FIELD: &str = "expiredDateTimeOffsetMinutes";

impl NewAssignment {
    /// Checks every rule and lists every violation at once.
    fn validate(self) -> Result<Assignment, Error> {
        let mut violations = Vec::new();
        let mut text =
            |property: Property, value: Option<String>, required: bool| -> Option<String> {
                match value {
                    None if required => {
                        violations.push(FieldViolation::new(property.name(), "it is required"));
                        None
                    }
                    Some(v) if required && v.is_empty() => {
                        violations.push(FieldViolation::new(
                            property.name(),
                            "it is required and must not be empty",
                        ));
                        None
                    }
                    Some(v) => match check_text(&v) {
                        Ok(()) => Some(v),
                        Err(why) => {
                            violations.push(FieldViolation::new(property.name(), why));
                            None
                        }
                    },
                    None => None,
                }
            };
        let catalog_id = text(Property::CatalogId, self.catalog_id, false);
        let access_package_id = text(Property::AccessPackageId, self.access_package_id, true);
        let assignment_policy_id = text(
            Property::AssignmentPolicyId,
            self.assignment_policy_id,
            true,
        );
        let target_id = text(Property::TargetId, self.target_id, true);
        let assignment_status = text(Property::AssignmentStatus, self.assignment_status, false);
        let assignment_state = text(Property::AssignmentState, self.assignment_state, false);

        let id = match self.id {
            None => Some(AssignmentId::new_random()),
            Some(text) => match text.parse::<AssignmentId>() {
                Ok(id) => Some(id),
                Err(why) => {
                    violations.push(FieldViolation::new(Property::Id.name(), why.to_string()));
                    None
                }
            },
        };

        let expired_date_time = match (
            self.expired_date_time,
            self.expired_date_time_offset_minutes,
        ) {
            (None, None) => None,
            (None, Some(_)) => {
                violations.push(FieldViolation::new(
                    OFFSET_FIELD,
                    "it is set but expiredDateTime is not",
                ));
                None
            }
            (Some((seconds, nanos)), offset) => {
                let parts = u32::try_from(nanos)
                    .map_err(|_| DateTimeError::Impossible)
                    .and_then(|nanos| {
                        DateTimeOffset::from_parts(seconds, nanos, offset.unwrap_or(0))
                    });
                match parts {
                    Ok(value) => Some(value),
                    Err(why) => {
                        violations.push(FieldViolation::new(
                            Property::ExpiredDateTime.name(),
                            why.to_string(),
                        ));
                        None
                    }
                }
            }
        };

        match (id, access_package_id, assignment_policy_id, target_id) {
            (Some(id), Some(access_package_id), Some(assignment_policy_id), Some(target_id))
                if violations.is_empty() =>
            {
                Ok(Assignment {
                    id,
                    catalog_id,
                    access_package_id,
                    assignment_policy_id,
                    target_id,
                    assignment_status,
                    assignment_state,
                    is_extended: self.is_extended,
                    expired_date_time,
                })
            }
            _ => Err(Error::InvalidArgument(violations)),
        }
    }
}

/// The assignment operations, over a store.
#[derive(Clone)]
pub struct AssignmentService {
    store: Arc<dyn Store>,
}

impl AssignmentService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Creates an assignment, idempotently by id: when one with the same id and the
    /// same content exists, it is returned as stored.
    ///
    /// # Errors
    /// `InvalidArgument` for a rule broken, `AlreadyExists` when the id is taken by
    /// different content, `Unavailable`/`Internal` when storage fails.
    #[tracing::instrument(name = "service.create", skip_all, fields(assignment.id))]
    pub async fn create(&self, new: NewAssignment) -> Result<Assignment, Error> {
        let assignment = new.validate()?;
        tracing::Span::current().record("assignment.id", tracing::field::display(assignment.id));
        match self.store.insert(&assignment).await.map_err(store_failed)? {
            Inserted::Created => {
                tracing::debug!("assignment created");
                Ok(assignment)
            }
            Inserted::Existing(stored) if stored == assignment => Ok(stored),
            Inserted::Existing(_) => Err(Error::AlreadyExists(assignment.id)),
        }
    }

    /// Reads one assignment.
    ///
    /// # Errors
    /// `InvalidArgument` when `id` is not a GUID, `NotFound` when there is no such
    /// assignment, `Unavailable`/`Internal` when storage fails.
    #[tracing::instrument(name = "service.get", skip_all, fields(assignment.id = id))]
    pub async fn get(&self, id: &str) -> Result<Assignment, Error> {
        let parsed: AssignmentId = id.parse().map_err(|why: InvalidId| {
            Error::InvalidArgument(vec![FieldViolation::new(
                Property::Id.name(),
                why.to_string(),
            )])
        })?;
        self.store
            .get(&parsed)
            .await
            .map_err(store_failed)?
            .ok_or_else(|| Error::NotFound(id.to_owned()))
    }

    /// Whether the store answers.
    pub async fn ready(&self) -> bool {
        self.store.ping().await.is_ok()
    }
}

/// Converts a storage failure at the boundary, logging its cause once, here.
fn store_failed(error: StoreError) -> Error {
    match error {
        StoreError::Unavailable(_) => {
            tracing::warn!(error = %error, "store unavailable");
            Error::Unavailable
        }
        StoreError::Internal(_) => {
            tracing::error!(error = %error, "store failed");
            Error::Internal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> NewAssignment {
        NewAssignment {
            access_package_id: Some("p".into()),
            assignment_policy_id: Some("q".into()),
            target_id: Some("t".into()),
            ..NewAssignment::default()
        }
    }

    fn violations(new: NewAssignment) -> Vec<&'static str> {
        match new.validate() {
            Err(Error::InvalidArgument(v)) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn generates_a_v4_id_when_absent() {
        let a = valid().validate().unwrap();
        let text = a.id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4");
        assert_eq!(text, text.to_lowercase());
    }

    #[test]
    fn lists_every_violation() {
        assert_eq!(
            violations(NewAssignment::default()),
            ["accessPackageId", "assignmentPolicyId", "targetId"]
        );
        let new = NewAssignment {
            id: Some("nope".into()),
            catalog_id: Some("x".repeat(1025)),
            target_id: Some(String::new()),
            expired_date_time: Some((0, 50)),
            ..valid()
        };
        assert_eq!(
            violations(new),
            ["catalogId", "targetId", "id", "expiredDateTime"]
        );
    }

    #[test]
    fn an_offset_needs_an_instant() {
        let new = NewAssignment {
            expired_date_time_offset_minutes: Some(60),
            ..valid()
        };
        assert_eq!(violations(new), [OFFSET_FIELD]);
    }
}
