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
    // Only the imports that really wait are async; the others answer from
    // the table at once.
    imports: {
        "sandbox:process/process.start": async,
        "sandbox:process/process.write-stdin": async,
        "sandbox:process/process.read-output": async,
        "sandbox:process/process.wait": async,
    },
    exports: { default: async },
});
