//! The guest's parsers on JSON bodies built from the input, with the API's
//! field names and hostile values (see `sandbox_process_fuzz::requests`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sandbox_process_fuzz::requests::check_json(data);
});
