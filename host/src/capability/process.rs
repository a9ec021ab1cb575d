//! One process the table knows: what was asked, what became of it, its
//! captured output and stdin, and the signal that wakes whoever waits on it.
//!
//! Waiters (`read_output` with a wait, `wait`) never poll: every change (new
//! lines, end of file, exit) bumps a `watch` channel, and a waiter
//! subscribes *before* it looks at the state, so a change between its look
//! and its sleep still wakes it.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, watch};

use super::capture::Capture;
use super::cgroup::ChildCgroup;
use super::signal;
use super::stdin::Stdin;
use crate::types::{OutputChunk, OutputSelector, OutputStream, ProcessInfo, ProcessStatus};

/// The most text one read of captured output returns (past at least one
/// line): what one answer costs the host and the guest to copy and render
/// stays bounded whatever `max-lines` asks, 1024 lines of 64 KiB included.
pub const READ_MAX_BYTES: usize = 1 << 20;

/// How a process ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct End {
    status: ProcessStatus,
    exit_code: Option<i32>,
    signal: Option<i32>,
    ended_at: u64,
}

impl End {
    /// What `child.wait()` returned, read as the API reports it.
    pub(crate) fn new(status: io::Result<ExitStatus>, ended_at: u64) -> Self {
        let (status, exit_code, signal) = match status {
            Ok(s) => match (s.code(), s.signal()) {
                (_, Some(sig)) => (ProcessStatus::Signaled, None, Some(sig)),
                (code, None) => (ProcessStatus::Exited, Some(code.unwrap_or(-1)), None),
            },
            // Only possible if something else reaped our child; the process
            // is gone either way, and `exited` needs a code.
            Err(e) => {
                tracing::error!(error = %e, "waiting for a child failed");
                (ProcessStatus::Exited, Some(-1), None)
            }
        };
        End { status, exit_code, signal, ended_at }
    }
}

/// The mutable part of a process, behind one lock.
pub(crate) struct State {
    /// Set when the child has been reaped.
    pub(crate) end: Option<End>,
    /// Its captured output.
    pub(crate) capture: Capture,
    /// False once the kernel said the group has no member left: from then
    /// on its id may belong to someone else and is never signalled again.
    pub(crate) group_alive: bool,
}

/// One process.
pub(crate) struct Proc {
    /// The pid, which is also the process group id.
    pub(crate) pid: u32,
    /// Start order across the table (`list` sorts by it); unique, unlike a
    /// pid the OS may reuse.
    pub(crate) order: u64,
    pub(crate) command: String,
    pub(crate) args: Vec<String>,
    pub(crate) started_at: u64,
    pub(crate) stdin: Stdin,
    /// Its cgroup, with cgroup containment.
    pub(crate) cgroup: Option<Arc<ChildCgroup>>,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    /// Wakes the pumps when a held capture's consumer read on or went.
    room: Notify,
}

impl Proc {
    pub(crate) fn new(
        pid: u32,
        order: u64,
        command: String,
        args: Vec<String>,
        started_at: u64,
        stdin: Stdin,
        capture: Capture,
    ) -> Self {
        Proc {
            pid,
            order,
            command,
            args,
            started_at,
            stdin,
            cgroup: None,
            state: Mutex::new(State { end: None, capture, group_alive: true }),
            changed: watch::Sender::new(0),
            room: Notify::new(),
        }
    }

    /// The process with its cgroup.
    pub(crate) fn with_cgroup(mut self, cgroup: Option<Arc<ChildCgroup>>) -> Self {
        self.cgroup = cgroup;
        self
    }

    /// The state; a panic elsewhere while it was held can't leave it
    /// half-updated in a way that matters, so a poisoned lock is recovered.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver that wakes at the next change after this call.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Wakes every waiter.
    pub(crate) fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// True until the child has been reaped.
    pub(crate) fn is_running(&self) -> bool {
        self.lock().end.is_none()
    }

    /// The process-info object.
    pub(crate) fn info(&self) -> ProcessInfo {
        let end = self.lock().end;
        ProcessInfo {
            pid: self.pid,
            status: end.map_or(ProcessStatus::Running, |e| e.status),
            stdin_writable: self.stdin.writable(),
            command: self.command.clone(),
            args: self.args.clone(),
            started_at: self.started_at,
            exit_code: end.and_then(|e| e.exit_code),
            signal: end.and_then(|e| e.signal),
            ended_at: end.map(|e| e.ended_at),
        }
    }

    /// Captured lines after `cursor`, their text bounded by
    /// [`READ_MAX_BYTES`].
    pub(crate) fn read(&self, selector: OutputSelector, cursor: u64, max_lines: usize) -> OutputChunk {
        self.lock().capture.read_bounded(selector, cursor, max_lines, READ_MAX_BYTES)
    }

    /// Bytes read from one of the child's pipes; wakes readers if they made
    /// a line. True when all captures together are over their budget: the
    /// caller reclaims (with this lock released).
    pub(crate) fn push_output(&self, stream: OutputStream, data: &[u8], timestamp: u64) -> bool {
        let (lines, over) = {
            let mut state = self.lock();
            let lines = state.capture.push(stream, data, timestamp);
            if let Some(e) = state.capture.take_spill_error() {
                tracing::warn!(pid = self.pid, error = %e, "spilling output to disk failed: the stream goes on in memory");
            }
            (lines, state.capture.over_budget())
        };
        if lines > 0 {
            self.notify();
        }
        over
    }

    /// Returns once the pumps may read more: at once unless the output is
    /// held for a consumer that has a window's worth to read (see
    /// `Capture::has_room`). The child meanwhile blocks on its full pipe.
    pub(crate) async fn wait_for_room(&self) {
        loop {
            if self.lock().capture.has_room() {
                return;
            }
            let notified = self.room.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the second look, so a wake between the
            // look and the wait is not lost.
            notified.as_mut().enable();
            if self.lock().capture.has_room() {
                return;
            }
            notified.await;
        }
    }

    /// The held output's consumer has read every line before `cursor`.
    pub(crate) fn advance_hold(&self, cursor: u64) {
        self.lock().capture.advance_hold(cursor);
        self.room.notify_waiters();
    }

    /// The held output's consumer is gone: the pumps read on, the caps
    /// drop what they must.
    pub(crate) fn release_hold(&self) {
        self.lock().capture.release_hold();
        self.room.notify_waiters();
    }

    /// End of file on one of the child's pipes.
    pub(crate) fn finish_output(&self, stream: OutputStream, timestamp: u64) {
        self.lock().capture.finish(stream, timestamp);
        self.notify();
    }

    /// Records the reaped child's end. The caller notifies (after it let go
    /// of the table lock). Stdin is closed: nobody is left to read it but
    /// stray members of the group, which should see end of file.
    pub(crate) fn set_ended(&self, end: End) {
        {
            let mut state = self.lock();
            state.end = Some(end);
            state.capture.set_exited();
            state.group_alive = signal::group_may_exist(self.pid);
        }
        self.stdin.close();
    }

    /// SIGKILL to everything in the child's cgroup, if it has one; and to
    /// the group if it may have members: while running, or after the end if
    /// members may remain. Returns whether the group may still have some.
    pub(crate) fn kill_group(&self) -> bool {
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill();
        }
        let mut state = self.lock();
        if state.end.is_none() || state.group_alive {
            let alive = signal::kill_group(self.pid);
            // Even a failed kill can't make a running leader's group empty.
            state.group_alive = alive || state.end.is_none();
        }
        state.group_alive
    }

    /// True if the group may still have members (without signalling it).
    pub(crate) fn group_may_remain(&self) -> bool {
        let mut state = self.lock();
        if state.end.is_some() && state.group_alive {
            state.group_alive = signal::group_may_exist(self.pid);
        }
        state.group_alive
    }
}
