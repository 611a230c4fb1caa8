//! The `neuralign.v1` gRPC contract as Rust types. Only the server (and gRPC
//! clients in tests and tools) depend on this crate; the service layer never
//! sees wire types.
#![allow(clippy::all)]

pub mod v1 {
    tonic::include_proto!("neuralign.v1");

    /// Encoded `FileDescriptorSet` for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("neuralign_descriptor");
}
