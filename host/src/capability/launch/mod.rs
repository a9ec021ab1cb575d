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
//! program (or exits). What it runs before that is `child::child_main`:
//! async-signal-safe system calls only, on data the parent prepared, no
//! allocation, no lock, no unwinding (the rules are at the top of
//! `child`). Its stack has a guard page below it (`stack`). All signals are blocked across the `clone` so that none of
//! the host's handlers can run in the child (on the host's memory) before
//! the child has reset its dispositions.
//!
//! With cgroup containment the child is created inside its cgroup
//! (`clone3` with `CLONE_INTO_CGROUP`): moving it in afterwards takes the
//! kernel's cgroup threadgroup lock for writing, which waits for an RCU
//! grace period after a quiet moment (5 to 20 ms a spawn). `clone3` with a
//! stack of its own needs a few instructions of assembly (the child must
//! not return through the parent's frames), written for x86_64 in
//! `clone3`; other architectures compile without it, and they and kernels without `clone3` or `CLONE_INTO_CGROUP`
//! (before 5.7), use glibc's `clone` and the move.
//!
//! A failure in the child before `exec` is written into the shared context
//! (which step, which errno) and the child exits with 127; the parent reaps
//! it and reports the step and the OS reason.
//!
//! Waiting for the child and reaping it is `reap`'s job.

//!
//! This module is the safe plumbing around the child: the C strings, the
//! pipes, the choice of `clone`, and the failure report.

mod child;
#[cfg(target_arch = "x86_64")]
mod clone3;
mod stack;

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::AtomicI32;

use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, Rlimit, WaitOptions};

use super::exhaustion::{Creating, OsFailure};
use child::{ChildContext, STEP_EXEC, STEPS, child_main};
#[cfg(target_arch = "x86_64")]
use clone3::clone_into_cgroup;
use stack::{ChildStack, with_child_stack};

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
        program: &program,
        argv: argv_ptrs.as_ptr(),
        envp: env_ptrs.as_ptr(),
        dir: &dir,
        stdio: [stdin_child.fd(), stdout_child.fd(), stderr_child.fd()],
        cgroup_procs: -1,
        death_parent: if launch.kill_on_host_death { Pid::from_raw(std::process::id() as i32) } else { None },
        sigrtmax: libc::SIGRTMAX(),
        nofile: super::fd_budget::child_open_file_limit().map(|l| Rlimit {
            current: (l.rlim_cur != libc::RLIM_INFINITY).then_some(l.rlim_cur),
            maximum: (l.rlim_max != libc::RLIM_INFINITY).then_some(l.rlim_max),
        }),
        failed_step: AtomicI32::new(0),
        failed_errno: AtomicI32::new(0),
    };
    // Kept open until the child is done with it (the fallback's).
    let mut procs = None;
    let pid = with_child_stack(|stack| match launch.cgroup {
        Some(dir) => match into_cgroup.then(|| clone_into_cgroup(&ctx, stack, dir)).flatten() {
            Some(started) => started.map_err(OsFailure::cloning),
            None => {
                // The fallback: the child moves itself in.
                // SAFETY: the caller lends `dir` open for this call.
                let procs = procs.insert(open_procs(unsafe { BorrowedFd::borrow_raw(dir) })?);
                ctx.cgroup_procs = procs.as_raw_fd();
                clone_vfork(&ctx, stack).map_err(OsFailure::cloning)
            }
        },
        None => clone_vfork(&ctx, stack).map_err(OsFailure::cloning),
    })??;
    drop(procs);

    if let Some((step, errno)) = ctx.failure() {
        // It exited (that is what resumed us): reap it now.
        if let Some(child) = Pid::from_raw(pid) {
            while let Err(rustix::io::Errno::INTR) = rustix::process::waitpid(Some(child), WaitOptions::empty()) {}
        }
        let os = io::Error::from_raw_os_error(errno);
        let error =
            if step == STEP_EXEC { os } else { io::Error::new(os.kind(), format!("{}: {os}", STEPS[step as usize])) };
        return Err(OsFailure { error, errno: Some(errno), creating: Creating::Descriptor });
    }
    Ok(Launched { pid, stdin: stdin_host, stdout: stdout_host, stderr: stderr_host })
}

/// Runs `f` with all signals blocked in this thread (see the module doc).
fn signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: plain sigset manipulation and pthread_sigmask on this thread;
    // `all` is filled by sigfillset and `old` by pthread_sigmask before use.
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

/// glibc's `clone(CLONE_VM | CLONE_VFORK)`, running [`child_main`] on
/// `stack`. (rustix has no `clone`: it can't be called safely.)
fn clone_vfork(ctx: &ChildContext, stack: &ChildStack) -> io::Result<libc::pid_t> {
    signals_blocked(|| {
        // SAFETY: `child_main` follows the rules of `child` and reads only
        // `ctx`, which outlives the child's use of it (CLONE_VFORK suspends
        // this thread until the child has executed or exited); it runs on
        // `stack`, which this thread owns and nothing else uses.
        let pid = unsafe {
            libc::clone(
                child_main,
                stack.top().cast(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                ctx as *const ChildContext as *mut libc::c_void,
            )
        };
        if pid == -1 { Err(io::Error::last_os_error()) } else { Ok(pid) }
    })
}

/// Without `clone3` (another architecture): always the fallback.
#[cfg(not(target_arch = "x86_64"))]
fn clone_into_cgroup(_: &ChildContext, _: &ChildStack, _: RawFd) -> Option<io::Result<libc::pid_t>> {
    None
}

/// Opens `cgroup.procs` in the cgroup directory `dir`, for the fallback.
fn open_procs(dir: BorrowedFd) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(dir, c"cgroup.procs", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?)
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
            ChildEnd::Null => dev_null().as_raw_fd(),
        }
    }
}

fn stream(how: Stdio, child_reads: bool) -> io::Result<(ChildEnd, Option<OwnedFd>)> {
    if how == Stdio::Null {
        return Ok((ChildEnd::Null, None));
    }
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
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
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}

/// A descriptor to hold back while a child starts, and to give up just
/// before the one that can only be opened once it has executed (its
/// pidfd): if descriptors are short, the start fails here, before any
/// program ran, not after.
pub(crate) fn spare_descriptor() -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(dev_null(), 3)?)
}

/// One `/dev/null`, open for the life of the host, for every null stream.
fn dev_null() -> BorrowedFd<'static> {
    static NULL: OnceLock<OwnedFd> = OnceLock::new();
    NULL.get_or_init(|| {
        let file = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").expect("/dev/null opens");
        above_stdio(file.into()).expect("a descriptor above 2")
    })
    .as_fd()
}

#[cfg(test)]
mod tests;
