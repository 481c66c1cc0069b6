//! With the `grpc` feature, compiles the admin API's proto (`proto/sagaflow/admin/v1/admin.proto`)
//! with protox (pure Rust: no system `protoc`) into prost messages, a tonic client and server,
//! and the encoded descriptor set that server reflection serves. Without it, does nothing.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "grpc")]
    admin_proto()?;
    Ok(())
}

#[cfg(feature = "grpc")]
fn admin_proto() -> Result<(), Box<dyn std::error::Error>> {
    use std::path::PathBuf;

    const PROTO: &str = "sagaflow/admin/v1/admin.proto";
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed={}", dir.join(PROTO).display());

    let mut compiler = protox::Compiler::new([&dir])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files([PROTO])?;
    std::fs::write(
        out.join("sagaflow_admin_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
