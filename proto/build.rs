//! Generates the Rust types of `drc.proto` with prost, and the relay's gRPC
//! service (`relay.proto`) with tonic.
fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=drc.proto");
    println!("cargo:rerun-if-changed=relay.proto");
    // relay.proto imports drc.proto, so one compilation generates both into
    // the one `drc.v1` module.
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        // Record payloads stay `Bytes` so the relay passes them through
        // without copying; the change model keeps its plain `Vec<u8>`.
        .bytes([".drc.v1.PublishRequest", ".drc.v1.Batch"])
        .compile_protos(&["drc.proto", "relay.proto"], &["."])
}
