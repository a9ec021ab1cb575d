//! The `validator` world: the guest's start-request validation with no
//! capability import, so any component runtime (the plain `wasmtime` CLI
//! included) can check a body. It calls the very function the guest's
//! `validate` uses, so the two can never judge a body differently.

#![deny(missing_docs)]
// No std on wasm, like the guest (whose allocator and panic handler this
// component uses): it imports nothing at all.
#![cfg_attr(target_family = "wasm", no_std)]

extern crate alloc;

use alloc::string::String;

/// Generated bindings, kept in a private module so the lint on missing
/// docs judges only this crate's own items.
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "validator",
    });
}

/// The exported `validate` function.
struct Validator;

impl bindings::Guest for Validator {
    fn validate(body: String) -> Result<String, String> {
        sandbox_process_guest::api::normalize(body.as_bytes())
    }
}

bindings::export!(Validator with_types_in bindings);
