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

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock};
use std::time::{Duration, Instant};

use super::exhaustion::{Creating, OsFailure};
use super::policy::Containment;
use crate::types::ProcessError;

/// The start of every directory name this module creates.
const PREFIX: &str = "sandbox-process-";
/// The end of the name of a table directory whose processes may outlive
/// the host (no parent-death signal).
const KEEP: &str = "-keep";

/// How long a drop waits for killed members to exit before it gives up
/// removing the cgroups (SIGKILL is only slow for a process stuck in the
/// kernel).
const DROP_REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest the removal after a kill of an ended process keeps trying.
const KILLED_REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a table contains its children with.
pub(crate) enum Setup {
    /// Process groups only: chosen, or the fallback of `auto` (why).
    Groups(String),
    /// A cgroup per child.
    Cgroups(Cgroups),
    /// `cgroup` was required but is unavailable (why): starts fail.
    Refused(String),
}

impl Setup {
    /// Sets up what `choice` asks for (creating the table's cgroup);
    /// `keep` marks it as one whose processes may outlive the host.
    pub(crate) fn new(choice: Containment, keep: bool) -> Setup {
        if choice == Containment::ProcessGroup {
            return Setup::Groups("chosen by the policy".to_owned());
        }
        match Cgroups::create(keep) {
            Ok(cgroups) => {
                tracing::info!(dir = %cgroups.dir.display(), "process containment: a cgroup per process");
                Setup::Cgroups(cgroups)
            }
            Err(why) if choice == Containment::Auto => {
                tracing::info!(reason = %why, "process containment: process groups (no usable cgroup v2)");
                Setup::Groups(why)
            }
            Err(why) => {
                tracing::error!(reason = %why, "cgroup containment is required but unavailable: every start will fail");
                Setup::Refused(why)
            }
        }
    }

    /// The mode in effect: `Cgroup` or `ProcessGroup`, never `Auto`.
    pub(crate) fn mode(&self) -> Containment {
        match self {
            Setup::Groups(_) => Containment::ProcessGroup,
            Setup::Cgroups(_) | Setup::Refused(_) => Containment::Cgroup,
        }
    }

    /// What the table uses, and why, in words (for `Debug` and logs).
    pub(crate) fn describe(&self) -> String {
        match self {
            Setup::Groups(why) => format!("process groups ({why})"),
            Setup::Cgroups(c) => format!("a cgroup per process under {}", c.dir.display()),
            Setup::Refused(why) => format!("cgroups required but unavailable ({why})"),
        }
    }

    /// The table's cgroups, if it uses them.
    pub(crate) fn cgroups(&self) -> Option<&Cgroups> {
        match self {
            Setup::Cgroups(c) => Some(c),
            _ => None,
        }
    }

    /// A cgroup for the child that will start as number `order`, and its
    /// open directory; `None` without cgroups.
    pub(crate) fn child(&self, order: u64) -> Result<Option<(Arc<ChildCgroup>, OwnedFd)>, ProcessError> {
        match self {
            Setup::Groups(_) => Ok(None),
            Setup::Refused(why) => {
                Err(ProcessError::Internal(format!("cgroup containment is required but unavailable: {why}")))
            }
            Setup::Cgroups(c) => c.child(order).map(Some).map_err(|e| {
                let doing = "creating the process's cgroup";
                e.limit_error(doing).unwrap_or_else(|| ProcessError::Internal(format!("{doing}: {}", e.error)))
            }),
        }
    }
}

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

/// A table's cgroup and its children's.
#[derive(Debug)]
pub(crate) struct Cgroups {
    /// The table's cgroup.
    dir: PathBuf,
    /// Children's cgroups not known to be removed, by start order.
    children: Mutex<HashMap<u64, Arc<ChildCgroup>>>,
}

impl Cgroups {
    /// Creates the table's cgroup under this process's own, after removing
    /// what dead hosts left there (once per process).
    fn create(keep: bool) -> Result<Cgroups, String> {
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
        let cgroups = Cgroups { dir, children: Mutex::default() };
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
    fn child(&self, order: u64) -> Result<(Arc<ChildCgroup>, OwnedFd), OsFailure> {
        let path = self.dir.join(order.to_string());
        fs::create_dir(&path).map_err(|e| OsFailure { creating: Creating::Cgroup, ..e.into() })?;
        let dir = match fs::File::open(&path) {
            Ok(file) => OwnedFd::from(file),
            Err(e) => {
                let _ = fs::remove_dir(&path);
                return Err(e.into());
            }
        };
        let child = Arc::new(ChildCgroup {
            path,
            reaped: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            removing: AtomicBool::new(false),
        });
        self.lock().insert(order, child.clone());
        Ok((child, dir))
    }

    /// A child whose spawn failed: its cgroup is empty, remove it now.
    pub(crate) fn discard(&self, child: &ChildCgroup) {
        child.reaped.store(true, Ordering::Release);
        child.try_remove();
        self.tidy();
    }

    /// The leader of `child` was reaped: remove its cgroup if it is empty,
    /// and any other reaped child's that has emptied since.
    pub(crate) fn reaped(&self, child: &ChildCgroup) {
        child.reaped.store(true, Ordering::Release);
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
            self.lock().retain(|_, c| !c.removed.load(Ordering::Acquire));
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
        map.retain(|_, c| !c.removed.load(Ordering::Acquire));
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

impl Drop for Cgroups {
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
    fn is_alive(&self) -> bool {
        match fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => start_time(&stat) == Some(self.start),
            // Not readable for another reason: don't take it for dead.
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        }
    }
}

/// This host process, as its directories name it.
fn identity() -> Result<Owner, String> {
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

/// The directory of this process's cgroup in a cgroup2 mount, from the
/// texts of `/proc/self/mountinfo` and `/proc/self/cgroup`.
///
/// `/proc/self/cgroup` gives the v2 path as the line `0::<path>`; a mount
/// shows the part of the hierarchy rooted at its `root` field, so the
/// directory is the mount point joined with the path below that root. The
/// first writable cgroup2 mount that contains the path wins.
pub(crate) fn own_cgroup_dir(mountinfo: &str, cgroup: &str) -> Result<PathBuf, String> {
    let own = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this process is in no cgroup v2 hierarchy (/proc/self/cgroup has no `0::` line)")?;
    if !own.starts_with('/') || own.ends_with(" (deleted)") {
        return Err(format!("unusable cgroup v2 path `{own}`"));
    }
    let mut seen = Vec::new();
    for line in mountinfo.lines() {
        // `id parent maj:min root mountpoint options [optional...] - fstype source superoptions`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = left.split_whitespace().collect();
        let (Some(root), Some(point), Some(options)) = (fields.get(3), fields.get(4), fields.get(5)) else {
            continue;
        };
        let (root, point) = (unescape(root), unescape(point));
        if options.split(',').any(|o| o == "ro") {
            seen.push(format!("{point} is read-only"));
            continue;
        }
        let Ok(below) = Path::new(own).strip_prefix(&root) else {
            seen.push(format!("{point} does not contain {own}"));
            continue;
        };
        return Ok(Path::new(&point).join(below));
    }
    if seen.is_empty() {
        Err("no cgroup2 file system is mounted".to_owned())
    } else {
        Err(format!("no usable cgroup2 mount: {}", seen.join("; ")))
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
