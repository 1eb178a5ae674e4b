//! Generates the Rust types of `drc.proto` with prost.
fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=drc.proto");
    prost_build::Config::new().compile_protos(&["drc.proto"], &["."])
}
