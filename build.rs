//! Compiles the protobuf contract with protox (a pure-Rust protobuf compiler, so no
//! `protoc` is needed) and generates the tonic client and server from it. The
//! descriptor set is also written to OUT_DIR for server reflection.

use std::{env, fs, path::PathBuf};

use protox::prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/entitlement/v1/entitlement.proto";
    println!("cargo:rerun-if-changed=proto");

    // Source info keeps the proto's comments: prost turns them into rustdoc, and
    // reflection hands them to grpcurl's `describe`.
    let fds = protox::Compiler::new(["proto"])?
        .include_imports(true)
        .include_source_info(true)
        .open_files([proto])?
        .file_descriptor_set();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    fs::write(
        out_dir.join("entitlement_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
