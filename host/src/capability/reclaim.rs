//! Bringing the captured output of all processes back under its budgets:
//! the memory budget (`Limits::capture_total_bytes`) and the disk budget of
//! the spill files (`Limits::capture_disk_total_bytes`).
//!
//! The same order for both: first the output of retained ended processes,
//! the one that ended first first; then the oldest lines of the largest
//! streams of running processes, all cut down to one level
//! ([`budget::level`]), so that the biggest lose first and none falls
//! below a smaller one. Lines that neither memory nor disk keeps any more
//! are counted as dropped, exactly as the per-stream caps count them, so
//! readers see them as drops. Memory given back is often no loss at all:
//! the spill file still has those lines.

use std::sync::Arc;

use super::capture::budget::{self, CaptureBudget};
use super::process::Proc;
use super::table::Inner;

/// What a reclaim frees.
#[derive(Debug, Clone, Copy)]
enum Store {
    Memory,
    Disk,
}

impl Inner {
    /// Reclaims whatever budget is over (down to 7/8 of it, so that a
    /// flood does not reclaim at every read). Called by the pumps after
    /// each read, without any lock held; cheap when no budget is over, and
    /// one task reclaims at a time while the others go on reading.
    pub(crate) fn reclaim_capture(&self) {
        self.reclaim(&self.capture_budget, Store::Memory);
        self.reclaim(&self.disk_budget, Store::Disk);
    }

    fn reclaim(&self, budget: &CaptureBudget, store: Store) {
        if budget.excess() == 0 {
            return;
        }
        let Some(_reclaiming) = budget.try_reclaim() else { return };
        let (ended, running): (Vec<_>, Vec<_>) = {
            let t = self.lock();
            let running = t.procs.values().filter(|p| p.is_running()).cloned().collect();
            (t.ended_procs().cloned().collect(), running)
        };
        for proc in &ended {
            if budget.excess() == 0 {
                return;
            }
            let mut state = proc.lock();
            match store {
                Store::Memory => state.capture.drop_all(),
                Store::Disk => (0..2).for_each(|s| state.capture.trim_disk(s, 0)),
            }
        }
        let excess = budget.excess();
        if excess == 0 {
            return;
        }
        let streams: Vec<(&Arc<Proc>, usize, usize)> = running
            .iter()
            .flat_map(|p| {
                let state = p.lock();
                let bytes = match store {
                    Store::Memory => state.capture.stream_bytes(),
                    Store::Disk => state.capture.disk_bytes().map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
                };
                [(p, 0, bytes[0]), (p, 1, bytes[1])]
            })
            .collect();
        let sizes: Vec<usize> = streams.iter().map(|&(_, _, bytes)| bytes).collect();
        let level = budget::level(&sizes, excess);
        for &(proc, stream, bytes) in &streams {
            if bytes > level {
                let mut state = proc.lock();
                match store {
                    Store::Memory => state.capture.trim_stream(stream, level),
                    Store::Disk => state.capture.trim_disk(stream, level as u64),
                }
            }
        }
    }
}
