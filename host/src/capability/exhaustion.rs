//! Telling a host that is full from a request that is wrong.
//!
//! A start can fail because the command can't run (no such file, not
//! executable): the client's mistake, `spawn-failed` (400), and repeating it
//! fails the same way. It can also fail because the machine ran out of
//! something the host needs for every process (file descriptors for the
//! pipes and the pidfd, a process slot, memory for the clone, a cgroup):
//! then the request was fine and may succeed later, once other processes
//! ended. That is `limit-exceeded` (429), never a 400 that tells the client
//! its request is at fault, nor a 5xx that a client would retry at once.

use std::io;

use crate::types::ProcessError;

/// What a failed system call was creating, which decides what its errno
/// means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Creating {
    /// A descriptor: a pipe, a pidfd, an open file or directory. Only
    /// EMFILE and ENFILE mean "full" here; ENOMEM from an open is rare
    /// enough to report as it is.
    Descriptor,
    /// The process itself (`clone`): EAGAIN is a process limit, ENOMEM is
    /// memory or process ids.
    Process,
    /// A cgroup directory (`mkdir`): EAGAIN is the hierarchy's limit.
    Cgroup,
}

/// An OS call that failed, and what it was creating.
#[derive(Debug)]
pub(crate) struct OsFailure {
    /// What the OS said, with context (the step of a child that failed).
    pub error: io::Error,
    /// The errno, if the OS refused (context hides it in `error`).
    pub errno: Option<i32>,
    /// What the failed call was creating.
    pub creating: Creating,
}

impl From<io::Error> for OsFailure {
    fn from(error: io::Error) -> Self {
        OsFailure { errno: error.raw_os_error(), error, creating: Creating::Descriptor }
    }
}

impl From<OsFailure> for io::Error {
    fn from(e: OsFailure) -> Self {
        e.error
    }
}

impl OsFailure {
    /// A failed `clone`.
    pub(crate) fn cloning(error: io::Error) -> Self {
        OsFailure { creating: Creating::Process, ..error.into() }
    }

    /// `limit-exceeded` if this failure means the host ran out of
    /// something; `None` if it is about the request.
    pub(crate) fn limit_error(&self, doing: &str) -> Option<ProcessError> {
        limit_error(self.errno, self.creating, &format!("{doing}: {}", self.error))
    }
}

/// The resource that `errno` says ran out, in words with the knob that
/// sets it; `None` if the errno is not about running out.
pub(crate) fn exhausted(errno: i32, creating: Creating) -> Option<String> {
    match (errno, creating) {
        (libc::EMFILE, _) => Some(match open_file_limit() {
            Some(limit) => format!("file descriptors: all {limit} that the host may open are in use (RLIMIT_NOFILE)"),
            None => "file descriptors: the host's open-file limit is reached (RLIMIT_NOFILE)".to_owned(),
        }),
        (libc::ENFILE, _) => Some("file descriptors: the system-wide limit is reached (fs.file-max)".to_owned()),
        (libc::EAGAIN, Creating::Process) => {
            Some("processes: a process limit is reached (RLIMIT_NPROC, pids.max or kernel.threads-max)".to_owned())
        }
        (libc::ENOMEM, Creating::Process) => Some("memory or process ids (kernel.pid_max)".to_owned()),
        (libc::EAGAIN, Creating::Cgroup) => Some("cgroups: cgroup.max.descendants is reached".to_owned()),
        (libc::ENOMEM, Creating::Cgroup) => Some("memory for a new cgroup".to_owned()),
        _ => None,
    }
}

/// `limit-exceeded` naming the resource, for `doing` that failed with
/// `errno`; `None` if the errno is not about running out.
pub(crate) fn limit_error(errno: Option<i32>, creating: Creating, doing: &str) -> Option<ProcessError> {
    let resource = exhausted(errno?, creating)?;
    Some(ProcessError::LimitExceeded(format!("the host is out of {resource}; {doing}")))
}

/// The soft `RLIMIT_NOFILE` in force now.
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct it is given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_is_a_limit_whatever_was_being_created() {
        for creating in [Creating::Descriptor, Creating::Process, Creating::Cgroup] {
            let emfile = exhausted(libc::EMFILE, creating).unwrap();
            assert!(emfile.contains("RLIMIT_NOFILE"), "{emfile}");
            let enfile = exhausted(libc::ENFILE, creating).unwrap();
            assert!(enfile.contains("fs.file-max"), "{enfile}");
        }
    }

    #[test]
    fn eagain_and_enomem_are_limits_only_when_creating_a_process_or_cgroup() {
        assert!(exhausted(libc::EAGAIN, Creating::Process).unwrap().contains("RLIMIT_NPROC"));
        assert!(exhausted(libc::ENOMEM, Creating::Process).unwrap().contains("memory"));
        assert!(exhausted(libc::EAGAIN, Creating::Cgroup).unwrap().contains("cgroup.max.descendants"));
        assert_eq!(exhausted(libc::EAGAIN, Creating::Descriptor), None);
        assert_eq!(exhausted(libc::ENOMEM, Creating::Descriptor), None);
    }

    #[test]
    fn the_client_s_mistakes_are_not_limits() {
        for errno in [libc::ENOENT, libc::EACCES, libc::ENOEXEC, libc::E2BIG, libc::ENOTDIR] {
            for creating in [Creating::Descriptor, Creating::Process, Creating::Cgroup] {
                assert_eq!(exhausted(errno, creating), None, "errno {errno}");
            }
        }
        assert!(limit_error(None, Creating::Process, "starting").is_none());
    }

    #[test]
    fn a_clone_short_of_processes_is_a_limit_a_missing_program_is_not() {
        let clone = OsFailure::cloning(io::Error::from_raw_os_error(libc::EAGAIN));
        assert!(matches!(clone.limit_error("starting `x`"), Some(ProcessError::LimitExceeded(_))));
        // EAGAIN from anything but the clone is not about processes.
        assert!(OsFailure::from(io::Error::from_raw_os_error(libc::EAGAIN)).limit_error("x").is_none());
        assert!(OsFailure::from(io::Error::from_raw_os_error(libc::ENOENT)).limit_error("x").is_none());
        let pipes = OsFailure::from(io::Error::from_raw_os_error(libc::EMFILE));
        assert!(matches!(pipes.limit_error("x"), Some(ProcessError::LimitExceeded(_))));
    }

    #[test]
    fn the_limit_error_names_the_resource_and_what_failed() {
        let Some(ProcessError::LimitExceeded(message)) =
            limit_error(Some(libc::EMFILE), Creating::Descriptor, "starting `cat`: creating its pipes")
        else {
            panic!("not a limit");
        };
        assert!(message.starts_with("the host is out of file descriptors"), "{message}");
        assert!(message.ends_with("starting `cat`: creating its pipes"), "{message}");
    }
}
