//! Compiles the .proto files with protox (pure Rust: no system `protoc`) and generates the
//! prost messages and tonic clients and servers, plus the encoded descriptor set that server
//! reflection serves.

use std::path::PathBuf;

const PROTOS: [&str; 4] = [
    "booking.proto",
    "order.proto",
    "payment.proto",
    "upstream.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", dir.join(proto).display());
    }

    let mut compiler = protox::Compiler::new([&dir])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTOS)?;
    std::fs::write(
        out.join("booking_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
