//! The types and traits `wasmtime::component::bindgen!` generates from
//! `wit/` (world `guest`).
//!
//! Public so that embedders who generate bindings for a world of their own
//! can share these with `with: { "sandbox:process": sandbox_process::bindings::sandbox::process }`
//! and so use [`add_to_linker`](crate::add_to_linker).
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "guest",
    imports: { default: async },
    exports: { default: async },
});
