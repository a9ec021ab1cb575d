//! A cgroup (v2) per child, so that `kill` ends everything a child started.
//!
//! A process group holds a child's descendants only while they stay in it:
//! one that calls `setsid` (a daemon, `nohup`-style detaching, a double
//! fork) leaves the group, and a kill of the group misses it. A cgroup can't
//! be left: every process forked inside it stays inside until something
//! with write access to the hierarchy moves it, and `cgroup.kill` (Linux
//! 5.14) sends SIGKILL to every member, atomically with respect to forks.
//!
//! Layout, under the cgroup this host process belongs to (found through
//! `/proc/self/cgroup` and the cgroup2 mount in `/proc/self/mountinfo`):
//!
//! ```text
//! <own cgroup>/sandbox-process-<pidns>-<pid>-<starttime>-<n>/   one per table
//!                                                          <order>/   one per child
//! ```
//!
//! - The child's cgroup is created before the spawn, and the child starts
//!   in it (`clone3` with `CLONE_INTO_CGROUP`, Linux 5.7; where that is not
//!   available, the child moves itself in between clone and exec by writing
//!   `0` to its `cgroup.procs`). So nothing it executes ever runs outside,
//!   and no grandchild can escape.
//! - `kill` writes `1` to the child's `cgroup.kill` (and still sends SIGKILL
//!   to its process group); it works after the child itself was reaped, for
//!   whatever it left behind. `signal` stays a process-group signal: a
//!   cgroup can only be killed or frozen, not sent an arbitrary signal.
//! - A child's cgroup is removed once the child is reaped and the cgroup is
//!   empty (zombies don't count): at the reap, when its output pipes close,
//!   after a kill, and at any later reap, as long as stray members kept it
//!   populated. Shutdown and the drop of the table kill the table's whole
//!   subtree and remove it.
//! - The directory names the owning host process by pid namespace, pid and
//!   start time. The first table of a host process removes the directories
//!   of owners that no longer exist, killing what is left in them: that is
//!   what a host killed by SIGKILL leaves behind (its children got their
//!   parent-death signal; their detached descendants did not). A table
//!   whose policy lets children outlive the host (`kill_on_host_death`
//!   off) marks its directory `-keep`: after its host died, its processes
//!   are left alone, and the directory is only removed once empty.
//!
//! Where no writable cgroup v2 hierarchy with `cgroup.kill` is found (no
//! cgroup2 mount, not root and no delegation, a read-only mount, an old
//! kernel), [`Containment::Auto`] falls back to process groups alone and
//! [`Containment::Cgroup`] refuses every start. The hierarchy's controllers
//! are never enabled: the cgroups only contain, they don't limit, so the
//! "no internal processes" rule never applies (a cgroup with members can't
//! enable controllers for its children, and we enable none). Under systemd,
//! give the service `Delegate=yes` so that the host owns its subtree.
//!
//! Cost: a `mkdir` and an `rmdir` per child (tens of microseconds). A child
//! started in its cgroup costs nothing more. The fallback's migration takes
//! the kernel's cgroup threadgroup lock for writing, which (without the
//! `favordynmods` mount option, Linux 6.0) waits for an RCU grace period
//! unless another migration just did: 5 to 20 ms for a spawn after a quiet
//! moment, on the spawning thread.
//!
//! Here: what a table contains its children with ([`TableContainment`]).
//! `hierarchy` finds this process's place in the cgroup2 mount, `table`
//! makes and removes a table's cgroup ([`TableCgroup`]), `child` is one
//! child's ([`ChildCgroup`]), and `stale` cleans up what dead hosts left.

mod child;
mod hierarchy;
mod stale;
mod table;

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::policy::Containment;
use crate::types::ProcessError;

pub(crate) use child::ChildCgroup;
pub(crate) use table::TableCgroup;
#[cfg(test)]
use {
    hierarchy::{own_cgroup_dir, unescape},
    stale::{Owner, clean_stale, identity, start_time},
    std::path::PathBuf,
};

/// The start of every directory name this module creates.
const PREFIX: &str = "sandbox-process-";
/// The end of the name of a table directory whose processes may outlive
/// the host (no parent-death signal).
const KEEP: &str = "-keep";

/// How long a drop waits for killed members to exit before it gives up
/// removing the cgroups (SIGKILL is only slow for a process stuck in the
/// kernel).
const DROP_REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a table contains its children with.
pub(crate) enum TableContainment {
    /// Process groups only: chosen, or the fallback of `auto` (why).
    Groups(String),
    /// A cgroup per child.
    Cgroups(TableCgroup),
    /// `cgroup` was required but is unavailable (why): starts fail.
    Refused(String),
}

impl TableContainment {
    /// Sets up what `choice` asks for (creating the table's cgroup);
    /// `keep` marks it as one whose processes may outlive the host.
    pub(crate) fn new(choice: Containment, keep: bool) -> TableContainment {
        if choice == Containment::ProcessGroup {
            return TableContainment::Groups("chosen by the policy".to_owned());
        }
        match TableCgroup::create(keep) {
            Ok(cgroups) => {
                tracing::info!(dir = %cgroups.dir().display(), "process containment: a cgroup per process");
                TableContainment::Cgroups(cgroups)
            }
            Err(why) if choice == Containment::Auto => {
                tracing::info!(reason = %why, "process containment: process groups (no usable cgroup v2)");
                TableContainment::Groups(why)
            }
            Err(why) => {
                tracing::error!(reason = %why, "cgroup containment is required but unavailable: every start will fail");
                TableContainment::Refused(why)
            }
        }
    }

    /// The mode in effect: `Cgroup` or `ProcessGroup`, never `Auto`.
    pub(crate) fn mode(&self) -> Containment {
        match self {
            TableContainment::Groups(_) => Containment::ProcessGroup,
            TableContainment::Cgroups(_) | TableContainment::Refused(_) => Containment::Cgroup,
        }
    }

    /// What the table uses, and why, in words (for `Debug` and logs).
    pub(crate) fn describe(&self) -> String {
        match self {
            TableContainment::Groups(why) => format!("process groups ({why})"),
            TableContainment::Cgroups(c) => format!("a cgroup per process under {}", c.dir().display()),
            TableContainment::Refused(why) => format!("cgroups required but unavailable ({why})"),
        }
    }

    /// The table's cgroups, if it uses them.
    pub(crate) fn cgroups(&self) -> Option<&TableCgroup> {
        match self {
            TableContainment::Cgroups(c) => Some(c),
            _ => None,
        }
    }

    /// A cgroup for the child that will start as number `order`, and its
    /// open directory; `None` without cgroups.
    pub(crate) fn child(&self, order: u64) -> Result<Option<(Arc<ChildCgroup>, OwnedFd)>, ProcessError> {
        match self {
            TableContainment::Groups(_) => Ok(None),
            TableContainment::Refused(why) => {
                Err(ProcessError::Internal(format!("cgroup containment is required but unavailable: {why}")))
            }
            TableContainment::Cgroups(c) => c.child(order).map(Some).map_err(|e| {
                let doing = "creating the process's cgroup";
                e.limit_error(doing).unwrap_or_else(|| ProcessError::Internal(format!("{doing}: {}", e.error)))
            }),
        }
    }
}

/// SIGKILL to every process in the cgroup `dir` and below.
fn kill_tree(dir: &Path) -> io::Result<()> {
    fs::write(dir.join("cgroup.kill"), "1")
}

/// Removes the cgroup `dir` and every cgroup below it (a host nested in a
/// child may have made some), deepest first. Fails while any of them has a
/// live member. A directory already gone counts as removed.
fn remove_tree(dir: &Path) -> io::Result<()> {
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&entry.path())?;
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
