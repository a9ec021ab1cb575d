//! The invariants of the `guest_body` and `guest_json` fuzz targets
//! (`fuzz/src/requests.rs`), over a fixed corpus of seeded pseudo-random
//! inputs, so that every `cargo test` checks them without a fuzzer.

#[path = "../../fuzz/src/source.rs"]
#[allow(dead_code)]
mod source;

#[path = "../../fuzz/src/requests.rs"]
#[allow(dead_code)]
mod requests;

#[test]
fn raw_bodies_keep_the_invariants() {
    for input in source::corpus(0x6775_6573_7431, 2000, 2048) {
        requests::check_body(&input);
    }
}

#[test]
fn generated_json_bodies_keep_the_invariants() {
    for input in source::corpus(0x6a73_6f6e_0001, 600, 512) {
        requests::check_json(&input);
    }
}
