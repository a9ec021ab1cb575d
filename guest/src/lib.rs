//! The guest component of sandbox-process.
//!
//! It owns the meaning of the sandbox process API: it parses and validates
//! untrusted requests, applies defaults, calls the imported `process`
//! capability, maps errors to statuses and renders JSON bodies and
//! server-sent-event frames. The host only routes and runs processes.
//!
//! Everything that decides lives in plain modules ([`api`], [`request`],
//! [`render`], [`sse`], [`model`]) with no generated bindings, so it is
//! tested natively against a fake [`model::Capability`]. With the default
//! `component` feature, a thin bindings layer connects it to the WIT world
//! `guest` (imports `process`, exports `api`).

#![deny(missing_docs)]
// On wasm the guest has no std: std's runtime pulls in WASI (through the
// preview 1 adapter) for what this crate never does (files, clocks, stdio),
// and every import costs each fresh instance. So the component imports the
// process capability and nothing else. Natively (tests, the benchmark's
// baseline) it is an ordinary std crate.
#![cfg_attr(target_family = "wasm", no_std)]

#[cfg_attr(target_family = "wasm", macro_use)]
extern crate alloc;

/// What std's prelude would give, from `alloc`, for the no_std build.
mod prelude {
    #[allow(unused_imports)]
    pub use alloc::{
        borrow::ToOwned,
        boxed::Box,
        string::{String, ToString},
        vec::Vec,
    };
}

#[cfg(target_family = "wasm")]
mod wasm_runtime;
#[cfg(target_family = "wasm")]
pub use wasm_runtime::abort;
/// Ends the process at once (natively, for the fault-injection build's
/// tests; on wasm it is a trap).
#[cfg(not(target_family = "wasm"))]
pub fn abort() -> ! {
    std::process::abort()
}

pub mod api;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod json;
pub mod model;
pub mod output;
pub mod render;
pub mod request;
pub mod sse;

// Only on wasm: natively the capability's imports have nothing to link to,
// and `cargo test --workspace` builds this cdylib for the host target too.
#[cfg(all(feature = "component", target_family = "wasm"))]
mod bindings;

#[cfg(test)]
mod tests;
