//! One child's cgroup: killed with it, removed once it is reaped and empty.

use std::fs;
use std::io;
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{kill_tree, remove_tree};

/// The longest the removal after a kill of an ended process keeps trying.
const KILLED_REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// One child's cgroup.
#[derive(Debug)]
pub(crate) struct ChildCgroup {
    path: PathBuf,
    /// Set when the child was reaped: from then on the cgroup is removed as
    /// soon as it is empty.
    reaped: AtomicBool,
    /// Set once the directory is gone.
    removed: AtomicBool,
    /// Set while a task waits to remove it (one is enough).
    removing: AtomicBool,
}

impl ChildCgroup {
    /// A cgroup just made at `path`.
    pub(super) fn new(path: PathBuf) -> ChildCgroup {
        ChildCgroup {
            path,
            reaped: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            removing: AtomicBool::new(false),
        }
    }

    /// The leader was reaped: from now on the cgroup goes once empty.
    pub(super) fn set_reaped(&self) {
        self.reaped.store(true, Ordering::Release);
    }

    /// True once the directory is gone.
    pub(super) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// SIGKILL to every process in the cgroup (and its descendants).
    pub(crate) fn kill(&self) {
        if self.removed.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = kill_tree(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(cgroup = %self.path.display(), error = %e, "cgroup.kill failed");
        }
    }

    /// True if the leader was reaped.
    pub(crate) fn is_reaped(&self) -> bool {
        self.reaped.load(Ordering::Acquire)
    }

    /// Removes the directory if the cgroup is empty; true once it is gone.
    pub(crate) fn try_remove(&self) -> bool {
        if self.removed.load(Ordering::Acquire) {
            return true;
        }
        // Almost always a leaf: one rmdir. Only a cgroup with cgroups below
        // it (a host nested in the child made some) needs the walk.
        let gone = match fs::remove_dir(&self.path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(_) => remove_tree(&self.path).is_ok(),
        };
        if gone {
            self.removed.store(true, Ordering::Release);
        }
        gone
    }

    /// Keeps trying to remove the cgroup for a while (with backoff), on the
    /// current tokio runtime if there is one: for a kill of a child that was
    /// already reaped, whose stray members take a moment to exit.
    /// Repeated kills start one task, not one each.
    pub(crate) fn remove_when_empty(self: &Arc<Self>) {
        // A later reap, the shutdown or the drop removes it otherwise.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.removed.load(Ordering::Acquire) || self.removing.swap(true, Ordering::AcqRel) {
            return;
        }
        let cgroup = self.clone();
        handle.spawn(async move {
            let deadline = tokio::time::Instant::now() + KILLED_REMOVE_TIMEOUT;
            let mut pause = Duration::from_millis(1);
            while !cgroup.try_remove() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
            cgroup.removing.store(false, Ordering::Release);
        });
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
