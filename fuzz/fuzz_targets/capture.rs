//! The host's output capture under arbitrary pushes, ends, exits and reads
//! (see `sandbox_process_fuzz::capture_check`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sandbox_process_fuzz::capture_check::check(data);
});
