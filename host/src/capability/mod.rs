//! The native implementation of the `sandbox:process/process` capability.
//!
//! Being built up: so far the bounded line capture (`capture`).

mod capture;

pub use capture::LINE_OVERHEAD_BYTES;
