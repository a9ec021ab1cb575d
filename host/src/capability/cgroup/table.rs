//! A table's cgroup: made under this host process's own, one cgroup per
//! child below it, and everything killed and removed with the table.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use super::super::exhaustion::{Creating, OsFailure};
use super::child::ChildCgroup;
use super::hierarchy::own_cgroup_dir;
use super::stale::{clean_stale, identity};
use super::{DROP_REMOVE_TIMEOUT, kill_tree, remove_tree};

/// A table's cgroup and its children's.
#[derive(Debug)]
pub(crate) struct TableCgroup {
    /// The table's cgroup.
    dir: PathBuf,
    /// Children's cgroups not known to be removed, by start order.
    children: Mutex<HashMap<u64, Arc<ChildCgroup>>>,
}

impl TableCgroup {
    /// Creates the table's cgroup under this process's own, after removing
    /// what dead hosts left there (once per process).
    pub(super) fn create(keep: bool) -> Result<TableCgroup, String> {
        let mountinfo =
            fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
        let own = fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
        let parent = own_cgroup_dir(&mountinfo, &own)?;
        let me = identity()?;
        static CLEANED: Once = Once::new();
        CLEANED.call_once(|| {
            clean_stale(&parent, me);
        });
        static TABLES: AtomicU64 = AtomicU64::new(0);
        let n = TABLES.fetch_add(1, Ordering::Relaxed) + 1;
        let dir = parent.join(me.dir_name(n, keep));
        fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let cgroups = TableCgroup { dir, children: Mutex::default() };
        // Dropped (and the directory removed) if a check fails.
        cgroups.check()?;
        Ok(cgroups)
    }

    /// Checks that the new cgroup can do what is needed of it.
    fn check(&self) -> Result<(), String> {
        if !self.dir.join("cgroup.kill").exists() {
            return Err(format!("{} has no cgroup.kill (Linux 5.14 or later is needed)", self.dir.display()));
        }
        match fs::read_to_string(self.dir.join("cgroup.type")) {
            Ok(t) if t.trim() == "domain" => Ok(()),
            Ok(t) => Err(format!(
                "{} is a `{}` cgroup, not a plain domain (a threaded subtree?)",
                self.dir.display(),
                t.trim()
            )),
            Err(e) => Err(format!("reading {}/cgroup.type: {e}", self.dir.display())),
        }
    }

    /// The table's cgroup directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<ChildCgroup>>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the cgroup of child number `order` and opens its directory
    /// (close-on-exec), which the child is started in (see `launch`).
    pub(super) fn child(&self, order: u64) -> Result<(Arc<ChildCgroup>, OwnedFd), OsFailure> {
        let path = self.dir.join(order.to_string());
        fs::create_dir(&path).map_err(|e| OsFailure { creating: Creating::Cgroup, ..e.into() })?;
        let dir = match fs::File::open(&path) {
            Ok(file) => OwnedFd::from(file),
            Err(e) => {
                let _ = fs::remove_dir(&path);
                return Err(e.into());
            }
        };
        let child = Arc::new(ChildCgroup::new(path));
        self.lock().insert(order, child.clone());
        Ok((child, dir))
    }

    /// A child whose spawn failed: its cgroup is empty, remove it now.
    pub(crate) fn discard(&self, child: &ChildCgroup) {
        child.set_reaped();
        child.try_remove();
        self.tidy();
    }

    /// The leader of `child` was reaped: remove its cgroup if it is empty,
    /// and any other reaped child's that has emptied since.
    pub(crate) fn reaped(&self, child: &ChildCgroup) {
        child.set_reaped();
        self.tidy();
    }

    /// Removes the cgroups of reaped children that are empty now, and
    /// forgets the removed ones. The directories are removed outside the
    /// lock; cgroups still running cost a flag check.
    pub(crate) fn tidy(&self) {
        let candidates: Vec<_> = self.lock().values().filter(|c| c.is_reaped()).cloned().collect();
        if candidates.is_empty() {
            return;
        }
        let mut removed = false;
        for child in &candidates {
            removed |= child.try_remove();
        }
        if removed {
            self.lock().retain(|_, c| !c.is_removed());
        }
    }

    /// SIGKILL to every process in every child's cgroup at once.
    pub(crate) fn kill_all(&self) {
        if let Err(e) = kill_tree(&self.dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(cgroup = %self.dir.display(), error = %e, "cgroup.kill failed");
        }
    }

    /// Tries once to remove every child's cgroup and, when none is left,
    /// the table's: true if everything is gone.
    ///
    /// Only for shutdown and drop: after it no start can create a cgroup.
    fn remove_all(&self) -> bool {
        let children: Vec<_> = self.lock().values().cloned().collect();
        for child in &children {
            child.try_remove();
        }
        let mut map = self.lock();
        map.retain(|_, c| !c.is_removed());
        map.is_empty() && remove_tree(&self.dir).is_ok()
    }

    /// Removes every cgroup, waiting (asynchronously, up to `deadline`) for
    /// killed members to exit; true if everything is gone.
    pub(crate) async fn remove_all_until(&self, deadline: tokio::time::Instant) -> bool {
        let mut pause = Duration::from_millis(1);
        loop {
            if self.remove_all() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// `remove_all_until` for a synchronous caller.
    fn remove_all_blocking(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if self.remove_all() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// The children's cgroups not yet removed (for tests).
    #[cfg(test)]
    pub(crate) fn live_children(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for TableCgroup {
    /// The table is gone: kill whatever is left in its cgroups and remove
    /// them, waiting (a little) for the killed to exit.
    fn drop(&mut self) {
        self.kill_all();
        if !self.remove_all_blocking(DROP_REMOVE_TIMEOUT) {
            tracing::warn!(
                cgroup = %self.dir.display(),
                "killed processes did not exit in time: their cgroup is left for the next host to remove"
            );
        }
    }
}
