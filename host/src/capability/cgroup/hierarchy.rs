//! Finding where this host process sits in the cgroup v2 hierarchy, from
//! the texts of `/proc/self/mountinfo` and `/proc/self/cgroup`.

use std::path::{Path, PathBuf};

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
pub(super) fn unescape(field: &str) -> String {
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
