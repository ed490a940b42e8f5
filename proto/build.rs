//! Compiles `proto/hearth/v1/*.proto` in pure Rust (protox: no protoc to
//! install) into message types and gRPC stubs, and writes the encoded file
//! descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "hearth/v1/device.proto",
    "hearth/v1/common.proto",
    "hearth/v1/telemetry.proto",
    "hearth/v1/devices.proto",
    "hearth/v1/automation.proto",
    "hearth/v1/replicas.proto",
    "hearth/v1/auth.proto",
    "hearth/v1/datagram.proto",
];

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let descriptors = protox::compile(PROTOS, ["proto"]).expect("the .proto files compile");
    fs::write(
        out_dir.join("hearth_descriptor.bin"),
        descriptors.encode_to_vec(),
    )
    .expect("OUT_DIR is writable");

    // Why: build scripts see the crate's features as env vars, so the wasm
    // build (no `server`, no `transport`) gets neither server stubs nor
    // tonic's native transport.
    let server = env::var_os("CARGO_FEATURE_SERVER").is_some();
    let transport = env::var_os("CARGO_FEATURE_TRANSPORT").is_some();
    tonic_prost_build::configure()
        .build_server(server)
        .build_transport(transport)
        .compile_fds(descriptors)
        .expect("code generation succeeds");
}
