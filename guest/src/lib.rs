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

pub mod api;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod json;
pub mod model;
pub mod render;
pub mod request;
pub mod sse;

// Only on wasm: natively the capability's imports have nothing to link to,
// and `cargo test --workspace` builds this cdylib for the host target too.
#[cfg(all(feature = "component", target_family = "wasm"))]
mod bindings;

#[cfg(test)]
mod tests;
