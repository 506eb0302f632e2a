//! Generated protobuf types and the descriptor set served by reflection.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("ai.integration.v1");

/// Encoded descriptors of `proto/`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ai_integration_descriptor.bin"));
