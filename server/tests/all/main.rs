//! The host's integration tests, in one binary: each test binary links
//! wasmtime and Cranelift, so fifteen of them cost minutes of linking for
//! every change (wasmtime's own `tests/all` does the same for the same
//! reason). One module per area; the helpers shared by several areas are
//! `server` (the real binary on a free port) and `capability_common`.
//!
//! One test lives apart, in `tests/zombies.rs`: it asserts that the test
//! process has no zombie child at all, which only holds in a process where
//! no other test is starting children at the same moment.

mod capability_common;
mod server;

mod api_doc;
mod bad_inputs;
mod capability_budget;
mod capability_containment;
mod capability_limits;
mod capability_policy;
mod capability_process;
mod capture_budget;
mod capture_hold;
mod capture_pages;
mod capture_spill;
mod child_env;
mod cli;
mod component_imports;
mod cross_site;
mod descriptors;
mod faults;
mod guest_api;
mod http_api;
mod load;
mod retry_safety;
mod security;
mod shared_cases;
mod slow_clients;
mod validator_component;
