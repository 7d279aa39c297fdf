//! Generates the gRPC code from `proto/braft.proto` with protox (pure Rust), so that
//! building braft needs no `protoc`. The encoded descriptor set is written beside it
//! for gRPC server reflection. `proto/etcd_kv.proto` (a client for etcd's KV API, used
//! only by `braft bench --target etcd`) is generated the same way, client only.
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/braft.proto");
    println!("cargo:rerun-if-changed=proto/etcd_kv.proto");
    let fds = protox::compile(["proto/braft.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("braft_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(protox::compile(["proto/etcd_kv.proto"], ["proto"])?)?;

    // Build info shown by `GET /raft` (braft's appVersion/gitCommit/buildTime).
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BRAFT_GIT_COMMIT={commit}");
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    println!("cargo:rustc-env=BRAFT_BUILD_TIME={secs}");
    Ok(())
}
