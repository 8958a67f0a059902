//! The code generated from `proto/entitlement/v1/entitlement.proto`, its encoded
//! descriptor set (for server reflection), and the message's fields by property,
//! generated from the assignment's one description.

use prost_types::Timestamp;

use crate::domain::{Property, for_each_property};

/// Package `entitlement.v1`: messages, the tonic client and the tonic server.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("entitlement.v1");
}

/// The encoded `FileDescriptorSet` of the contract and everything it imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/entitlement_descriptor.bin"));

/// One property's field(s) in an [`v1::AccessPackageAssignment`], by kind: the key
/// and strings are `optional string`, a date-time is a Timestamp plus its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    Text(Option<&'a str>),
    Bool(Option<bool>),
    DateTime(Option<&'a Timestamp>, Option<i32>),
}

/// [`Field`], to write.
#[derive(Debug, PartialEq, Eq)]
pub enum FieldMut<'a> {
    Text(&'a mut Option<String>),
    Bool(&'a mut Option<bool>),
    DateTime(&'a mut Option<Timestamp>, &'a mut Option<i32>),
}

macro_rules! proto_representation {
    ($($variant:ident $name:literal $field:ident $kind:ident [$($column:ident),+] $(offset $offset:ident)?;)*) => {
        impl v1::AccessPackageAssignment {
            /// The field(s) behind `property`.
            pub fn field(&self, property: Property) -> Field<'_> {
                match property {
                    $(Property::$variant => proto_representation!(@get $kind self.$field $(, self.$offset)?),)*
                }
            }

            /// The field(s) behind `property`, to write.
            pub fn field_mut(&mut self, property: Property) -> FieldMut<'_> {
                match property {
                    $(Property::$variant => proto_representation!(@get_mut $kind self.$field $(, self.$offset)?),)*
                }
            }
        }
    };
    (@get key $e:expr) => { Field::Text($e.as_deref()) };
    (@get text $e:expr) => { Field::Text($e.as_deref()) };
    (@get required_text $e:expr) => { Field::Text($e.as_deref()) };
    (@get bool $e:expr) => { Field::Bool($e) };
    (@get date_time $e:expr, $offset:expr) => { Field::DateTime($e.as_ref(), $offset) };
    (@get_mut key $e:expr) => { FieldMut::Text(&mut $e) };
    (@get_mut text $e:expr) => { FieldMut::Text(&mut $e) };
    (@get_mut required_text $e:expr) => { FieldMut::Text(&mut $e) };
    (@get_mut bool $e:expr) => { FieldMut::Bool(&mut $e) };
    (@get_mut date_time $e:expr, $offset:expr) => { FieldMut::DateTime(&mut $e, &mut $offset) };
}

for_each_property!(proto_representation);

impl v1::AccessPackageAssignment {
    /// Clears the field(s) of `property`.
    pub fn clear(&mut self, property: Property) {
        match self.field_mut(property) {
            FieldMut::Text(value) => *value = None,
            FieldMut::Bool(value) => *value = None,
            FieldMut::DateTime(instant, offset) => {
                *instant = None;
                *offset = None;
            }
        }
    }
}
