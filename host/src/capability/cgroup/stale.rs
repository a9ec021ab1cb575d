//! What dead hosts left: their table cgroups are named after them, and the
//! first table of a host process kills what is left in the ones whose
//! owner is gone and removes them.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{DROP_REMOVE_TIMEOUT, KEEP, PREFIX, kill_tree, remove_tree};

/// Which host process made a directory: it is stale once that process is
/// gone (a pid is reused, a pid with its start time is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    /// The inode of the pid namespace the pid belongs to.
    pub(crate) pidns: u64,
    pub(crate) pid: u32,
    /// In clock ticks since boot (`/proc/<pid>/stat`, field 22).
    pub(crate) start: u64,
}

impl Owner {
    /// The name of the table directory number `n` of this owner; `keep`
    /// if its processes may outlive the owner.
    pub(crate) fn dir_name(&self, n: u64, keep: bool) -> String {
        let keep = if keep { KEEP } else { "" };
        format!("{PREFIX}{}-{}-{}-{n}{keep}", self.pidns, self.pid, self.start)
    }

    /// The owner of a directory named by `dir_name`, and its `keep`.
    pub(crate) fn from_dir_name(name: &str) -> Option<(Owner, bool)> {
        let name = name.strip_prefix(PREFIX)?;
        let (name, keep) = match name.strip_suffix(KEEP) {
            Some(name) => (name, true),
            None => (name, false),
        };
        let mut parts = name.split('-');
        let owner = Owner {
            pidns: parts.next()?.parse().ok()?,
            pid: parts.next()?.parse().ok()?,
            start: parts.next()?.parse().ok()?,
        };
        parts.next()?.parse::<u64>().ok()?;
        parts.next().is_none().then_some((owner, keep))
    }

    /// True while the owning process runs (seen from our pid namespace,
    /// which the caller checked is the owner's).
    pub(super) fn is_alive(&self) -> bool {
        match fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => start_time(&stat) == Some(self.start),
            // Not readable for another reason: don't take it for dead.
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        }
    }
}

/// This host process, as its directories name it.
pub(super) fn identity() -> Result<Owner, String> {
    static ME: OnceLock<Result<Owner, String>> = OnceLock::new();
    ME.get_or_init(|| {
        let pidns = fs::metadata("/proc/self/ns/pid").map_err(|e| format!("reading /proc/self/ns/pid: {e}"))?.ino();
        let stat = fs::read_to_string("/proc/self/stat").map_err(|e| format!("reading /proc/self/stat: {e}"))?;
        let start = start_time(&stat).ok_or("no start time in /proc/self/stat")?;
        Ok(Owner { pidns, pid: std::process::id(), start })
    })
    .clone()
}

/// Field 22 (start time) of a `/proc/<pid>/stat` text.
pub(crate) fn start_time(stat: &str) -> Option<u64> {
    // `pid (comm) state ...`: comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Kills what is left in the table cgroups of dead hosts under `parent`
/// (same pid namespace only: another namespace's pids mean nothing here),
/// and removes them; of a `-keep` one, whose processes were meant to
/// outlive their host, it only removes it if it is empty. Returns how many
/// were found.
pub(crate) fn clean_stale(parent: &Path, me: Owner) -> usize {
    let Ok(entries) = fs::read_dir(parent) else {
        return 0;
    };
    type Found = Vec<(PathBuf, bool)>;
    let (kept, stale): (Found, Found) = entries
        .flatten()
        .filter_map(|e| {
            let (owner, keep) = Owner::from_dir_name(e.file_name().to_str()?)?;
            let dead = owner.pidns == me.pidns && owner != me && !owner.is_alive();
            dead.then(|| (e.path(), keep))
        })
        .partition(|(_, keep)| *keep);
    for (dir, _) in &kept {
        let _ = remove_tree(dir);
    }
    let stale: Vec<PathBuf> = stale.into_iter().map(|(dir, _)| dir).collect();
    for dir in &stale {
        let _ = kill_tree(dir);
    }
    let deadline = Instant::now() + DROP_REMOVE_TIMEOUT;
    let mut left: Vec<&PathBuf> = stale.iter().collect();
    loop {
        left.retain(|dir| remove_tree(dir).is_err());
        if left.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for dir in &stale {
        if left.contains(&dir) {
            tracing::warn!(cgroup = %dir.display(), "could not remove the cgroup of a dead host");
        } else {
            tracing::warn!(cgroup = %dir.display(), "killed what a dead host left running, and removed its cgroup");
        }
    }
    kept.len() + stale.len()
}
