//! What std would provide on wasm: an allocator, a panic handler and the
//! canonical ABI's `cabi_realloc`.

use core::alloc::{GlobalAlloc, Layout};

/// wasi-libc's `malloc`, the allocator std uses on this target. It starts in
/// the unused tail of the initial memory, so a call that allocates a few
/// kilobytes never grows the memory: a grow is a system call in the host
/// (and another to undo it when the instance is recycled), and every call
/// runs on a fresh instance. (The `dlmalloc` crate grows at the first
/// allocation: that cost more than a third of a fresh `validate`.)
struct LibcMalloc;

/// What `malloc` guarantees on wasm32.
const MALLOC_ALIGN: usize = 16;

unsafe extern "C" {
    fn malloc(size: usize) -> *mut u8;
    fn aligned_alloc(align: usize, size: usize) -> *mut u8;
    fn realloc(ptr: *mut u8, size: usize) -> *mut u8;
    fn free(ptr: *mut u8);
}

// SAFETY: forwards to the C allocator, which returns blocks of at least the
// requested size and alignment (or null), and frees what it returned.
unsafe impl GlobalAlloc for LibcMalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: malloc and aligned_alloc take any size; `layout.align()`
        // is a power of two, as aligned_alloc needs.
        unsafe {
            if layout.align() <= MALLOC_ALIGN {
                malloc(layout.size())
            } else {
                aligned_alloc(layout.align(), layout.size())
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _: Layout) {
        // SAFETY: `ptr` came from `alloc` or `realloc` (GlobalAlloc's
        // contract), so from this C allocator.
        unsafe { free(ptr) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` is a live block of `layout` from this allocator
        // (GlobalAlloc's contract); the copy reads at most its size and
        // writes at most the new block's, and the blocks are distinct.
        unsafe {
            if layout.align() <= MALLOC_ALIGN {
                return realloc(ptr, new_size);
            }
            let new = aligned_alloc(layout.align(), new_size);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                free(ptr);
            }
            new
        }
    }
}

#[global_allocator]
static ALLOCATOR: LibcMalloc = LibcMalloc;

/// A panic is a bug in the guest: trap, and the host fails that one call
/// with a 500 (it reports the trap; there is no stderr to print to).
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    abort()
}

/// Ends the call at once: a trap.
pub fn abort() -> ! {
    core::arch::wasm32::unreachable()
}

// wasi-libc: `malloc` and friends (above) and the string functions
// (memcmp; memcpy and memset where LLVM doesn't emit bulk-memory
// instructions), which std would link anyway. None of them imports anything.
#[link(name = "c")]
unsafe extern "C" {}

/// The canonical ABI's allocator export, through which the host passes
/// strings and lists in. std exports it on wasip2; without std, it is ours.
/// Out of memory is a trap: the ABI has no way to report it.
///
/// # Safety
///
/// Called by the component runtime only, as the canonical ABI specifies:
/// `old_ptr`/`old_len`/`align` describe an earlier allocation of this
/// function (or `old_len` is 0), `align` is a power of two.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(old_ptr: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    use alloc::alloc::{Layout, alloc, realloc};
    if new_len == 0 {
        // A zero-sized value: any aligned, non-null address will do.
        return align as *mut u8;
    }
    // SAFETY: as the caller promises (see above).
    let ptr = unsafe {
        if old_len == 0 {
            alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            realloc(old_ptr, Layout::from_size_align_unchecked(old_len, align), new_len)
        }
    };
    if ptr.is_null() {
        abort()
    }
    ptr
}
