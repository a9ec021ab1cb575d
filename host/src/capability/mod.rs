//! The native implementation of the `sandbox:process/process` capability.
//!
//! A [`ProcessTable`] starts real processes and keeps track of them:
//!
//! - each child leads its own process group, so signals and kills reach
//!   everything it started that stayed in the group (`signal`);
//! - where the machine allows it, each child also gets a cgroup (v2) that
//!   nothing it starts can leave, so `kill` ends even descendants that
//!   detached with `setsid`; otherwise process groups alone (`cgroup`,
//!   [`Containment`]);
//! - its environment, working directory and executable are checked against
//!   a [`Policy`] and resolved to canonical paths first (`policy`); the
//!   environment starts from what everyday tools need, not from the
//!   server's own (`environment`);
//! - its output is captured line by line, with timestamps, in a buffer
//!   bounded per stream, and all buffers together by one budget
//!   (`capture`, reclaimed by `table`);
//! - one task per child reaps it, so no zombie is left (`spawn`);
//! - readers and waiters sleep on a per-process `watch` channel rather than
//!   poll (`process`);
//! - dropping the last clone of the table, or [`ProcessTable::shutdown`],
//!   kills every group (and cgroup) it started (`table`);
//! - a start that finds the machine out of descriptors, processes or
//!   memory is `limit-exceeded`, not `spawn-failed` (`exhaustion`); how
//!   many descriptors the limits need is [`fd_budget`]'s count.

mod capture;
mod cgroup;
mod disk;
pub mod environment;
mod exhaustion;
pub mod fd_budget;
mod hold;
mod launch;
mod memory;
mod policy;
mod process;
mod reap;
mod reclaim;
mod signal;
mod spawn;
mod start;
mod stdin;
mod table;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::now_ms;

pub use capture::spill::SpillDir;
pub use capture::{BLOCK_COST_BYTES, LINE_COST_BYTES};
pub use disk::{default_capture_dir, default_capture_disk_total_bytes, free_space};
pub use environment::{DEFAULT_LOCALE, DEFAULT_PATH};
pub use hold::OutputHold;
pub use memory::{available_memory, default_capture_total_bytes};
pub use policy::{Containment, Limits, Policy};

use crate::types::{HostSummary, OutputChunk, OutputSelector, ProcessError, ProcessInfo};
use policy::CheckedPolicy;
use process::Proc;
use table::Inner;

/// How long [`ProcessTable::shutdown`] waits for killed children to be
/// reaped. SIGKILL can't be caught, so only a process stuck in the kernel
/// (uninterruptible I/O) takes longer.
const SHUTDOWN_REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest wait honoured; anything longer would overflow a deadline.
const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The processes a host started, and the capability's operations on them.
///
/// Cheap to clone: every clone is a handle to the same table. Processes are
/// addressed by pid and outlive any one guest instance. When the last clone
/// is dropped, every process group the table started is sent SIGKILL.
#[derive(Clone)]
pub struct ProcessTable {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProcessTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessTable")
            .field("live", &self.live_count())
            .field("containment", &self.inner.containment.describe())
            .finish_non_exhaustive()
    }
}

impl ProcessTable {
    /// An empty table that applies `policy` and `limits` to every start.
    /// The policy's allow-list and root are canonicalized here, once, and
    /// the containment is set up: with cgroups, the table's cgroup is
    /// created (and, at the first table of the process, the cgroups that
    /// hosts killed earlier left behind are cleaned up).
    pub fn new(policy: Policy, limits: Limits) -> Self {
        ProcessTable { inner: Arc::new(Inner::new(CheckedPolicy::new(policy), limits)) }
    }

    /// The current state of process `pid`. Never waits on the process.
    pub fn get(&self, pid: u32) -> Result<ProcessInfo, ProcessError> {
        Ok(self.inner.find(pid)?.info())
    }

    /// Every process the table knows (running, and ended ones still
    /// retained), in start order.
    pub fn list(&self) -> Vec<ProcessInfo> {
        let (mut procs, _) = self.inner.snapshot();
        procs.sort_by_key(|p| p.order);
        procs.iter().map(|p| p.info()).collect()
    }

    /// Sends `signal` (1 to 64) to the process group of `pid`.
    ///
    /// Always the process group, even with cgroup containment (a cgroup can
    /// be killed, not signalled): a descendant that left the group with
    /// `setsid` does not get the signal, though [`ProcessTable::kill`]
    /// ends it.
    ///
    /// Fails with `invalid-signal` for another number and `not-running` once
    /// the process has been reaped.
    pub fn signal(&self, pid: u32, signal: i32) -> Result<(), ProcessError> {
        signal::check(signal)?;
        let proc = self.inner.find(pid)?;
        // Held across the kill so the reaper can't record the end between
        // the check and the signal.
        let state = proc.lock();
        if state.end.is_some() {
            return Err(ProcessError::NotRunning(pid));
        }
        match signal::signal_group(pid, signal) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err(ProcessError::NotRunning(pid)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(ProcessError::InvalidSignal(signal)),
            Err(e) => Err(ProcessError::Internal(format!("signal {signal} to group {pid}: {e}"))),
        }
    }

    /// Ends everything `pid` started: SIGKILL to its process group and,
    /// with cgroup containment, to every process in its cgroup, which
    /// includes descendants that left the group (`setsid`, daemons).
    ///
    /// Succeeds on a process that already ended too, killing what it left
    /// behind: members of its group and, with cgroups, anything in its
    /// cgroup (which is then removed once empty).
    pub fn kill(&self, pid: u32) -> Result<(), ProcessError> {
        let proc = self.inner.find(pid)?;
        proc.kill_group();
        if let Some(cgroup) = &proc.cgroup
            && cgroup.is_reaped()
        {
            // No reap will follow to remove it: do so once the killed exit.
            cgroup.remove_when_empty();
        }
        Ok(())
    }

    /// Writes all of `data` to the stdin pipe of `pid`.
    ///
    /// Fails with `stdin-not-writable` if stdin is not a pipe, was closed,
    /// or the child closed its end; with `limit-exceeded` if the child does
    /// not read it within [`Limits::stdin_write_timeout`].
    pub async fn write_stdin(&self, pid: u32, data: Vec<u8>) -> Result<(), ProcessError> {
        let proc = self.inner.find(pid)?;
        proc.stdin.write(pid, &data, self.inner.limits.stdin_write_timeout).await
    }

    /// Closes the stdin pipe of `pid` (the child reads end of file), even
    /// while a write is blocked on it. A pipe that is closed already
    /// (closed before, by the child, or at its exit) is success: a retried
    /// close must not fail. Fails with `stdin-not-writable` if stdin never
    /// was a pipe.
    pub fn close_stdin(&self, pid: u32) -> Result<(), ProcessError> {
        if self.inner.find(pid)?.stdin.close() {
            Ok(())
        } else {
            Err(stdin::refused(pid, crate::types::StdinState::NotAPipe))
        }
    }

    /// At most `max_lines` captured lines of `pid` from `cursor` on (0 is
    /// the start), and none more once their text reaches 1 MiB (at least
    /// one line: `more` says whether lines remain). If there is none yet and the output is not complete,
    /// waits up to `wait` for one, woken by the pumps rather than polling.
    pub async fn read_output(
        &self,
        pid: u32,
        selector: OutputSelector,
        cursor: u64,
        max_lines: u32,
        wait: Duration,
    ) -> Result<OutputChunk, ProcessError> {
        let proc = self.inner.find(pid)?;
        let max_lines = usize::try_from(max_lines).unwrap_or(usize::MAX);
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        // Subscribed before the first look, so no line can slip in between.
        let mut changes = proc.subscribe();
        loop {
            let chunk = proc.read(selector, cursor, max_lines);
            if !chunk.lines.is_empty() || chunk.complete || max_lines == 0 || wait.is_zero() {
                return Ok(chunk);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Ok(proc.read(selector, cursor, max_lines)),
            }
        }
    }

    /// Waits up to `timeout` for `pid` to end and returns its state (still
    /// `running` if the time ran out; a zero timeout never waits).
    pub async fn wait(&self, pid: u32, timeout: Duration) -> Result<ProcessInfo, ProcessError> {
        let proc = self.inner.find(pid)?;
        wait_ended(&proc, Instant::now() + timeout.min(MAX_WAIT)).await;
        Ok(proc.info())
    }

    /// Counts and uptime, for `/api/v1/info`.
    pub fn summary(&self) -> HostSummary {
        let t = self.inner.lock();
        HostSummary {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: self.inner.born.elapsed().as_secs(),
            running_processes: u32::try_from(t.live).unwrap_or(u32::MAX),
            total_processes: t.total,
        }
    }

    /// Sends SIGKILL to every process group the table started that may
    /// still have members (and, with cgroups, to every process in the
    /// table's cgroups), refuses further starts, and waits (at most 5 s)
    /// until every child is reaped, so their output completes, and every
    /// cgroup is removed. The spill directory goes too (its files have no
    /// names: they go as their captures do, whatever happens).
    pub async fn shutdown(&self) {
        self.inner.lock().closing = true;
        let (procs, lingering) = self.inner.snapshot();
        let cgroups = self.inner.containment.cgroups();
        if let Some(cgroups) = cgroups {
            cgroups.kill_all();
        }
        table::kill_all(&procs, &lingering);
        let deadline = Instant::now() + SHUTDOWN_REAP_TIMEOUT;
        for proc in &procs {
            if !wait_ended(proc, deadline).await {
                tracing::warn!(pid = proc.pid, "a killed process was not reaped in time");
            }
        }
        if let Some(cgroups) = cgroups {
            // Again: a start that was spawning when the first kill went out.
            cgroups.kill_all();
            if !cgroups.remove_all_until(deadline).await {
                tracing::warn!(
                    cgroup = %cgroups.dir().display(),
                    "killed processes did not exit in time: their cgroups remain"
                );
            }
        }
        if let Some(dir) = &self.inner.spill_dir {
            let _ = std::fs::remove_dir(dir.path());
        }
    }

    /// The directory captured output spills to, if it does.
    pub fn spill_dir(&self) -> Option<&Path> {
        self.inner.spill_dir.as_deref().map(SpillDir::path)
    }

    /// The bytes of all spill files together, and the limit of it
    /// ([`Limits::capture_disk_total_bytes`]).
    pub fn capture_disk(&self) -> (usize, usize) {
        let budget = &self.inner.disk_budget;
        (budget.used(), budget.limit())
    }

    /// How this table contains what its children start:
    /// [`Containment::Cgroup`] (a cgroup per child) or
    /// [`Containment::ProcessGroup`], never `Auto`. A table that requires
    /// cgroups where none are available says `Cgroup`, and refuses starts.
    pub fn containment(&self) -> Containment {
        self.inner.containment.mode()
    }

    /// The cgroup directory under which this table makes one cgroup per
    /// child, when it uses cgroups.
    pub fn cgroup_dir(&self) -> Option<&Path> {
        self.inner.containment.cgroups().map(|c| c.dir())
    }

    /// Processes running now (started and not yet reaped).
    pub fn live_count(&self) -> usize {
        self.inner.lock().live
    }

    /// The captured output held in memory by every process together, and
    /// the limit of it ([`Limits::capture_total_bytes`]), in bytes.
    pub fn capture_memory(&self) -> (usize, usize) {
        let budget = &self.inner.capture_budget;
        (budget.used(), budget.limit())
    }
}

/// Sleeps until `proc` is reaped or `deadline` passes; true if reaped.
async fn wait_ended(proc: &Proc, deadline: Instant) -> bool {
    let mut changes = proc.subscribe();
    loop {
        if !proc.is_running() {
            return true;
        }
        if !matches!(tokio::time::timeout_at(deadline, changes.changed()).await, Ok(Ok(()))) {
            return !proc.is_running();
        }
    }
}

/// Compile-time checks of what embedders rely on: the table is shared
/// across threads, and its futures can run on a multi-threaded executor
/// (wasmtime's async host functions require `Send` futures).
const _: fn(&ProcessTable) = |t| {
    fn shared<T: Clone + Send + Sync + 'static>(_: &T) {}
    fn send<T: Send>(_: T) {}
    shared(t);
    send(t.write_stdin(0, Vec::new()));
    send(t.read_output(0, OutputSelector::Merged, 0, 0, Duration::ZERO));
    send(t.wait(0, Duration::ZERO));
    send(t.shutdown());
};
