//! `clone3` with `CLONE_INTO_CGROUP`, for x86_64 only.
//!
//! A child moved into its cgroup after the `clone` makes the kernel take
//! its cgroup threadgroup lock for writing, which waits for an RCU grace
//! period after a quiet moment (5 to 20 ms a spawn); one born inside costs
//! nothing more. glibc has no `clone3` wrapper that runs a function on a
//! new stack, and the child must not return through the parent's frames,
//! so the system call is a few instructions of assembly, written for this
//! architecture; the others compile only the fallback (see `super`).

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use super::child::{ChildContext, child_main};
use super::stack::ChildStack;

/// Set once `clone3` into a cgroup was refused as unsupported.
static NO_CLONE_INTO_CGROUP: AtomicBool = AtomicBool::new(false);

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` as of Linux 5.7 (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)`, running
/// [`child_main`] on `stack` inside the cgroup `dir`; `None` where the
/// kernel can't (then use the fallback).
pub(super) fn clone_into_cgroup(ctx: &ChildContext, stack: &ChildStack, dir: RawFd) -> Option<io::Result<libc::pid_t>> {
    if NO_CLONE_INTO_CGROUP.load(Ordering::Relaxed) {
        return None;
    }
    let (low, size) = stack.usable();
    let mut args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: low as u64,
        stack_size: size as u64,
        cgroup: dir as u64,
        ..CloneArgs::default()
    };
    let ret = super::signals_blocked(|| {
        // SAFETY: `args` describes the usable part of `stack`, which this
        // thread owns and no one else uses; `ctx` outlives the child's use
        // of it (CLONE_VFORK suspends this thread until the child executed
        // or exited); `child_main` follows the rules of `child`.
        unsafe { raw_clone3(&mut args, ctx) }
    });
    if ret >= 0 {
        return Some(Ok(ret as libc::pid_t));
    }
    let errno = -ret as i32;
    // No clone3 (ENOSYS), no CLONE_INTO_CGROUP (EINVAL), a larger struct
    // than the kernel knows (E2BIG): the kernel is too old for this.
    if matches!(errno, libc::ENOSYS | libc::EINVAL | libc::E2BIG) {
        NO_CLONE_INTO_CGROUP.store(true, Ordering::Relaxed);
        tracing::info!(errno, "clone3 into a cgroup is unavailable: children move themselves into theirs");
        return None;
    }
    Some(Err(io::Error::from_raw_os_error(errno)))
}

/// The `clone3` system call; in the child, calls `child_main(ctx)` on the
/// new stack and exits. Returns the pid or `-errno`.
///
/// # Safety
///
/// `args` must describe a stack the child may use, and `ctx` must stay
/// valid until the child has executed or exited (with CLONE_VFORK it does).
unsafe fn raw_clone3(args: &mut CloneArgs, ctx: &ChildContext) -> i64 {
    let ret: i64;
    // The child resumes after `syscall` with the new stack pointer and the
    // parent's registers; it must not return through the parent's frames,
    // so it calls `child_main` from here (which executes or exits) and
    // exits itself should that ever return.
    // SAFETY: the caller's promises above; the assembly clobbers only the
    // registers it declares (`syscall` writes rcx and r11), and in the
    // parent it falls through with the result in rax.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "mov edi, eax",
            "mov eax, 60", // exit
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") ctx as *const ChildContext,
            in("r13") child_main as extern "C" fn(*mut libc::c_void) -> libc::c_int,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}
