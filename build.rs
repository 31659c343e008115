//! Compiles the protos with protox, a pure-Rust protobuf compiler, so no system `protoc` is needed,
//! and generates their proto3 JSON mapping with pbjson for the Connect/JSON endpoint.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/integration_health/v1/integration_health.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_bytes = descriptors.encode_to_vec();
    std::fs::write(
        out_dir.join("integration_health_descriptor.bin"),
        &descriptor_bytes,
    )?;
    // The well-known types come from pbjson-types, whose Duration carries the JSON form
    // ("86400s") that grpcurl and Connect clients use. Timestamp is the crate's own
    // (src/proto/timestamp.rs): pbjson-types writes "+00:00" where the mapping asks for "Z".
    tonic_build::configure()
        .codec_path("crate::api::codec::ProtoCodec")
        .compile_well_known_types(true)
        .extern_path(".google.protobuf.Timestamp", "crate::proto::Timestamp")
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(descriptors)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .build(&[".integration_health"])?;
    Ok(())
}
