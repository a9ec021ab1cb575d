//! Output kept for one consumer: what makes a `run` stream lossless.
//!
//! A `run` request has exactly one reader, its caller. Started with
//! [`ProcessTable::start_held`], a process's capture keeps every line its
//! consumer has not read yet (no cap drops one), and its pumps stop reading
//! the child's pipes while [`HOLD_WINDOW`] bytes wait unread: the child then
//! blocks on its full pipe, as it would writing to a slow terminal, and
//! memory stays bounded. The consumer says how far it has read with
//! [`OutputHold::advance`]; when it goes (the [`OutputHold`] is dropped:
//! the client disconnected, the stream ended), the process goes on as any
//! other, its oldest lines dropped and counted past the caps.
//!
//! Follow streams never hold: any number of them may watch a process that
//! others own, and a slow or stalled watcher must not stall the process.
//! They read what the caps keep, and are told what they missed.

use std::sync::Arc;

use super::ProcessTable;
use super::process::Proc;
use crate::types::{ProcessError, ProcessInfo, StartRequest};

/// The most text (bytes, line ends included) a held capture lets wait for
/// its consumer before the pumps stop reading; never more than the
/// per-stream cap. Enough that the pumps read in full chunks while the
/// consumer renders its frames, small next to any budget.
pub const HOLD_WINDOW: u64 = 1 << 20;

/// The consumer's claim on a held process's output; released when dropped.
#[derive(Debug)]
pub struct OutputHold {
    proc: Arc<Proc>,
}

impl OutputHold {
    /// The process held.
    pub fn pid(&self) -> u32 {
        self.proc.pid
    }

    /// The consumer has every line before the merged `cursor` (a cursor of
    /// `read_output` with [`OutputSelector::Merged`](crate::types::OutputSelector)):
    /// those may be dropped again, and the pumps may read as much more.
    pub fn advance(&self, cursor: u64) {
        self.proc.advance_hold(cursor);
    }
}

impl Drop for OutputHold {
    fn drop(&mut self) {
        self.proc.release_hold();
    }
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proc").field("pid", &self.pid).finish_non_exhaustive()
    }
}

impl ProcessTable {
    /// Starts a process as [`ProcessTable::start`] does, with its output
    /// held for one consumer from the first byte (see the module doc).
    pub async fn start_held(&self, req: StartRequest) -> Result<(ProcessInfo, OutputHold), ProcessError> {
        let window = HOLD_WINDOW.min(self.inner.limits.capture_bytes as u64);
        let (info, proc) = self.start_process(req, Some(window)).await?;
        Ok((info, OutputHold { proc }))
    }
}
