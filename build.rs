//! Compiles the protos with protox, a pure-Rust protobuf compiler, so no system `protoc` is needed.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/integration_health/v1/integration_health.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("integration_health_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_build::configure().compile_fds(descriptors)?;
    Ok(())
}
