//! The one error type of the service's operations. The gRPC layer maps it to a
//! `tonic::Status` (in `grpc.rs`); the HTTP front sees only that status.

use super::AssignmentId;

/// One thing wrong with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's Graph (and proto3 JSON) name, e.g. `accessPackageId`.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: &'static str, description: impl Into<String>) -> Self {
        Self {
            field,
            description: description.into(),
        }
    }
}

/// How an operation of the service failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something invalid; every violation found is listed.
    #[error("{}", invalid_message(.0))]
    InvalidArgument(Vec<FieldViolation>),

    /// No assignment has this id.
    #[error(
        "Resource '{0}' does not exist or one of its queried reference-property objects are not present."
    )]
    NotFound(String),

    /// The id is taken by an assignment with different content.
    #[error(
        "An accessPackageAssignment with id '{0}' already exists with different content. Use a new id, or send exactly the stored content to retry."
    )]
    AlreadyExists(AssignmentId),

    /// No credentials, or credentials that do not verify. The text is for the
    /// caller and says nothing about why verification failed.
    #[error("{0}")]
    Unauthenticated(&'static str),

    /// Valid credentials without the permission the operation needs.
    #[error("Insufficient privileges to complete the operation. It requires the permission {0}.")]
    PermissionDenied(&'static str),

    /// The store cannot be reached right now; retrying later may succeed.
    #[error("The service is temporarily unavailable. Retry later.")]
    Unavailable,

    /// A fault of the service (already logged where it happened).
    #[error("The service could not complete the request because of an internal error.")]
    Internal,
}

fn invalid_message(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| {
            format!(
                "Invalid value for property '{}': {}.",
                v.field, v.description
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A caller's text, shortened for a message (messages travel in gRPC headers, and
/// must stay small whatever was sent).
pub fn quote(text: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
        None => text.into(),
    }
}
