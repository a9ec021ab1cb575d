//! Signals to process groups, and the guards that make them safe.
//!
//! Every child leads its own process group (pgid = pid), so a signal to
//! `-pid` reaches the child and everything it started that stayed in the
//! group. The one thing that must never happen is a signal to pid 0, -1 or
//! our own group: `kill(0, ..)` signals the host's own group and
//! `kill(-1, ..)` every process we may signal. [`group_id`] refuses those.
//!
//! Why a group id stays safe to use after the leader is reaped: the kernel
//! does not give out a pid while a process group of that id still has a
//! member, so while members remain `-pgid` still means our group. Once the
//! group is empty the id may be reused, which is why the table remembers
//! when it saw a group empty and never signals it again.

use std::io;

use crate::types::ProcessError;

/// The highest signal number delivered (Linux's `SIGRTMAX`).
pub(crate) const MAX_SIGNAL: i32 = 64;

/// Checks that `signal` is a number the host delivers (1 to 64).
pub(crate) fn check(signal: i32) -> Result<(), ProcessError> {
    if (1..=MAX_SIGNAL).contains(&signal) { Ok(()) } else { Err(ProcessError::InvalidSignal(signal)) }
}

/// The (positive) group id of the child `pid`, refusing ids that would make
/// `kill(-id, ..)` reach beyond that group.
fn group_id(pid: u32) -> io::Result<libc::pid_t> {
    let id = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: getpgrp has no preconditions and cannot fail.
    let own_group = unsafe { libc::getpgrp() };
    if id <= 1 || id == own_group {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(id)
}

/// Sends `signal` to the process group led by `pid`. `signal` 0 only checks
/// that the group has a member.
pub(crate) fn signal_group(pid: u32, signal: i32) -> io::Result<()> {
    let id = group_id(pid)?;
    // SAFETY: kill has no memory-safety preconditions; `-id` names one
    // process group, never 0 or -1 (see `group_id`).
    if unsafe { libc::kill(-id, signal) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// SIGKILL to the group led by `pid`; true if the group may still have
/// members, false once the kernel says it has none (`ESRCH`).
pub(crate) fn kill_group(pid: u32) -> bool {
    match signal_group(pid, libc::SIGKILL) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() != Some(libc::ESRCH),
    }
}

/// True unless the kernel says the group led by `pid` has no member left
/// (a zombie member still counts: it holds the id).
pub(crate) fn group_may_exist(pid: u32) -> bool {
    match signal_group(pid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() != Some(libc::ESRCH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_numbers_are_checked() {
        assert!(check(1).is_ok());
        assert!(check(15).is_ok());
        assert!(check(64).is_ok());
        for bad in [0, -1, 65, i32::MIN, i32::MAX] {
            assert!(matches!(check(bad), Err(ProcessError::InvalidSignal(s)) if s == bad));
        }
    }

    #[test]
    fn never_signals_everyone_or_our_own_group() {
        // SAFETY: getpgrp cannot fail.
        let own = unsafe { libc::getpgrp() } as u32;
        for pid in [0, 1, own, u32::MAX] {
            // Signal 0: even if the guard were broken nothing is delivered.
            let err = signal_group(pid, 0).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "pid {pid}");
            assert!(!group_may_exist(pid));
        }
    }
}
