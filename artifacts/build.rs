//! Builds the guest components for `wasm32-wasip2` so that `cargo build`,
//! `cargo test` and `cargo run` need no manual step (the way wasmtime's own
//! test-programs artifacts crate does it), and tells the crate where they
//! are. Everything it writes stays in `OUT_DIR`: copies for other runtimes
//! come from `sandbox-process export-wasm DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The wasm packages this host embeds, and the env var naming each artifact.
const GUESTS: &[(&str, &str, &str)] = &[
    ("sandbox-process-guest", "sandbox_process_guest.wasm", "SANDBOX_PROCESS_GUEST_WASM"),
    ("sandbox-process-validator", "sandbox_process_validator.wasm", "SANDBOX_PROCESS_VALIDATOR_WASM"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().expect("artifacts/ lives in the workspace root");
    for watched in ["guest", "wit", "Cargo.lock"] {
        rerun_if_changed_recursively(&workspace.join(watched));
    }

    // A target dir of its own: the outer cargo holds the lock on ours.
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let target_dir = out_dir.join("guest-target");
    // One cargo run per package: built together, cargo would unify the
    // guest crate's features and the validator would link the guest's
    // bindings (and import the capability it must not need). Each artifact
    // is copied out at once, before the next build can touch it.
    for (package, file, var) in GUESTS {
        build_wasm(workspace, &target_dir, package, &[]);
        let wasm = target_dir.join("wasm32-wasip2/release").join(file);
        let embedded = out_dir.join(file);
        std::fs::copy(&wasm, &embedded).unwrap_or_else(|e| panic!("copying {}: {e}", wasm.display()));
        println!("cargo:rustc-env={var}={}", embedded.display());
    }
    // For the tests only: the guest with its `fault-injection` feature
    // (calls that trap, loop or exhaust memory). A target dir of its own,
    // so that its features can never reach the artifacts above: the
    // binary embeds SANDBOX_PROCESS_GUEST_WASM, never this one.
    if std::env::var_os("CARGO_FEATURE_FAULT_INJECTION").is_none() {
        return;
    }
    let faulty_target = out_dir.join("guest-target-faulty");
    build_wasm(workspace, &faulty_target, "sandbox-process-guest", &["--features", "fault-injection"]);
    let wasm = faulty_target.join("wasm32-wasip2/release/sandbox_process_guest.wasm");
    let faulty = out_dir.join("sandbox_process_guest_faulty.wasm");
    std::fs::copy(&wasm, &faulty).unwrap_or_else(|e| panic!("copying {}: {e}", wasm.display()));
    println!("cargo:rustc-env=SANDBOX_PROCESS_FAULTY_GUEST_WASM={}", faulty.display());
}

fn build_wasm(workspace: &Path, target_dir: &Path, package: &str, extra: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", "wasm32-wasip2", "-p", package])
        .args(extra)
        // Small, fast guests: whole-program optimisation, no debug info.
        .args(["--config", "profile.release.lto=true", "--config", "profile.release.codegen-units=1"])
        .args(["--config", "profile.release.debug=false", "--config", "profile.release.strip=true"])
        .env("CARGO_TARGET_DIR", target_dir)
        // Flags meant for the host (sanitizers, target-cpu) must not reach
        // the wasm build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_LLVM_COV");
    let status = cmd.status().expect("failed to run cargo for the wasm guests");
    if !status.success() {
        panic!(
            "building {package} for wasm32-wasip2 failed ({status}); is the target installed? \
             run `rustup target add wasm32-wasip2`"
        );
    }
}

fn rerun_if_changed_recursively(path: &Path) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap().flatten() {
            rerun_if_changed_recursively(&entry.path());
        }
    } else {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
