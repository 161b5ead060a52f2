//! The coordinator <-> worker/client gRPC protocol, generated from `shared/proto/mer.proto` by
//! tonic-prost-build, plus the protocol version both ends check.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The protocol version. Bump it on any incompatible change of `mer.proto` or of the JSON documents
/// carried in it (task payloads, fold results). Sent in the `x-mer-protocol` header of every call and in
/// `RegisterRequest.protocol` / `SubmitRequest.protocol`; a coordinator refuses any other version.
pub const PROTOCOL_VERSION: u32 = 1;

/// The metadata header that carries [`PROTOCOL_VERSION`] on every call.
pub const PROTOCOL_HEADER: &str = "x-mer-protocol";

/// Size of one streamed artifact chunk.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Generated messages and services of package `mer.v1`.
pub mod v1 {
    tonic::include_proto!("mer.v1");
}

pub use v1::*;
