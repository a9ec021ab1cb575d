//! The shared state behind every [`ProcessTable`](super::ProcessTable)
//! clone: the processes by pid, the live count, the retention of ended
//! processes, the budgets of all captured output (reclaimed by `reclaim`),
//! and the kill of every group when the last clone goes.
//!
//! Locking: the table lock may be taken first and a process's lock inside
//! it, never the other way round; no lock is held across an `.await`.
//! Tasks (pumps, reapers) hold the processes, and only a `Weak` to the
//! table, so dropping the last table clone really drops it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::capture::budget::CaptureBudget;
use super::capture::spill::SpillDir;
use super::cgroup::TableContainment;
use super::policy::{CheckedPolicy, Limits};
use super::process::{End, Proc};
use super::signal;
use super::spawn::Spawner;
use crate::types::ProcessError;

/// What every clone of a table shares.
pub(crate) struct Inner {
    pub(crate) policy: CheckedPolicy,
    pub(crate) limits: Limits,
    pub(crate) born: Instant,
    pub(crate) spawner: Spawner,
    /// Process groups alone, or a cgroup per child too. Dropped after the
    /// drop below killed every group: its own drop kills and removes the
    /// table's cgroups.
    pub(crate) containment: TableContainment,
    /// What every process's captured output may hold in memory together.
    pub(crate) capture_budget: Arc<CaptureBudget>,
    /// Where captured output spills, if it does, and what all spill files
    /// may hold together.
    pub(crate) spill_dir: Option<Arc<SpillDir>>,
    pub(crate) disk_budget: Arc<CaptureBudget>,
    state: Mutex<Table>,
}

/// The bookkeeping behind the table lock.
#[derive(Default)]
pub(crate) struct Table {
    /// Every process `get` can find: running ones and retained ended ones.
    pub(crate) procs: HashMap<u32, Arc<Proc>>,
    /// The retained ended processes, the one that ended first at the front.
    ended: VecDeque<Arc<Proc>>,
    /// Ids of groups whose leader was forgotten (evicted) while members
    /// may remain: still killed at shutdown, so nothing is orphaned.
    lingering: Vec<u32>,
    /// Processes not yet reaped, plus starts in flight (a slot is reserved
    /// before spawning, so concurrent starts can't overshoot the limit).
    pub(crate) live: usize,
    /// Processes started (successfully) so far.
    pub(crate) total: u64,
    next_order: u64,
    /// Set by `shutdown`: no more starts.
    pub(crate) closing: bool,
}

impl Table {
    /// The retained ended processes, the one that ended first first.
    pub(crate) fn ended_procs(&self) -> impl Iterator<Item = &Arc<Proc>> {
        self.ended.iter()
    }
}

impl Inner {
    pub(crate) fn new(policy: CheckedPolicy, limits: Limits) -> Self {
        Inner {
            containment: TableContainment::new(policy.policy.containment, !policy.policy.kill_on_host_death),
            policy,
            born: Instant::now(),
            spawner: Spawner,
            capture_budget: CaptureBudget::new(limits.capture_total_bytes),
            spill_dir: super::disk::spill_dir(&limits),
            disk_budget: CaptureBudget::new(usize::try_from(limits.capture_disk_total_bytes).unwrap_or(usize::MAX)),
            limits,
            state: Mutex::default(),
        }
    }

    /// The table; a poisoned lock is recovered (every update below leaves
    /// it consistent at each step that could panic).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Table> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The process `pid`, or `not-found`.
    pub(crate) fn find(&self, pid: u32) -> Result<Arc<Proc>, ProcessError> {
        self.lock().procs.get(&pid).cloned().ok_or(ProcessError::NotFound(pid))
    }

    /// Reserves a live slot for a start; returns the start order.
    pub(crate) fn reserve(&self) -> Result<u64, ProcessError> {
        let mut t = self.lock();
        if t.closing {
            return Err(ProcessError::Internal("the host is shutting down".to_owned()));
        }
        if t.live >= self.limits.max_processes {
            return Err(ProcessError::LimitExceeded(format!(
                "{} processes are running: the host's limit is {}",
                t.live, self.limits.max_processes
            )));
        }
        t.live += 1;
        t.next_order += 1;
        Ok(t.next_order)
    }

    /// Gives back a slot whose start failed.
    pub(crate) fn unreserve(&self) {
        self.lock().live -= 1;
    }

    /// Makes a spawned process visible. If the OS reused the pid of a
    /// retained ended process, the new one replaces it (that group is
    /// empty, or the kernel could not have reused its id). Fails if a
    /// shutdown began meanwhile; the caller then kills the new group, which
    /// its reaper still reaps.
    pub(crate) fn register(&self, proc: &Arc<Proc>) -> Result<(), ProcessError> {
        let mut t = self.lock();
        if t.closing {
            return Err(ProcessError::Internal("the host is shutting down".to_owned()));
        }
        t.total += 1;
        if let Some(old) = t.procs.insert(proc.pid, proc.clone()) {
            t.ended.retain(|p| !Arc::ptr_eq(p, &old));
        }
        Ok(())
    }

    /// The reaper's report: frees the live slot, records the end, and
    /// forgets the processes that ended first beyond the retention limit.
    pub(crate) fn on_exit(&self, proc: &Arc<Proc>, end: End) {
        let mut t = self.lock();
        t.live -= 1;
        proc.set_ended(end);
        let current = t.procs.get(&proc.pid).is_some_and(|p| Arc::ptr_eq(p, proc));
        if !current {
            return; // replaced by a process that reused its pid
        }
        t.ended.push_back(proc.clone());
        let mut evicted_lingering = false;
        while t.ended.len() > self.limits.max_retained_exited {
            let Some(old) = t.ended.pop_front() else {
                break;
            };
            if t.procs.get(&old.pid).is_some_and(|p| Arc::ptr_eq(p, &old)) {
                t.procs.remove(&old.pid);
            }
            if old.group_may_remain() {
                t.lingering.push(old.pid);
                evicted_lingering = true;
            }
        }
        if evicted_lingering {
            // Only groups that still exist need remembering; this keeps the
            // list as short as the set of real stray groups.
            t.lingering.retain(|&pgid| signal::group_may_exist(pgid));
        }
    }

    /// Every known process, and the ids of lingering groups.
    pub(crate) fn snapshot(&self) -> (Vec<Arc<Proc>>, Vec<u32>) {
        let t = self.lock();
        (t.procs.values().cloned().collect(), t.lingering.clone())
    }
}

/// SIGKILL to every group that may have members (and every process in
/// each known process's cgroup).
pub(crate) fn kill_all(procs: &[Arc<Proc>], lingering: &[u32]) {
    for proc in procs {
        proc.kill_group();
    }
    for &pgid in lingering {
        signal::kill_group(pgid);
    }
}

impl Drop for Inner {
    /// The last table clone is gone: no process may outlive it unattended.
    /// Synchronous (plain `kill`), as a drop can't await; the reaper tasks,
    /// which hold only a `Weak`, still reap the children if the runtime
    /// runs on.
    fn drop(&mut self) {
        let t = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let procs: Vec<_> = t.procs.values().cloned().collect();
        kill_all(&procs, &t.lingering);
    }
}

#[cfg(test)]
mod tests;
