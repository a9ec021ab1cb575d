//! Starting a process: the policy and limits checked, a live slot and the
//! cgroup reserved, the spawn awaited, the capture set up, the process
//! registered and served.

use std::sync::Arc;

use tokio::runtime::Handle;

use super::capture::Capture;
use super::capture::spill::SpillConfig;
use super::cgroup::ChildCgroup;
use super::process::Proc;
use super::stdin::Stdin;
use super::table::Inner;
use super::{ProcessTable, spawn};
use crate::now_ms;
use crate::types::{ProcessError, ProcessInfo, StartRequest};

/// A live slot reserved for a start, given back (with the child's cgroup)
/// unless the start [keeps](Reservation::keep) it.
struct Reservation<'a> {
    inner: &'a Inner,
    cgroup: Option<Arc<ChildCgroup>>,
}

impl Reservation<'_> {
    /// The child started: the slot is its own now.
    fn keep(self) -> Option<Arc<ChildCgroup>> {
        let mut this = std::mem::ManuallyDrop::new(self);
        this.cgroup.take()
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let (Some(cgroups), Some(cgroup)) = (self.inner.containment.cgroups(), &self.cgroup) {
            cgroups.discard(cgroup);
        }
        self.inner.unreserve();
    }
}

impl ProcessTable {
    /// Starts a process: checks the policy and limits, resolves the
    /// executable and working directory, spawns it in its own process group
    /// and starts capturing its output.
    ///
    /// Must be called within a tokio runtime (with I/O and time enabled):
    /// the child's pipes and reaper live on it. The spawn itself runs on
    /// the host's spawner thread, which this awaits without holding a
    /// worker. Dropping the future before it completes gives the slot back
    /// and ends the child it was starting, if any.
    pub async fn start(&self, req: StartRequest) -> Result<ProcessInfo, ProcessError> {
        self.start_process(req, None).await.map(|(info, _)| info)
    }

    /// [`ProcessTable::start`], with the capture held for one consumer
    /// from the first byte when `hold_window` is set (see `hold`).
    pub(super) async fn start_process(
        &self,
        req: StartRequest,
        hold_window: Option<u64>,
    ) -> Result<(ProcessInfo, Arc<Proc>), ProcessError> {
        let handle = Handle::try_current()
            .map_err(|_| ProcessError::Internal("starting a process needs a tokio runtime".to_owned()))?;
        let prepared = self.inner.policy.prepare(&req)?;
        let order = self.inner.reserve()?;
        // Until the child is registered, a failed or given-up start gives
        // its slot (and its cgroup) back.
        let mut reservation = Reservation { inner: &self.inner, cgroup: None };
        let cgroup_dir = match self.inner.containment.child(order)? {
            Some((cgroup, dir)) => {
                reservation.cgroup = Some(cgroup);
                Some(dir)
            }
            None => None,
        };
        let kill_on_host_death = self.inner.policy.policy.kill_on_host_death;
        let mut child =
            spawn::spawn(&self.inner.spawner, &handle, &prepared, &req, kill_on_host_death, cgroup_dir).await?;
        let cgroup = reservation.keep();
        let pid = child.pid;
        let spill = self.inner.spill_dir.as_ref().map(|dir| SpillConfig {
            dir: dir.clone(),
            cap: self.inner.limits.capture_disk_bytes,
            budget: self.inner.disk_budget.clone(),
        });
        let mut capture = Capture::with_spill(
            self.inner.limits.capture_bytes,
            self.inner.limits.max_line_bytes,
            child.stdout.is_some(),
            child.stderr.is_some(),
            spill,
        )
        .with_budget(self.inner.capture_budget.clone());
        if let Some(window) = hold_window {
            capture.hold(window);
        }
        let stdin = Stdin::new(child.stdin.take());
        let proc = Arc::new(Proc::new(pid, order, req.command, req.args, now_ms(), stdin, capture).with_cgroup(cgroup));
        let registered = self.inner.register(&proc);
        if registered.is_err() {
            // A shutdown began while we spawned: it could not see this
            // child, so end it here (the reaper below still reaps it).
            proc.kill_group();
        }
        // The reply describes the process as started: taken before the
        // reaper runs, or a child that exits at once would be reported
        // ended (with its stdin closed) now and then.
        let info = proc.info();
        spawn::serve(&handle, child, &proc, Arc::downgrade(&self.inner));
        registered.map(|()| (info, proc))
    }
}
