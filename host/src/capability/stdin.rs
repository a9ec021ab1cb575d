//! The child's stdin pipe: bounded writes, and a close that works even while
//! a write is blocked.
//!
//! A write can block for as long as the child does not read. Holding a lock
//! across it would make `close_stdin` (and `get`, which reports
//! `stdin_writable`) wait too, so the pipe is *taken out* of its slot for
//! the write and put back after; a close that arrives meanwhile marks the
//! slot closed and wakes the writer, which then drops the pipe. Writers are
//! serialized by an async lock so their bytes never interleave.

use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe::Sender as ChildStdin;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::types::{ProcessError, StdinRefusal, StdinState};

/// Where the pipe is.
enum Slot {
    /// Stdin was `/dev/null`: there never was a pipe.
    NotPipe,
    /// Open and not being written.
    Idle(ChildStdin),
    /// Open, taken out by the writer in flight.
    Writing,
    /// Closed by the caller, by a broken pipe, or at exit.
    Closed,
}

/// The stdin of one process.
pub(crate) struct Stdin {
    slot: Mutex<Slot>,
    /// Serializes writers; held across the write, never by anything else.
    writer: tokio::sync::Mutex<()>,
    /// Flips to true when the slot is closed, waking a blocked writer.
    closed: watch::Sender<bool>,
}

/// Puts the pipe back when a write ends, however it ends (including the
/// write future being dropped mid-way), unless the pipe is to be closed.
struct Restore<'a> {
    stdin: &'a Stdin,
    pipe: Option<ChildStdin>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let mut slot = self.stdin.lock();
        // Anything but `Writing` means a close came while writing: the pipe
        // is dropped here, which closes it.
        if matches!(*slot, Slot::Writing) {
            *slot = match self.pipe.take() {
                Some(pipe) => Slot::Idle(pipe),
                None => Slot::Closed,
            };
        }
    }
}

/// The error of a write (or close) that stdin's `state` rules out.
pub(crate) fn refused(pid: u32, state: StdinState) -> ProcessError {
    ProcessError::StdinNotWritable(StdinRefusal { pid, state })
}

/// `10s` or `1500ms`: how a timeout reads in an error message.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

impl Stdin {
    /// The stdin of a new process: `pipe` is `None` for `/dev/null`.
    pub(crate) fn new(pipe: Option<ChildStdin>) -> Self {
        let slot = match pipe {
            Some(pipe) => Slot::Idle(pipe),
            None => Slot::NotPipe,
        };
        Stdin { slot: Mutex::new(slot), writer: tokio::sync::Mutex::new(()), closed: watch::Sender::new(false) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        // A panic elsewhere can't leave the slot inconsistent: recover it.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while there is an open pipe (`stdin_writable`).
    pub(crate) fn writable(&self) -> bool {
        matches!(*self.lock(), Slot::Idle(_) | Slot::Writing)
    }

    /// Closes the pipe. A pipe closed already stays closed and that is
    /// success too: a client that retries a close whose answer it lost must
    /// not get an error for what it asked for. False only if stdin never
    /// was a pipe.
    pub(crate) fn close(&self) -> bool {
        let mut slot = self.lock();
        match std::mem::replace(&mut *slot, Slot::Closed) {
            Slot::Idle(pipe) => drop(pipe),
            Slot::Writing => {}
            Slot::Closed => return true,
            Slot::NotPipe => {
                *slot = Slot::NotPipe;
                return false;
            }
        }
        drop(slot);
        self.closed.send_replace(true);
        true
    }

    /// Writes all of `data`, waiting at most `timeout` (for earlier writers
    /// and for the child to read).
    pub(crate) async fn write(&self, pid: u32, data: &[u8], timeout: Duration) -> Result<(), ProcessError> {
        let deadline = Instant::now() + timeout;
        let too_slow = || ProcessError::LimitExceeded(format!("child did not read stdin within {}", human(timeout)));
        let _turn = tokio::time::timeout_at(deadline, self.writer.lock()).await.map_err(|_| too_slow())?;
        let mut closed = self.closed.subscribe();
        let pipe = {
            let mut slot = self.lock();
            match std::mem::replace(&mut *slot, Slot::Writing) {
                Slot::Idle(pipe) => pipe,
                // Not `Writing`: we hold the writer lock.
                old => {
                    let state = if matches!(old, Slot::NotPipe) { StdinState::NotAPipe } else { StdinState::Closed };
                    *slot = old;
                    return Err(refused(pid, state));
                }
            }
        };
        let mut restore = Restore { stdin: self, pipe: Some(pipe) };
        let pipe = restore.pipe.as_mut().expect("just put there");
        tokio::select! {
            written = pipe.write_all(data) => match written {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    // The child closed its end: nothing can ever be written,
                    // so the slot becomes `Closed` (see `Restore`).
                    restore.pipe = None;
                    Err(refused(pid, StdinState::Closed))
                }
                Err(e) => Err(ProcessError::Internal(format!("writing stdin: {e}"))),
            },
            _ = closed.wait_for(|closed| *closed) => Err(refused(pid, StdinState::Closed)),
            () = tokio::time::sleep_until(deadline) => Err(too_slow()),
        }
    }
}
