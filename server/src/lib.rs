//! The sandbox process HTTP API over the `sandbox-process` host library:
//! [`http`] authenticates, refuses cross-site requests, bounds slow
//! clients, routes each request to the guest's exported function and
//! streams the frames it renders. The `sandbox-process` binary (`serve`,
//! `exec`, `validate`, `export-wasm`) is this crate's command line.
#![deny(missing_docs)]

pub mod http;

pub use http::HttpConfig;
