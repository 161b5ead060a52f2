//! Generates the gRPC protocol code (prost messages + tonic clients and servers) from `proto/mer.proto`.
//! Needs `protoc` (Debian package protobuf-compiler, installed by scripts/bootstrap.sh).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/mer.proto");
    tonic_prost_build::configure().compile_protos(&["proto/mer.proto"], &["proto"])?;
    Ok(())
}
