//! Where captured output spills to disk by default, and how much of the
//! disk it may take ([`default_capture_dir`],
//! [`default_capture_disk_total_bytes`]).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::capture::spill::SpillDir;
use super::policy::Limits;

/// The default spill budget is this fraction of the free space...
const DISK_FRACTION: u64 = 4;
/// ...and at most this much.
const DISK_CEILING: u64 = 16 << 30;

/// `/var/tmp` where it is a writable directory (meant for temporary files
/// on disk, where `/tmp` is often a RAM-backed tmpfs, which would turn
/// spilling into memory use again), else the system's temporary directory
/// (`$TMPDIR`, or `/tmp`).
pub fn default_capture_dir() -> PathBuf {
    let var_tmp = Path::new("/var/tmp");
    if var_tmp.is_dir() && writable(var_tmp) { var_tmp.to_path_buf() } else { std::env::temp_dir() }
}

/// A quarter of the space free for this user on the filesystem of `dir`
/// now, at most 16 GiB (0 when that can't be read: no spilling).
pub fn default_capture_disk_total_bytes(dir: &Path) -> u64 {
    free_space(dir).map_or(0, |free| (free / DISK_FRACTION).min(DISK_CEILING))
}

/// Bytes free for an unprivileged user on the filesystem of `dir`.
pub fn free_space(dir: &Path) -> Option<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a buffer of the right type.
    if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs succeeded, so it filled the buffer.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::useless_conversion)] // narrower than u64 on some targets
    Some(u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)))
}

fn writable(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: a NUL-terminated path.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// The spill directory of a table with `limits`, if it spills: made in
/// `capture_dir` after the leftovers of killed servers there are removed.
/// A directory that can't be made means no spilling, said once in the log.
pub(crate) fn spill_dir(limits: &Limits) -> Option<Arc<SpillDir>> {
    let parent = limits.capture_dir.as_deref().filter(|_| limits.capture_disk_bytes > 0)?;
    remove_stale_dirs(parent);
    match SpillDir::create(parent) {
        Ok(dir) => Some(dir),
        Err(e) => {
            tracing::warn!(dir = %parent.display(), error = %e, "captured output stays in memory: no spill directory");
            None
        }
    }
}

/// Removes the empty capture directories that servers killed before they
/// could (`sandbox-process-capture-<pid>-*` whose pid no longer runs):
/// their files had no names, so nothing else of them is left.
pub(crate) fn remove_stale_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("sandbox-process-capture-")) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<libc::pid_t>().ok()) else { continue };
        // SAFETY: signal 0 only checks that the process exists.
        let gone =
            unsafe { libc::kill(pid, 0) } == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            // Fails, harmlessly, on a directory that is not empty.
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_dir_is_writable_and_has_a_budget() {
        let dir = default_capture_dir();
        assert!(dir.is_dir() && writable(&dir), "{}", dir.display());
        assert!(free_space(&dir).is_some());
        assert!(default_capture_disk_total_bytes(&dir) <= DISK_CEILING);
    }

    #[test]
    fn stale_dirs_of_dead_servers_go_and_others_stay() {
        let parent = std::env::temp_dir().join(format!("capture-stale-test-{}", std::process::id()));
        std::fs::create_dir_all(&parent).unwrap();
        // No process has pid 2^22 + 1 (above the kernel's maximum).
        let dead = parent.join("sandbox-process-capture-4194305-1");
        let alive = parent.join(format!("sandbox-process-capture-{}-1", std::process::id()));
        let other = parent.join("something-else-4194305");
        for dir in [&dead, &alive, &other] {
            std::fs::create_dir_all(dir).unwrap();
        }
        remove_stale_dirs(&parent);
        assert!(!dead.exists() && alive.exists() && other.exists());
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
