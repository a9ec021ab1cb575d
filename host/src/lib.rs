//! Start and manage operating-system processes from WebAssembly components.
//!
//! The crate has three layers:
//!
//! - [`capability`]: the native implementation of the
//!   `sandbox:process/process` WIT interface ([`ProcessTable`]): real
//!   processes, each in its own process group, with bounded capture,
//!   signals, reaping, a [`Policy`] and [`Limits`].
//! - [`add_to_linker`]: gives any wasmtime component that imports the
//!   capability a [`ProcessTable`] to call, through a [`ProcessView`].
//! - [`GuestRuntime`]: the embedded guest component (which owns the API's
//!   meaning), one fresh instance per call.
//!
//! The HTTP server and the `sandbox-process` command line are another
//! crate (`sandbox-process-server`): embedding this one pulls in neither.
#![deny(missing_docs)]

// The capability spawns with Linux system calls (clone3, pidfds, cgroup v2,
// the parent-death signal): say so at compile time, not at the first spawn.
#[cfg(not(target_os = "linux"))]
compile_error!("sandbox-process runs processes with Linux system calls; it builds for Linux only");

pub mod bindings;
pub mod capability;
mod component_cache;
mod linker;
mod runtime;

pub use bindings::sandbox::process::types;
pub use capability::{Limits, Policy, ProcessTable};
pub use linker::{ProcessCapability, ProcessView, add_to_linker};
pub use runtime::{
    GUEST_WASM, GuestLimits, GuestRuntime, GuestSession, OutputPage, OutputPosition, Reply, StreamPosition, StreamStep,
    VALIDATOR_WASM,
};

/// The wall clock in milliseconds since the Unix epoch: the timestamps of
/// the API (start and end times, output lines, SSE frames).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
