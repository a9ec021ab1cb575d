//! The host's capture module, compiled from its source file.

#[path = "../../host/src/capability/capture.rs"]
pub mod capture;
