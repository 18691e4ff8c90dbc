//! Shared helpers of the integration tests: building guest components, paths.

#![allow(dead_code)]

pub mod server;
pub mod sse;
pub mod world;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// `<cargo target dir>/wasm-guests`, where guest components are built.
fn guest_target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // <target>/<profile>/deps/<test binary>
    let target = exe.ancestors().nth(3).expect("target dir");
    target.join("wasm-guests")
}

/// Build the cargo workspace (or standalone crate) at `manifest_dir` for wasm32-wasip2
/// once per test process and return the directory holding its `.wasm` files.
fn build_guests(manifest_dir: &Path) -> PathBuf {
    let target_dir = guest_target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(manifest_dir)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "building guest components in {} failed",
        manifest_dir.display()
    );
    target_dir.join("wasm32-wasip2").join("release")
}

/// Path of a purpose-built test component (`tests/components/<crate>`), e.g. `misbehaving`.
pub fn test_component(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| build_guests(&repo_root().join("tests").join("components")));
    dir.join(format!("{}.wasm", name.replace('-', "_")))
}

/// Path of the example site VM mapper's component.
pub fn example_component() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir =
        DIR.get_or_init(|| build_guests(&repo_root().join("examples").join("site-vm-mapper")));
    dir.join("site_vm_mapper.wasm")
}

/// Path of the example site IP mapper's component.
pub fn example_ip_component() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir =
        DIR.get_or_init(|| build_guests(&repo_root().join("examples").join("site-ip-mapper")));
    dir.join("site_ip_mapper.wasm")
}

/// The `proxbox-host` binary under test.
pub fn host_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_proxbox-host"))
}

/// Run the binary with `args` and an isolated mapper cache; return (exit code, stdout, stderr).
pub fn run_host(args: &[&str], cache: &Path) -> (i32, String, String) {
    let out = Command::new(host_binary())
        .args(args)
        .env("PROXBOX_MAPPER_CACHE_DIR", cache)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run proxbox-host");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A mapping context for component tests.
pub fn mapper_context() -> proxbox_host::mapper::v1::Context {
    use proxbox_host::mapper::v1::{ClusterMode, Context};
    Context {
        endpoint_id: 1,
        endpoint_name: "pve".into(),
        cluster_name: "lab".into(),
        cluster_mode: ClusterMode::Cluster,
        node: "pve1".into(),
        site_hint: None,
        tenant_hint: None,
        params: vec![],
        now: "2026-01-01T00:00:00Z".into(),
    }
}

/// A minimal QEMU guest to map.
pub fn mapper_guest(vmid: u32, name: &str) -> proxbox_host::mapper::MapInput {
    use proxbox_host::mapper::MapInput;
    use proxbox_host::mapper::v1::{GuestInput, GuestType};
    MapInput::VirtualMachine(GuestInput {
        vmid,
        guest_type: GuestType::Qemu,
        name: name.into(),
        node: "pve1".into(),
        status: "running".into(),
        template: false,
        vcpus: Some(2),
        memory_bytes: None,
        maxdisk_bytes: None,
        tags: vec![],
        pool: None,
        lock: None,
        onboot: None,
        agent: None,
        unprivileged: None,
        ostype: None,
        searchdomain: None,
        hostname: None,
        description: None,
        disks: vec![],
        nics: vec![],
        raw: vec![],
    })
}

/// The guests a backup job selects in the simulator's state: its VMID list, every guest
/// but the excluded ones (`all`), or its pool's members.
pub fn backup_job_selection(
    state: &proxmox_sim::EndpointState,
    job: &proxmox_sim::PveObject,
) -> Vec<u64> {
    let list = |key: &str| -> Vec<u64> {
        job.get(key)
            .and_then(serde_json::Value::as_str)
            .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
            .unwrap_or_default()
    };
    if job.contains_key("vmid") {
        return list("vmid");
    }
    let excluded = list("exclude");
    let pool = job.get("pool").and_then(serde_json::Value::as_str);
    state
        .guests
        .values()
        .filter(|g| job.contains_key("all") || (pool.is_some() && g.pool.as_deref() == pool))
        .map(|g| u64::from(g.vmid))
        .filter(|v| !excluded.contains(v))
        .collect()
}
