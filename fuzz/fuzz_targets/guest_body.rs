//! The guest's parsers on raw bytes: start, run and signal bodies and
//! process references (see `sandbox_process_fuzz::requests`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sandbox_process_fuzz::requests::check_body(data);
});
