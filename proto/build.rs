//! Compiles `neuralign/v1/*.proto` with protoc (installed by the set-up
//! scripts) and writes a descriptor set for gRPC server reflection.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .bytes(".")
        .file_descriptor_set_path(out.join("neuralign_descriptor.bin"))
        .compile_protos(&["neuralign/v1/neuralign.proto"], &["."])?;
    println!("cargo:rerun-if-changed=neuralign/v1/neuralign.proto");
    Ok(())
}
