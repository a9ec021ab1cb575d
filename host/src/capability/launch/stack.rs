//! The stack the child runs on between `clone` and `exec`.
//!
//! The child shares the host's memory, so a stack overflow there would
//! write over whatever the host mapped below its stack. The stack is a
//! mapping of its own with an inaccessible page at its low end (stacks grow
//! down): an overflow faults (and kills the child) instead. Each spawning
//! thread keeps its stack and reuses it: with `CLONE_VFORK` the thread is
//! suspended until the child executed or exited, and from then on the
//! child runs on the program's own stack, so the next spawn of the same
//! thread finds it free again.

use std::cell::Cell;
use std::ffi::c_void;
use std::io;

use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};

/// The usable part: the child makes a few dozen system calls, no more.
const USABLE: usize = 64 << 10;

/// A child stack with a guard page below it.
#[derive(Debug)]
pub(crate) struct ChildStack {
    /// The start of the mapping: the guard page.
    base: *mut c_void,
    /// The whole mapping, guard included.
    len: usize,
    guard: usize,
}

// SAFETY: the mapping belongs to the `ChildStack` alone (nothing else
// holds its address); moving that ownership to another thread is sound.
unsafe impl Send for ChildStack {}

impl ChildStack {
    fn new() -> io::Result<ChildStack> {
        let guard = rustix::param::page_size();
        let len = guard + USABLE.next_multiple_of(guard);
        // SAFETY: a new private anonymous mapping, placed by the kernel: it
        // overlaps nothing of ours.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::STACK,
            )?
        };
        let stack = ChildStack { base, len, guard };
        // SAFETY: the first page of the mapping made above, owned by
        // `stack` (which unmaps it all if this fails).
        unsafe { rustix::mm::mprotect(base, guard, MprotectFlags::empty())? };
        Ok(stack)
    }

    /// The lowest usable address and the usable size (above the guard).
    pub(crate) fn usable(&self) -> (*mut u8, usize) {
        (self.base.cast::<u8>().wrapping_add(self.guard), self.len - self.guard)
    }

    /// Where the child's stack pointer starts: the high end, which is page
    /// aligned and so 16-byte aligned as the ABIs want.
    pub(crate) fn top(&self) -> *mut u8 {
        self.base.cast::<u8>().wrapping_add(self.len)
    }

    /// The guard page's address (for the tests).
    #[cfg(test)]
    pub(crate) fn guard(&self) -> (*mut u8, usize) {
        (self.base.cast(), self.guard)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the whole mapping made in `new`, used by no child any
        // more (a child leaves it at its exec or exit, before the spawning
        // thread resumes) and by nothing else.
        if let Err(e) = unsafe { rustix::mm::munmap(self.base, self.len) } {
            tracing::warn!(error = %e, "unmapping a child stack failed");
        }
    }
}

std::thread_local! {
    /// The stack of this thread's spawns, made at its first spawn.
    static STACK: Cell<Option<ChildStack>> = const { Cell::new(None) };
}

/// Runs `f` with this thread's child stack, making it the first time.
pub(crate) fn with_child_stack<T>(f: impl FnOnce(&ChildStack) -> T) -> io::Result<T> {
    // Taken out while in use: a nested call (there is none) would only
    // make a stack of its own.
    let stack = match STACK.take() {
        Some(stack) => stack,
        None => ChildStack::new()?,
    };
    let result = f(&stack);
    STACK.set(Some(stack));
    Ok(result)
}
