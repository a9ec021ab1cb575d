//! Test-only faults, compiled in only with the `fault-injection` feature.
//!
//! The host must survive a guest that traps, loops or exhausts its memory:
//! such a call fails alone (500) and the next one succeeds. To show that,
//! the artifacts crate (`artifacts/`, feature `fault-injection`) builds a
//! *second* copy of this guest with the feature on, in a target directory of
//! its own, for the tests; the guest the host embeds never has it.
//!
//! A `start` or `run` body whose `command` is one of these misbehaves
//! instead of starting anything:
//!
//! - `__trap__`: aborts, which on wasm is a trap;
//! - `__loop__`: spins forever, until the host's time budget stops it;
//! - `__oom__`: allocates until the host's memory limit refuses more, then
//!   aborts (as an allocation failure would).
//!
//! On wasm an abort and a panic are the same trap (the guest has no std and
//! prints nothing); aborting says what is meant.

use crate::json::{self, Node};
use crate::prelude::*;

/// Misbehaves as described above if `body` asks for it; otherwise returns.
pub fn inject(body: &[u8]) {
    let Ok(members) = json::object(body) else {
        return;
    };
    let command = members.iter().find_map(|(name, value)| match (name.as_str(), value) {
        ("command", Node::String(command)) => Some(command.as_str()),
        _ => None,
    });
    match command {
        Some("__trap__") => crate::abort(),
        Some("__loop__") => {
            let mut spins: u64 = 0;
            loop {
                spins = core::hint::black_box(spins.wrapping_add(1));
            }
        }
        Some("__oom__") => {
            let mut hog: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut block = Vec::new();
                if block.try_reserve_exact(1 << 20).is_err() || hog.try_reserve(1).is_err() {
                    crate::abort();
                }
                block.resize(1 << 20, 1u8);
                hog.push(core::hint::black_box(block));
            }
        }
        _ => {}
    }
}
