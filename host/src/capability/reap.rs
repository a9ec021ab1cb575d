//! Waiting for a child and reaping it, without a thread per child.
//!
//! The child is watched through a pidfd (Linux 5.3), which becomes readable
//! when it exits; on kernels without one, each waiter retries on every
//! `SIGCHLD`. Reaping is `waitpid` of that one pid: nothing else in the host
//! (tokio included) reaps it.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Mutex;

use tokio::io::unix::AsyncFd;

/// Waits for one child and reaps it.
pub(crate) struct ExitWatch {
    pid: libc::pid_t,
    pidfd: Option<AsyncFd<OwnedFd>>,
    reaped: bool,
}

impl ExitWatch {
    /// A watch on our unreaped child `pid`. Needs a tokio runtime (its I/O
    /// driver, or its signal driver without pidfds).
    pub(crate) fn new(pid: libc::pid_t) -> io::Result<ExitWatch> {
        // SAFETY: pidfd_open returns a new descriptor or -1. The pid can't
        // have been reused: it is our child and not yet reaped.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let pidfd = if fd >= 0 {
            // SAFETY: the descriptor is new and ours, and the OwnedFd keeps
            // it open for as long as the registration exists.
            let registered = unsafe {
                AsyncFd::register_with_interest(OwnedFd::from_raw_fd(fd as RawFd), tokio::io::Interest::READABLE)
            };
            Some(registered.map_err(io::Error::from)?)
        } else {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOSYS) {
                return Err(e);
            }
            None
        };
        Ok(ExitWatch { pid, pidfd, reaped: false })
    }

    /// A watch that uses the SIGCHLD fallback, as on kernels without pidfds.
    #[cfg(test)]
    pub(crate) fn without_pidfd(pid: libc::pid_t) -> ExitWatch {
        ExitWatch { pid, pidfd: None, reaped: false }
    }

    /// True once the child was reaped.
    #[cfg(test)]
    pub(crate) fn is_reaped(&self) -> bool {
        self.reaped
    }

    /// Waits until the child exits and reaps it.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        match &self.pidfd {
            Some(pidfd) => loop {
                let mut ready = pidfd.readable().await?;
                if let Some(status) = try_reap(self.pid)? {
                    self.reaped = true;
                    return Ok(status);
                }
                ready.clear_ready();
            },
            None => {
                // Listening before the first try, so no SIGCHLD is missed.
                let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
                loop {
                    if let Some(status) = try_reap(self.pid)? {
                        self.reaped = true;
                        return Ok(status);
                    }
                    sigchld.recv().await;
                }
            }
        }
    }
}

impl Drop for ExitWatch {
    /// A watch dropped before its child was reaped (its runtime shut down)
    /// hands the pid on: every later launch tries to reap it.
    fn drop(&mut self) {
        if !self.reaped && !matches!(try_reap(self.pid), Ok(Some(_))) {
            ORPHANS.lock().unwrap_or_else(|e| e.into_inner()).push(self.pid);
        }
    }
}

/// Children whose watch was dropped before they exited.
static ORPHANS: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

/// Tries to reap every orphaned child (each launch calls this).
pub(crate) fn reap_orphans() {
    let mut orphans = ORPHANS.lock().unwrap_or_else(|e| e.into_inner());
    orphans.retain(|&pid| matches!(try_reap(pid), Ok(None)));
}

/// `waitpid(pid, WNOHANG)`: the status once it exited.
fn try_reap(pid: libc::pid_t) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on a pid of ours, with a valid status pointer.
        match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
            0 => return Ok(None),
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            _ => return Ok(Some(ExitStatus::from_raw(status))),
        }
    }
}
