//! Generates the protobuf and tonic code from `proto/` at the workspace root.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The protoc shipped in protoc-bin-vendored, unless PROTOC names another one.
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing reads the environment concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("PROTOC", protoc);
        }
    }
    // Read at run time, not with env!(): a compiled build script may be reused for a checkout at
    // another path that shares the target directory (CI clones next to a developer's tree).
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    tonic_prost_build::configure().bytes(".").compile_protos(
        &[
            root.join("sluice/v1/record.proto"),
            root.join("sluice/v1/admin.proto"),
            root.join("sluice/v1/data.proto"),
            root.join("sluice/raft/v1/raft.proto"),
            root.join("sluice/node/v1/node.proto"),
        ],
        &[root],
    )?;
    Ok(())
}
