//! Compiles the default mapper components in `../mappers` for `wasm32-wasip2` so the
//! binary can embed them (`PROXBOX_MAPPERS_DIR`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("workspace root").to_path_buf();
    let mappers = root.join("mappers");
    watch(&mappers);
    watch(&root.join("wit"));

    ensure_wasm_target();
    let target_dir = guest_target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&mappers)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--workspace",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // Flags meant for the host build must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo for the mapper components");
    assert!(
        status.success(),
        "building the default mappers failed; is the wasm32-wasip2 target installed? (`rustup target add wasm32-wasip2`)"
    );
    let out = target_dir.join("wasm32-wasip2").join("release");
    println!("cargo:rustc-env=PROXBOX_MAPPERS_DIR={}", out.display());
}

/// `rust-toolchain.toml` declares `wasm32-wasip2`, but rustup adds a toolchain file's
/// targets only when it installs the toolchain: on a machine that already had rustc
/// 1.95.0, add the target here (a no-op when rustup is absent or the target is there).
fn ensure_wasm_target() {
    let Ok(listed) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return;
    };
    if !listed.status.success()
        || String::from_utf8_lossy(&listed.stdout)
            .lines()
            .any(|l| l.trim() == "wasm32-wasip2")
    {
        return;
    }
    println!("cargo:warning=adding the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
    let _ = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status();
}

/// Rerun when any source file under `dir` (but not a `target` folder) changes.
fn watch(dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                watch(&path);
            }
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// `<cargo target dir>/wasm-guests`, shared by debug, release and check builds.
fn guest_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    // OUT_DIR is <target>/[<triple>/]<profile>/build/<pkg>-<hash>/out.
    let target = out_dir
        .ancestors()
        .find(|p| p.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.join("guests"));
    target.join("wasm-guests")
}
