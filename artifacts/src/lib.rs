//! The guest components of sandbox-process, compiled for `wasm32-wasip2` by
//! this crate's build script (the way wasmtime's `test-programs` artifacts
//! crate builds its test programs), so that `cargo build` needs no manual
//! step.
//!
//! The host embeds [`GUEST_WASM`] and [`VALIDATOR_WASM`]; the tests also
//! take `FAULTY_GUEST_WASM` (feature `fault-injection`), a build of the
//! guest whose calls trap, loop or exhaust memory on request. Each is
//! compiled by its own cargo run into its own target directory, so that one
//! build's features can never reach another's artifact.
#![no_std]
#![deny(missing_docs)]

/// The guest component (world `guest`): the API, over the capability.
pub const GUEST_WASM: &[u8] = include_bytes!(env!("SANDBOX_PROCESS_GUEST_WASM"));

/// The validator component (world `validator`): the guest's validation
/// alone, importing nothing.
pub const VALIDATOR_WASM: &[u8] = include_bytes!(env!("SANDBOX_PROCESS_VALIDATOR_WASM"));

/// TEST-ONLY: the guest built with its `fault-injection` feature: `start`
/// and `run` of the commands `__trap__`, `__loop__` and `__oom__` trap,
/// spin or exhaust memory. Never serve it.
#[cfg(feature = "fault-injection")]
pub const FAULTY_GUEST_WASM: &[u8] = include_bytes!(env!("SANDBOX_PROCESS_FAULTY_GUEST_WASM"));
