//! One memory budget for the captured output of every process together.
//!
//! Each [`Capture`](super::Capture) keeps an [`Account`] of what it holds
//! (the same bytes its per-stream caps count, plus the partial lines it
//! waits on) and moves the difference into the shared [`CaptureBudget`]
//! at every change, and out of it when dropped. The budget itself decides
//! nothing: when it is over its limit, the table reclaims (see
//! `ProcessTable`), with the order of [`level`] for live buffers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

/// The bytes of captured output all processes may hold in memory together.
#[derive(Debug)]
pub struct CaptureBudget {
    limit: usize,
    used: AtomicUsize,
    /// Held by the one task that reclaims; others go on meanwhile.
    reclaiming: Mutex<()>,
}

impl CaptureBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(CaptureBudget { limit, used: AtomicUsize::new(0), reclaiming: Mutex::new(()) })
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// What the captures hold now, in bytes.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Bytes to free to get back to 7/8 of the limit once it was passed,
    /// or 0 while under the limit. Freeing an eighth at a time keeps
    /// reclaims rare under a steady flood instead of one per read.
    pub(crate) fn excess(&self) -> usize {
        let used = self.used();
        if used <= self.limit { 0 } else { used - (self.limit - self.limit / 8) }
    }

    /// The right to reclaim, unless another task is reclaiming already.
    pub(crate) fn try_reclaim(&self) -> Option<MutexGuard<'_, ()>> {
        match self.reclaiming.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// What one capture holds, as charged to a budget (none in unit tests and
/// for embedders' tables without one).
#[derive(Debug, Default)]
pub(crate) struct Account {
    budget: Option<Arc<CaptureBudget>>,
    charged: usize,
}

impl Account {
    pub(crate) fn new(budget: Arc<CaptureBudget>) -> Self {
        Account { budget: Some(budget), charged: 0 }
    }

    /// Records that the capture now holds `bytes`.
    pub(crate) fn set(&mut self, bytes: usize) {
        if let Some(budget) = &self.budget {
            if bytes > self.charged {
                budget.used.fetch_add(bytes - self.charged, Ordering::Relaxed);
            } else if bytes < self.charged {
                budget.used.fetch_sub(self.charged - bytes, Ordering::Relaxed);
            }
        }
        self.charged = bytes;
    }

    /// True when the budget this capture is charged to is over its limit.
    pub(crate) fn over(&self) -> bool {
        self.budget.as_ref().is_some_and(|b| b.used() > b.limit)
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// The level to cut live buffers down to: the largest `L` such that
/// trimming every buffer above `L` bytes down to `L` frees at least
/// `excess` bytes (0 if even emptying them all frees less). So the largest
/// buffers lose their oldest lines first, and none falls below a smaller
/// one.
pub(crate) fn level(sizes: &[usize], excess: usize) -> usize {
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let mut above = 0usize;
    for (k, &size) in sorted.iter().enumerate() {
        above += size;
        let count = k + 1;
        // The level with the `count` largest buffers cut to it.
        let Some(cut) = above.checked_sub(excess) else { continue };
        let level = cut / count;
        if sorted.get(count).is_none_or(|&next| level >= next) {
            return level.min(size);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_cuts_the_largest_first_and_evens_them_out() {
        // One big buffer: cut it alone.
        assert_eq!(level(&[100, 10, 10], 50), 50);
        // Two at the top: both come down to the same level.
        assert_eq!(level(&[100, 100, 10], 50), 75);
        // Past the next one down: it joins them.
        assert_eq!(level(&[100, 60, 10], 80), 40);
        // More than everything: all emptied.
        assert_eq!(level(&[100, 60], 500), 0);
        assert_eq!(level(&[], 5), 0);
        // Nothing to free: no cut below the largest.
        assert_eq!(level(&[100, 60], 0), 100);
    }

    #[test]
    fn level_frees_at_least_the_excess() {
        let sizes = [4096, 4000, 3000, 17, 0, 2500, 4096];
        for excess in [1, 10, 100, 1000, 5000, 10_000, 17_000] {
            let l = level(&sizes, excess);
            let freed: usize = sizes.iter().map(|&s| s.saturating_sub(l)).sum();
            assert!(freed >= excess, "level {l} frees {freed} < {excess}");
            // And no more than one byte per buffer too much (integer levels).
            assert!(freed < excess + sizes.len(), "level {l} frees {freed} for {excess}");
        }
    }

    #[test]
    fn accounts_move_their_difference_into_the_budget_and_out_when_dropped() {
        let budget = CaptureBudget::new(100);
        let mut a = Account::new(budget.clone());
        let mut b = Account::new(budget.clone());
        a.set(60);
        b.set(30);
        assert_eq!(budget.used(), 90);
        assert!(!a.over());
        b.set(50);
        assert!(a.over() && b.over());
        // 110 used, back to 7/8 of 100.
        assert_eq!(budget.excess(), 110 - 88);
        a.set(10);
        assert_eq!(budget.used(), 60);
        drop(b);
        assert_eq!(budget.used(), 10);
        drop(a);
        assert_eq!(budget.used(), 0);
    }
}
