//! Start and manage operating-system processes from WebAssembly components,
//! and serve the sandbox process HTTP API on top of it.
//!
//! The crate has three layers:
//!
//! - [`capability`]: the native implementation of the
//!   `sandbox:process/process` WIT interface ([`ProcessTable`]): real
//!   processes, each in its own process group, with bounded capture,
//!   signals, reaping, a [`Policy`] and [`Limits`].
//! - [`add_to_linker`]: gives any wasmtime component that imports the
//!   capability a [`ProcessTable`] to call.
//! - [`GuestRuntime`]: the embedded guest component (which owns the API's
//!   meaning), one fresh instance per call; and [`http`], the server.
#![deny(missing_docs)]

pub mod bindings;
pub mod capability;
mod component_cache;
pub mod http;
mod linker;
mod runtime;

pub use bindings::sandbox::process::types;
pub use capability::{Limits, Policy, ProcessTable};
pub use http::HttpConfig;
pub use linker::{ProcessCapability, ProcessView, add_to_linker};
#[doc(hidden)]
pub use runtime::GuestSession;
pub use runtime::{GUEST_WASM, GuestLimits, GuestRuntime, Reply, StreamPosition, StreamStep, VALIDATOR_WASM};

/// The wall clock in milliseconds since the Unix epoch: the timestamps of
/// the API (start and end times, output lines, SSE frames).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
