//! What runs in the child between `clone` and `exec`.
//!
//! The child shares the host's memory (`CLONE_VM`) and runs on the stack of
//! [`super::stack`] while the spawning thread is suspended (`CLONE_VFORK`).
//! It is in the position of a signal handler, and worse: any lock another
//! host thread held at the `clone` stays held forever for it. So everything
//! here follows these rules:
//!
//! - async-signal-safe system calls only: rustix's (raw system calls on
//!   the `linux_raw` backend, which touch neither `errno` nor any lock), or
//!   libc's thin wrappers where rustix has no stable API (`rt_sigaction`,
//!   `sigprocmask`, `execve`, `_exit`);
//! - no allocation, no lock, no panic, no unwinding (every call here
//!   returns its error, none can panic), no formatting;
//! - reads only the [`ChildContext`] the parent prepared, and writes only
//!   its two failure fields (atomics: the parent reads them once resumed);
//! - leaves the function only by `execve` or `_exit`.
//!
//! `errno` is read once, after `execve`: the only call here whose failure
//! comes through it. It is the suspended parent thread's (the child runs
//! with its thread pointer), which nothing else writes meanwhile.

use std::ffi::{CStr, c_int, c_void};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use rustix::io::Errno;
use rustix::process::{Pid, Resource, Rlimit, Signal};

/// The steps of [`child_main`] that can fail, for the error message.
pub(super) const STEPS: [&str; 6] = [
    "",
    "joining its cgroup",
    "setting its parent-death signal",
    "redirecting its standard streams",
    "changing to its working directory",
    "executing it",
];
const STEP_CGROUP: i32 = 1;
const STEP_DEATHSIG: i32 = 2;
const STEP_STDIO: i32 = 3;
const STEP_CHDIR: i32 = 4;
pub(super) const STEP_EXEC: i32 = 5;

/// Everything the child needs, prepared by the parent; and where the child
/// reports a failure. Lives on the parent's stack for the whole `clone`.
pub(super) struct ChildContext<'a> {
    pub program: &'a CStr,
    /// NULL-terminated, pointing into strings that outlive the context.
    pub argv: *const *const libc::c_char,
    /// NULL-terminated, as `argv`.
    pub envp: *const *const libc::c_char,
    pub dir: &'a CStr,
    /// The fds to become 0, 1 and 2 (all >= 3, close-on-exec), open for
    /// the whole `clone`.
    pub stdio: [RawFd; 3],
    /// An open `cgroup.procs` the child writes `0` to, moving itself (the
    /// fallback of `CLONE_INTO_CGROUP`), or -1.
    pub cgroup_procs: RawFd,
    /// The host's pid when a parent-death signal is wanted.
    pub death_parent: Option<Pid>,
    pub sigrtmax: i32,
    /// The open-file limit the host had before it raised its own (see
    /// `fd_budget`), which the child gets back; `None` if never raised.
    pub nofile: Option<Rlimit>,
    pub failed_step: AtomicI32,
    pub failed_errno: AtomicI32,
}

impl ChildContext<'_> {
    /// The step that failed and its errno, once the child is done with the
    /// context; `None` if it executed the program.
    pub(super) fn failure(&self) -> Option<(i32, i32)> {
        let step = self.failed_step.load(Ordering::Acquire);
        (step != 0).then(|| (step, self.failed_errno.load(Ordering::Acquire)))
    }
}

/// The child's entry point, for `clone` (and `clone3`'s trampoline).
pub(super) extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `ChildContext`, which stays alive and
    // unmoved until this child executes or exits (CLONE_VFORK keeps the
    // parent suspended until then); nothing else writes it meanwhile.
    let ctx = unsafe { &*(arg as *const ChildContext) };
    let Err((step, errno)) = prepare_and_exec(ctx);
    ctx.failed_errno.store(errno.raw_os_error(), Ordering::Release);
    ctx.failed_step.store(step, Ordering::Release);
    // SAFETY: `_exit` ends this child at once, running no atexit handler
    // and flushing no stdio buffer of the host's.
    unsafe { libc::_exit(127) }
}

/// Everything between `clone` and `exec`; returns only on failure, with
/// the step and its OS reason.
fn prepare_and_exec(ctx: &ChildContext) -> Result<std::convert::Infallible, (i32, Errno)> {
    reset_signals(ctx.sigrtmax);
    // Its own process group: cannot fail for a new child of ours.
    let _ = rustix::process::setpgid(None, None);
    // Into the cgroup before anything it runs could fork (the fallback;
    // otherwise it was born there).
    if ctx.cgroup_procs >= 0 {
        // SAFETY: the parent keeps `cgroup_procs` open for the whole clone.
        let procs = unsafe { BorrowedFd::borrow_raw(ctx.cgroup_procs) };
        match rustix::io::write(procs, b"0") {
            Ok(1) => {}
            Ok(_) => return Err((STEP_CGROUP, Errno::IO)),
            Err(e) => return Err((STEP_CGROUP, e)),
        }
    }
    if let Some(parent) = ctx.death_parent {
        let step = |e| (STEP_DEATHSIG, e);
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).map_err(step)?;
        // The host died before the prctl: no signal will come.
        if rustix::process::getppid() != Some(parent) {
            return Err(step(Errno::SRCH));
        }
    }
    // SAFETY: the parent keeps the three sources open for the whole clone.
    let [stdin, stdout, stderr] = ctx.stdio.map(|fd| unsafe { BorrowedFd::borrow_raw(fd) });
    // The sources are >= 3 (see `above_stdio`), so no dup2 overwrites a
    // source a later one still needs; dup2 clears close-on-exec.
    let step = |e| (STEP_STDIO, e);
    rustix::stdio::dup2_stdin(stdin).map_err(step)?;
    rustix::stdio::dup2_stdout(stdout).map_err(step)?;
    rustix::stdio::dup2_stderr(stderr).map_err(step)?;
    rustix::process::chdir(ctx.dir).map_err(|e| (STEP_CHDIR, e))?;
    // Lowering a soft limit to at most the hard one can't fail; were it
    // to, the child would only keep the host's higher limit.
    if let Some(nofile) = &ctx.nofile {
        let _ = rustix::process::setrlimit(Resource::Nofile, *nofile);
    }
    // SAFETY: `program` is NUL-terminated, `argv` and `envp` are
    // NULL-terminated arrays of NUL-terminated strings, all alive for the
    // clone. `execve` returns only on failure, setting errno, which is
    // read right after it.
    let errno = unsafe {
        libc::execve(ctx.program.as_ptr(), ctx.argv, ctx.envp);
        *libc::__errno_location()
    };
    Err((STEP_EXEC, Errno::from_raw_os_error(errno)))
}

/// Every disposition back to the default, then every signal unblocked.
///
/// The defaults come first: a handler of the host must never run here, and
/// an ignored signal (SIGHUP under nohup, SIGINT in a background job) would
/// stay ignored across exec. Through the system call, not glibc's
/// `sigaction`, which refuses its two internal signals (32 and 33): a
/// parent can leave those ignored too (cargo's children have them
/// ignored), and the API may send 32 to a child. rustix has this call only
/// in its unstable `runtime` module.
fn reset_signals(sigrtmax: i32) {
    // An all-zero kernel `struct sigaction` is SIG_DFL, no flags, no mask
    // on every architecture; 32 bytes cover its largest layout.
    let dfl = [0u64; 4];
    for sig in 1..=sigrtmax {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: a valid kernel sigaction to read, no old one to write,
            // and the kernel's sigset size (8 bytes).
            unsafe {
                libc::syscall(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), std::ptr::null_mut::<u64>(), 8usize);
            }
        }
    }
    // SAFETY: an empty set, initialised by sigemptyset before use; no old
    // mask to write.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}
