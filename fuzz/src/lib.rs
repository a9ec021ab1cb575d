//! What the fuzz targets check, shared with the ordinary test suites.
//!
//! Each check takes arbitrary bytes, drives the code under test with them
//! and asserts its invariants (a panic is a finding). The fuzz targets feed
//! them libFuzzer's inputs; `cargo test` feeds them a fixed corpus of
//! seeded pseudo-random inputs (`source::corpus`), through the same files
//! included by path:
//!
//! - [`requests`]: the guest's parsing and validation of start, run and
//!   signal bodies and process references (`guest/tests/fuzz_invariants.rs`);
//! - [`capture_check`]: the host's bounded line capture
//!   (`host/src/capability/capture/tests.rs`).
//!
//! The capture is compiled here from the host's own source file
//! (`capability::capture`, with [`types`] standing in for the host's
//! generated WIT types) rather than by depending on the host crate: that
//! would build wasmtime, Cranelift and three wasm guests with the fuzzer's
//! instrumentation, for one pure data structure that needs none of them.

pub mod capability;
pub mod capture_check;
pub mod requests;
pub mod source;
pub mod types;
