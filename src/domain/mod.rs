//! The domain: an access package assignment, described once (`for_each_property!`),
//! its validated value types, and the errors the operations on it can end in. The
//! description names each property on every face; the code of each face lives with
//! that face.

mod assignment;
mod datetime;
mod error;

pub(crate) use assignment::for_each_property;
pub use assignment::{
    Assignment, AssignmentId, InvalidId, Kind, MAX_TEXT_CHARS, Property, Selection, check_text,
};
pub use datetime::{DateTimeError, DateTimeOffset};
pub use error::{Error, FieldViolation, quote};
pub mod filter;
