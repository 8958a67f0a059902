//! The code generated from `proto/entitlement/v1/entitlement.proto`, and its
//! encoded descriptor set (for server reflection). Nothing else.

/// Package `entitlement.v1`: messages, the tonic client and the tonic server.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("entitlement.v1");
}

/// The encoded `FileDescriptorSet` of the contract and everything it imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/entitlement_descriptor.bin"));
