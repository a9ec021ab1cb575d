//! How much memory the machine gives this server, for the default of the
//! capture budget ([`default_capture_total_bytes`]).

use std::path::PathBuf;

/// The default capture budget is this fraction of the memory...
const BUDGET_FRACTION: u64 = 8;
/// ...but at least this much (a tiny VM still holds ordinary output)...
const BUDGET_FLOOR: u64 = 64 << 20;
/// ...and at most this much (a big machine has better uses for it).
const BUDGET_CEILING: u64 = 1 << 30;

/// The default capture budget of a host: an eighth of the memory this
/// server may use ([`available_memory`]), at least 64 MiB and at most
/// 1 GiB; 256 MiB when that can't be read.
pub fn default_capture_total_bytes() -> usize {
    let bytes = available_memory().map_or(256 << 20, |m| (m / BUDGET_FRACTION).clamp(BUDGET_FLOOR, BUDGET_CEILING));
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// The memory this server may use: the machine's (`MemTotal` in
/// `/proc/meminfo`), or the limit of its memory cgroup if that is lower
/// (a container or a systemd unit with `MemoryMax=`).
pub fn available_memory() -> Option<u64> {
    let total = mem_total(&std::fs::read_to_string("/proc/meminfo").ok()?)?;
    Some(cgroup_limit().map_or(total, |limit| limit.min(total)))
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The memory limit of this process's cgroup: `memory.max` (v2) or
/// `memory.limit_in_bytes` (v1); none when unlimited or unreadable.
fn cgroup_limit() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_limit_files(&cgroups).iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        text.trim().parse::<u64>().ok() // "max" (v2 unlimited) does not parse
    })
}

/// The files that may hold the limit, for a `/proc/self/cgroup` text.
fn cgroup_limit_files(cgroups: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            files.push(PathBuf::from("/sys/fs/cgroup").join(path).join("memory.max"));
        } else if controllers.split(',').any(|c| c == "memory") {
            files.push(PathBuf::from("/sys/fs/cgroup/memory").join(path).join("memory.limit_in_bytes"));
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_in_kib() {
        let text = "MemTotal:        2048000 kB\nMemFree:          100 kB\n";
        assert_eq!(mem_total(text), Some(2048000 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn the_limit_files_of_cgroup_v1_and_v2() {
        let text = "4:memory:/box/a\n3:cpu:/\n0::/user.slice/x\n";
        assert_eq!(
            cgroup_limit_files(text),
            [
                PathBuf::from("/sys/fs/cgroup/memory/box/a/memory.limit_in_bytes"),
                PathBuf::from("/sys/fs/cgroup/user.slice/x/memory.max"),
            ]
        );
    }

    #[test]
    fn the_default_is_within_its_floor_and_ceiling() {
        let bytes = default_capture_total_bytes() as u64;
        assert!((BUDGET_FLOOR..=BUDGET_CEILING).contains(&bytes), "{bytes}");
    }
}
