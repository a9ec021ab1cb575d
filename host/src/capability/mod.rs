//! The native implementation of the `sandbox:process/process` capability.
//!
//! Being built up: so far the bounded line capture (`capture`), the policy
//! and limits (`policy`) and safe signals to process groups (`signal`).

mod capture;
mod policy;
mod signal;

pub use capture::LINE_OVERHEAD_BYTES;
pub use policy::{DEFAULT_PATH, Limits, Policy};
