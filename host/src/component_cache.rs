//! Compiles the guest once per machine, not once per start.
//!
//! Compiling the component with Cranelift takes far longer than a command
//! line user should pay on every `sandbox-process exec`. The compiled
//! artifact is cached in a private directory, keyed by the wasm bytes and the
//! engine's compatibility hash (wasmtime version, target, settings), and
//! memory-mapped on later starts. A stale or corrupt entry is recompiled.
//!
//! The cache holds native code that the host will run: it lives in a
//! directory created with mode 0700 and is written atomically (temp file +
//! rename), so only the user running the host can change it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::Result;
use wasmtime::component::Component;
use wasmtime::error::Context;

/// The default cache directory: `$XDG_CACHE_HOME/sandbox-process`, else
/// `$HOME/.cache/sandbox-process`; `None` when neither is set.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("sandbox-process"))
}

/// Loads `wasm` compiled for `engine`, from `cache_dir` when it holds a good
/// entry, else compiling it (and storing the result when `cache_dir` is set).
pub fn load(engine: &Engine, name: &str, wasm: &[u8], cache_dir: Option<&Path>) -> Result<Component> {
    let Some(dir) = cache_dir else {
        return Component::new(engine, wasm).with_context(|| format!("compiling {name}"));
    };
    if let Err(e) = create_private_dir(dir) {
        // A read-only home is no reason to fail: run uncached.
        tracing::warn!(dir = %dir.display(), "not caching the compiled component: {e:#}");
        return Component::new(engine, wasm).with_context(|| format!("compiling {name}"));
    }
    let path = dir.join(format!("{name}-{:016x}.cwasm", cache_key(engine, wasm)));
    if path.exists() {
        // SAFETY: the file is one this function wrote, in a directory only
        // this user can write (see the module docs); wasmtime also checks
        // that it was compiled by a compatible engine and errors otherwise.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok(component),
            Err(e) => tracing::warn!(path = %path.display(), "recompiling: cached component unusable: {e}"),
        }
    }
    let component = Component::new(engine, wasm).with_context(|| format!("compiling {name}"))?;
    if let Err(e) = store(dir, &path, &component) {
        tracing::warn!(dir = %dir.display(), "not caching the compiled component: {e:#}");
    }
    Ok(component)
}

fn cache_key(engine: &Engine, wasm: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    wasm.hash(&mut hasher);
    hasher.finish()
}

fn store(dir: &Path, path: &Path, component: &Component) -> Result<()> {
    let bytes = component.serialize()?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), unique()));
    let result = (|| -> Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = std::fs::metadata(dir)?;
    // Refuse a directory others can write: they could plant native code.
    if meta.permissions().mode() & 0o022 != 0 || meta.uid() != rustix::process::geteuid().as_raw() {
        wasmtime::bail!("{} is writable by others or not ours", dir.display());
    }
    Ok(())
}

fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}
