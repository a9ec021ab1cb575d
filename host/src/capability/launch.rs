//! Starting a child without copying the host's address space.
//!
//! `fork` copies the page tables of every mapping of the host, and the
//! child's `exec` then tears them down again. A wasmtime host has many
//! mappings (an instance pool is a few per slot) and much resident memory,
//! so a forked spawn costs about twice a `posix_spawn` of the same program
//! here. `std` only spawns without forking when the command has no
//! `pre_exec` hook, and the capability needs several (the parent-death
//! signal, the cgroup, default signal dispositions).
//!
//! So the child is made the way `posix_spawn` makes it: `clone` with
//! `CLONE_VM | CLONE_VFORK`. It shares the host's memory and runs on a stack
//! of its own while the spawning thread is suspended, until it executes the
//! program (or exits). What it runs before that is [`child_main`]: system
//! calls only, on data the parent prepared, no allocation, no lock, no
//! unwinding. All signals are blocked across the `clone` so that none of
//! the host's handlers can run in the child (on the host's memory) before
//! the child has reset its dispositions.
//!
//! With cgroup containment the child is created inside its cgroup
//! (`clone3` with `CLONE_INTO_CGROUP`): moving it in afterwards takes the
//! kernel's cgroup threadgroup lock for writing, which waits for an RCU
//! grace period after a quiet moment (5 to 20 ms a spawn). `clone3` with a
//! stack of its own needs a few instructions of assembly (the child must
//! not return through the parent's frames), written here for x86_64; other
//! architectures, and kernels without `clone3` or `CLONE_INTO_CGROUP`
//! (before 5.7), use glibc's `clone` and the move.
//!
//! A failure in the child before `exec` is written into the shared context
//! (which step, which errno) and the child exits with 127; the parent reaps
//! it and reports the step and the OS reason.
//!
//! Waiting for the child and reaping it is `reap`'s job.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use super::exhaustion::{Creating, OsFailure};

/// The child's own stack: it only makes system calls through libc.
const CHILD_STACK: usize = 64 << 10;

/// Where a child's standard stream goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stdio {
    /// A new pipe, the other end to the host.
    Pipe,
    /// `/dev/null`.
    Null,
}

/// What to start.
pub(crate) struct Launch<'a> {
    /// The executable, an absolute path.
    pub program: &'a Path,
    /// argv, starting with argv[0].
    pub argv: Vec<&'a OsStr>,
    /// The whole environment.
    pub env: &'a [(String, String)],
    /// The working directory.
    pub dir: &'a Path,
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    /// The open directory of the cgroup the child starts in.
    pub cgroup: Option<RawFd>,
    /// Ask for SIGKILL when the spawning thread dies.
    pub kill_on_host_death: bool,
}

/// A started child: its pid and the host's ends of its pipes.
pub(crate) struct Launched {
    pub pid: libc::pid_t,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// The steps of [`child_main`] that can fail, for the error message.
const STEPS: [&str; 6] = [
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
const STEP_EXEC: i32 = 5;

/// Everything the child needs, prepared by the parent; and where the child
/// reports a failure. Lives on the parent's stack for the whole `clone`.
#[repr(C)]
struct ChildContext {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    dir: *const libc::c_char,
    /// The fds to become 0, 1 and 2 (all >= 3, close-on-exec).
    stdio: [RawFd; 3],
    /// An open `cgroup.procs` the child writes `0` to, moving itself (the
    /// fallback of `CLONE_INTO_CGROUP`), or -1.
    cgroup_procs: RawFd,
    /// The host's pid when a parent-death signal is wanted, else 0.
    death_parent: libc::pid_t,
    sigrtmax: i32,
    /// The open-file limit the host had before it raised its own (see
    /// `fd_budget`), which the child gets back; `None` if never raised.
    nofile: Option<libc::rlimit>,
    failed_step: AtomicI32,
    failed_errno: AtomicI32,
}

/// Starts `launch`. Blocks the calling thread until the child executed the
/// program or failed to (it is suspended meanwhile, as with `vfork`).
pub(crate) fn launch(launch: &Launch) -> Result<Launched, OsFailure> {
    super::reap::reap_orphans();
    launch_with(launch, true)
}

/// [`launch`], with `CLONE_INTO_CGROUP` allowed or not (the tests take the
/// fallback on purpose).
fn launch_with(launch: &Launch, into_cgroup: bool) -> Result<Launched, OsFailure> {
    let program = cstring(launch.program.as_os_str(), "the program path")?;
    let dir = cstring(launch.dir.as_os_str(), "the working directory")?;
    let argv = launch.argv.iter().map(|a| cstring(a, "an argument")).collect::<io::Result<Vec<_>>>()?;
    let env = launch
        .env
        .iter()
        .map(|(k, v)| cstring(OsStr::new(&format!("{k}={v}")), "an environment variable"))
        .collect::<io::Result<Vec<_>>>()?;
    let argv_ptrs = null_terminated(&argv);
    let env_ptrs = null_terminated(&env);

    // The host's ends stay here; the child's ends are dropped (closed in the
    // host) when this function returns.
    let (stdin_child, stdin_host) = stream(launch.stdin, true)?;
    let (stdout_child, stdout_host) = stream(launch.stdout, false)?;
    let (stderr_child, stderr_host) = stream(launch.stderr, false)?;

    let mut ctx = ChildContext {
        program: program.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        envp: env_ptrs.as_ptr(),
        dir: dir.as_ptr(),
        stdio: [stdin_child.fd(), stdout_child.fd(), stderr_child.fd()],
        cgroup_procs: -1,
        death_parent: if launch.kill_on_host_death { std::process::id() as libc::pid_t } else { 0 },
        sigrtmax: libc::SIGRTMAX(),
        nofile: super::fd_budget::child_open_file_limit(),
        failed_step: AtomicI32::new(0),
        failed_errno: AtomicI32::new(0),
    };
    let mut stack = vec![0u8; CHILD_STACK];
    // The stack grows down: the child starts at the top, 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
    let pid = match launch.cgroup {
        Some(dir) => match into_cgroup.then(|| clone_into_cgroup(&ctx, stack.as_mut_ptr(), top, dir)).flatten() {
            Some(started) => started.map_err(OsFailure::cloning)?,
            None => {
                // The fallback: the child moves itself in.
                let procs = open_procs(dir)?;
                ctx.cgroup_procs = procs.as_raw_fd();
                clone_vfork(&ctx, top).map_err(OsFailure::cloning)?
            }
        },
        None => clone_vfork(&ctx, top).map_err(OsFailure::cloning)?,
    };
    drop(stack);

    let step = ctx.failed_step.load(Ordering::Acquire);
    if step != 0 {
        let errno = ctx.failed_errno.load(Ordering::Acquire);
        // It exited (that is what resumed us): reap it now.
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
        let os = io::Error::from_raw_os_error(errno);
        let error =
            if step == STEP_EXEC { os } else { io::Error::new(os.kind(), format!("{}: {os}", STEPS[step as usize])) };
        return Err(OsFailure { error, errno: Some(errno), creating: Creating::Descriptor });
    }
    Ok(Launched { pid, stdin: stdin_host, stdout: stdout_host, stderr: stderr_host })
}

/// Runs `f` with all signals blocked in this thread (see the module doc).
fn signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: plain sigset manipulation and pthread_sigmask on this thread.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let result = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        result
    }
}

/// glibc's `clone(CLONE_VM | CLONE_VFORK)`, running [`child_main`] on the
/// stack whose top is `top`.
fn clone_vfork(ctx: &ChildContext, top: usize) -> io::Result<libc::pid_t> {
    signals_blocked(|| {
        // SAFETY: `child_main` only makes async-signal-safe system calls on
        // `ctx`, which outlives the child's use of it (CLONE_VFORK suspends
        // this thread until the child has executed or exited), on a stack
        // of its own.
        let pid = unsafe {
            libc::clone(
                child_main,
                top as *mut libc::c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                ctx as *const ChildContext as *mut libc::c_void,
            )
        };
        if pid == -1 { Err(io::Error::last_os_error()) } else { Ok(pid) }
    })
}

/// Opens `cgroup.procs` in the cgroup directory `dir`, for the fallback.
fn open_procs(dir: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: openat on a directory fd we were lent, with a C string.
    let fd = unsafe { libc::openat(dir, c"cgroup.procs".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Set once `clone3` into a cgroup was refused as unsupported.
static NO_CLONE_INTO_CGROUP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)`, running
/// [`child_main`] inside the cgroup `dir`; `None` where that is not
/// available (then use the fallback).
fn clone_into_cgroup(ctx: &ChildContext, stack: *mut u8, top: usize, dir: RawFd) -> Option<io::Result<libc::pid_t>> {
    if NO_CLONE_INTO_CGROUP.load(Ordering::Relaxed) || !cfg!(target_arch = "x86_64") {
        return None;
    }
    let mut args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack as u64,
        stack_size: (top - stack as usize) as u64,
        cgroup: dir as u64,
        ..CloneArgs::default()
    };
    let ret = signals_blocked(|| {
        // SAFETY: as in `clone_vfork`; the child runs `child_main` on its
        // own stack and never returns into this frame.
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

/// The `clone3` system call; in the child, calls `child_main(ctx)` on the
/// new stack and exits. Returns the pid or `-errno`.
///
/// # Safety
///
/// `args` must describe a stack the child may use, and `ctx` must stay
/// valid until the child has executed or exited (with CLONE_VFORK it does).
#[cfg(target_arch = "x86_64")]
unsafe fn raw_clone3(args: &mut CloneArgs, ctx: &ChildContext) -> i64 {
    let ret: i64;
    // The child resumes after `syscall` with the new stack pointer and the
    // parent's registers; it must not return through the parent's frames,
    // so it calls `child_main` from here (which executes or exits) and
    // exits itself should that ever return.
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

#[cfg(not(target_arch = "x86_64"))]
unsafe fn raw_clone3(_: &mut CloneArgs, _: &ChildContext) -> i64 {
    unreachable!("clone_into_cgroup returns before this on other architectures")
}

/// What runs in the child between `clone` and `exec`.
///
/// Only system calls through libc: no allocation, no lock, no panic. `errno`
/// is the suspended parent thread's (the child runs with its thread
/// pointer); it is read right after the failing call.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildContext`, alive until we exec or
    // exit; every pointer in it is valid and NUL-terminated as required.
    unsafe {
        let ctx = &*(arg as *const ChildContext);
        let fail = |step: i32| -> libc::c_int {
            ctx.failed_errno.store(*libc::__errno_location(), Ordering::Release);
            ctx.failed_step.store(step, Ordering::Release);
            libc::_exit(127)
        };
        // Every disposition back to the default before signals are
        // unblocked: a handler of the host must never run here, and an
        // ignored signal (SIGHUP under nohup, SIGINT in a background job)
        // would stay ignored across exec. Through the system call, not
        // glibc's `sigaction`, which refuses its two internal signals (32
        // and 33): a parent can leave those ignored too (cargo's children
        // have them ignored), and the API may send 32 to a child. An
        // all-zero kernel `struct sigaction` is SIG_DFL, no flags, no mask
        // on every architecture; 32 bytes cover its largest layout.
        let dfl = [0u64; 4];
        for sig in 1..=ctx.sigrtmax {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), std::ptr::null_mut::<u64>(), 8usize);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());

        // Its own process group: cannot fail for a new child of ours.
        libc::setpgid(0, 0);
        // Into the cgroup before anything it runs could fork (the fallback;
        // otherwise it was born there).
        if ctx.cgroup_procs >= 0 && libc::write(ctx.cgroup_procs, b"0".as_ptr().cast(), 1) != 1 {
            return fail(STEP_CGROUP);
        }
        if ctx.death_parent != 0 {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) == -1 {
                return fail(STEP_DEATHSIG);
            }
            // The host died before the prctl: no signal will come.
            if libc::getppid() != ctx.death_parent {
                *libc::__errno_location() = libc::ESRCH;
                return fail(STEP_DEATHSIG);
            }
        }
        // The sources are >= 3 (see `above_stdio`), so no dup2 overwrites a
        // source a later one still needs; dup2 clears close-on-exec.
        for (target, &source) in ctx.stdio.iter().enumerate() {
            if libc::dup2(source, target as RawFd) == -1 {
                return fail(STEP_STDIO);
            }
        }
        if libc::chdir(ctx.dir) == -1 {
            return fail(STEP_CHDIR);
        }
        // Lowering a soft limit to at most the hard one can't fail; were it
        // to, the child would only keep the host's higher limit.
        if let Some(nofile) = &ctx.nofile {
            libc::setrlimit(libc::RLIMIT_NOFILE, nofile);
        }
        libc::execve(ctx.program, ctx.argv, ctx.envp);
        fail(STEP_EXEC)
    }
}

fn cstring(s: &OsStr, what: &str) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} contains a NUL byte")))
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

/// The child's end of one stream (an fd >= 3), and the host's end if it is
/// a pipe.
enum ChildEnd {
    Owned(OwnedFd),
    Null,
}

impl ChildEnd {
    fn fd(&self) -> RawFd {
        match self {
            ChildEnd::Owned(fd) => fd.as_raw_fd(),
            ChildEnd::Null => dev_null(),
        }
    }
}

fn stream(how: Stdio, child_reads: bool) -> io::Result<(ChildEnd, Option<OwnedFd>)> {
    if how == Stdio::Null {
        return Ok((ChildEnd::Null, None));
    }
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills `fds` with two new descriptors on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are new and ours.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok(if child_reads {
        (ChildEnd::Owned(above_stdio(read)?), Some(write))
    } else {
        (ChildEnd::Owned(above_stdio(write)?), Some(read))
    })
}

/// `fd`, moved to a number >= 3 if it is one of 0, 1, 2 (a host started with
/// a standard stream closed hands those numbers out), so that the child's
/// `dup2`s onto 0, 1, 2 can't overwrite each other's sources.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor or -1.
    let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if moved == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// A descriptor to hold back while a child starts, and to give up just
/// before the one that can only be opened once it has executed (its
/// pidfd): if descriptors are short, the start fails here, before any
/// program ran, not after.
pub(crate) fn spare_descriptor() -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor or -1.
    let fd = unsafe { libc::fcntl(dev_null(), libc::F_DUPFD_CLOEXEC, 3) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One `/dev/null`, open for the life of the host, for every null stream.
fn dev_null() -> RawFd {
    static NULL: OnceLock<OwnedFd> = OnceLock::new();
    NULL.get_or_init(|| {
        let file = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").expect("/dev/null opens");
        above_stdio(file.into()).expect("a descriptor above 2")
    })
    .as_raw_fd()
}

#[cfg(test)]
mod tests;
