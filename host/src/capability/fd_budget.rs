//! File descriptors: how many the host needs for its limits, and raising
//! its soft open-file limit to the hard one.
//!
//! Most services start with a soft `RLIMIT_NOFILE` of 1,024, and each
//! running process holds [`PER_PROCESS`] descriptors: at that limit the
//! host would run out a quarter of the way to its default `max_processes`.
//! The hard limit is usually far higher (systemd's default is 524,288), so
//! a server raises its soft limit to the hard one at start-up, then checks
//! that its limits fit ([`FdBudget`]) and refuses (or lowers) a
//! `max_processes` that doesn't. Children get the original soft limit back
//! before they execute: a program that uses `select` (which can't watch a
//! descriptor above 1,023) must see the limit it would have had anyway.

use std::io;
use std::sync::OnceLock;

/// Descriptors the host holds for each running process:
///
/// - the write end of its stdin pipe (with `stdin_mode` `pipe`),
/// - the read ends of its stdout and stderr pipes (when captured),
/// - the pidfd through which it is reaped.
///
/// The child's own ends of the pipes, and with cgroups the open directory
/// of its cgroup (and, where `CLONE_INTO_CGROUP` is missing, its
/// `cgroup.procs`), are closed as soon as the child has executed: they are
/// needed by one start at a time, [`PER_SPAWN`]. A process that ended is
/// not counted: its pipes close at its exit (stdin) and when the last
/// holder of its output pipes exits, and its pidfd when it is reaped; a
/// descendant that outlives it and keeps its stdout or stderr open keeps
/// those two descriptors open too, out of [`RESERVE`] (and a start that
/// then finds none free is answered 429, never worse).
pub const PER_PROCESS: u64 = 4;

/// Descriptors one start needs besides [`PER_PROCESS`], until the child
/// has executed: the child's ends of its three pipes, its cgroup's
/// directory, its `cgroup.procs` (the fallback of `CLONE_INTO_CGROUP`),
/// the moment a pipe end that got number 0, 1 or 2 is moved above them,
/// and the spare held for its pidfd (so that a start short of descriptors
/// fails before the program runs). One spawning thread starts every child,
/// so one start's worth.
pub const PER_SPAWN: u64 = 7;

/// Descriptors each open HTTP connection holds: its socket.
pub const PER_CONNECTION: u64 = 1;

/// Descriptors for everything else: standard streams, the async runtime
/// (epoll, its waker, the signal pipe), the listener, `/dev/null`, the
/// compiled guest's cache file while it loads, logging, the cgroup files
/// opened for a kill or a removal, and stray holders of ended processes'
/// output pipes. An idle `serve` holds 14 (`ls /proc/PID/fd`), the
/// compiled guest's file and a `/proc/self/pagemap` among them.
pub const RESERVE: u64 = 64;

/// Whether `max_processes` running processes and `max_connections` open
/// connections fit in an open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// The descriptors the two limits need, reserve included.
    pub needed: u64,
    /// The open-file limit they must fit in.
    pub limit: u64,
    /// The most processes that fit in `limit` beside the connections: 0
    /// if not even one does.
    pub max_processes: usize,
}

impl FdBudget {
    /// The budget of `max_processes` processes and `max_connections`
    /// connections under an open-file limit of `limit`.
    pub fn new(max_processes: usize, max_connections: usize, limit: u64) -> FdBudget {
        let fixed = (RESERVE + PER_SPAWN).saturating_add(PER_CONNECTION.saturating_mul(max_connections as u64));
        let needed = fixed.saturating_add(PER_PROCESS.saturating_mul(max_processes as u64));
        let room = limit.saturating_sub(fixed) / PER_PROCESS;
        FdBudget { needed, limit, max_processes: usize::try_from(room).unwrap_or(usize::MAX) }
    }

    /// True if the limits fit.
    pub fn fits(&self) -> bool {
        self.needed <= self.limit
    }
}

/// The open-file limit before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// The soft limit the host was started with.
    pub before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit, which only a privileged process can raise.
    pub hard: u64,
}

/// The limit the host started with, once it raised its own.
static ORIGINAL: OnceLock<libc::rlimit> = OnceLock::new();

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (or to
/// `fs.nr_open`, the most the kernel allows, if the hard limit is higher),
/// and remembers the original soft limit for the children it starts from
/// now on. Never lowers it.
pub fn raise_open_file_limit() -> io::Result<OpenFileLimit> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    let target = match std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok()) {
        Some(nr_open) => limit.rlim_max.min(nr_open),
        None => limit.rlim_max,
    };
    if target > before {
        let raised = libc::rlimit { rlim_cur: target, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Only the first raise sees the original (a later one finds
        // nothing to raise).
        let _ = ORIGINAL.set(limit);
    }
    Ok(OpenFileLimit { before, soft: target.max(before), hard: limit.rlim_max })
}

/// The soft limit children get back before they execute: the one the host
/// started with, if [`raise_open_file_limit`] raised it.
pub(crate) fn child_open_file_limit() -> Option<libc::rlimit> {
    let original = *ORIGINAL.get()?;
    // The hard limit stays the host's own: a child may raise its soft limit
    // as far as the host could.
    let mut now = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) } != 0 {
        return None;
    }
    Some(libc::rlimit { rlim_cur: original.rlim_cur.min(now.rlim_max), rlim_max: now.rlim_max })
}

#[cfg(test)]
mod tests;
