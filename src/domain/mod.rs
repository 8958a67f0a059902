//! The domain: an access package assignment, its validated value types, and the
//! errors the operations on it can end in. Nothing here knows about gRPC, HTTP or SQL.

mod assignment;
mod datetime;
mod error;

pub use assignment::{
    Assignment, AssignmentId, InvalidId, MAX_TEXT_CHARS, Property, Selection, check_text,
};
pub use datetime::{DateTimeError, DateTimeOffset};
pub use error::{Error, FieldViolation};
pub mod filter;
