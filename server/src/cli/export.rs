//! `sandbox-process export-wasm`: writes the guest components this binary
//! embeds, for the other runtimes (Node through jco, the `wasmtime` CLI).
//! The one way copies are made, so that every runtime loads the very bytes
//! this host runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

/// `sandbox-process export-wasm`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The directory to write `sandbox_process_guest.wasm` and
    /// `sandbox_process_validator.wasm` into (created if missing; files
    /// of those names are replaced).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Writes both components into `args.dir` and names each file on stdout.
pub fn export(args: ExportArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    for (name, bytes) in [
        ("sandbox_process_guest.wasm", sandbox_process::GUEST_WASM),
        ("sandbox_process_validator.wasm", sandbox_process::VALIDATOR_WASM),
    ] {
        let path = args.dir.join(name);
        // Written beside, then renamed: a reader never sees half a file.
        let partial = args.dir.join(format!(".{name}.partial"));
        std::fs::write(&partial, bytes).with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
