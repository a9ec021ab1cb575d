//! Starting a child, and the tasks that serve it: one pump per captured
//! pipe, one reaper.
//!
//! Spawning happens on one long-lived thread per host process (the
//! *spawner*), shared by every table:
//!
//! - `PR_SET_PDEATHSIG` fires when the thread that spawned the child exits,
//!   not when the process does: a child spawned from a short-lived thread (a
//!   `spawn_blocking` worker retires after 10 s idle) would be killed at a
//!   random moment. The spawner never exits, so the death signal means what
//!   it says: the host died. (A dropped table kills its children itself.)
//! - A child inherits every file descriptor of the host until it executes
//!   (close-on-exec only closes them then). Were two threads spawning at
//!   once, the child of one could hold the other's pipes for that moment:
//!   a child that closed its stdin would still have a reader, and a write
//!   to it would succeed. One thread creates every pipe and starts every
//!   child, so no child sees another spawn's child-side ends.
//!
//! The child is started without copying the host's address space (see
//! `launch`). The spawner enters the caller's tokio runtime for each spawn,
//! so the pipes and the child's exit are registered with it.
//!
//! With cgroup containment the child starts in its cgroup (see `cgroup`
//! and `launch`).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, Weak, mpsc};

use tokio::net::unix::pipe;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::Inner;
use super::exhaustion::OsFailure;
use super::launch::{self, Launch};
use super::policy::Prepared;
use super::process::{End, Proc};
use super::reap::ExitWatch;
use super::signal;
use crate::types::{OutputMode, OutputStream, ProcessError, StartRequest, StdinMode};

/// The most a pump reads at once: a flood is read in large chunks, with
/// few wakeups and lock acquisitions.
const READ_BUF: usize = 64 << 10;

std::thread_local! {
    /// The read buffer of every pump that runs on this thread: a pump reads
    /// only once its pipe is readable, and without waiting, so a thousand
    /// processes cost one buffer per worker thread, not one each.
    static READ: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_BUF]);
}

type Job = Box<dyn FnOnce() + Send>;

/// The jobs of the spawning thread, which starts at the first spawn.
static JOBS: Mutex<Option<mpsc::Sender<Job>>> = Mutex::new(None);

/// A table's handle to the host process's one spawning thread.
#[derive(Default)]
pub(crate) struct Spawner;

impl Spawner {
    /// Runs `job` on the spawner thread and awaits its result. Should the
    /// caller stop waiting, the result goes to `unclaimed` instead (on the
    /// spawner thread), so that nothing it holds is lost unseen.
    async fn run<T: Send + 'static>(
        &self,
        unclaimed: impl FnOnce(T) + Send + 'static,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ProcessError> {
        let internal = |what: &str| ProcessError::Internal(format!("spawner thread: {what}"));
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            if let Err(value) = reply.send(job()) {
                unclaimed(value);
            }
        });
        {
            let mut jobs = JOBS.lock().unwrap_or_else(|e| e.into_inner());
            if jobs.is_none() {
                let (tx, rx) = mpsc::channel::<Job>();
                std::thread::Builder::new()
                    .name("process-spawner".to_owned())
                    // Never ends: the sender is static. A panicking job (a
                    // runtime without I/O, say) must not take the thread
                    // down: its caller sees the reply channel close and
                    // reports an internal error.
                    .spawn(move || {
                        for job in rx {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                    })
                    .map_err(|e| internal(&e.to_string()))?;
                *jobs = Some(tx);
            }
            let tx = jobs.as_ref().expect("just set");
            tx.send(job).map_err(|_| internal("gone"))?;
        }
        // The clone and the child's way to exec take the spawner thread,
        // not this task's worker.
        result.await.map_err(|_| internal("failed"))
    }
}

/// A started child: its pid, the host's ends of its pipes, and the watch
/// that reaps it.
pub(crate) struct Child {
    pub pid: u32,
    pub stdin: Option<pipe::Sender>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    exit: ExitWatch,
}

fn stdio(mode: OutputMode) -> launch::Stdio {
    match mode {
        OutputMode::Capture => launch::Stdio::Pipe,
        OutputMode::Discard => launch::Stdio::Null,
    }
}

/// Spawns the child for `prepared` on the spawner thread, registering its
/// pipes and its exit with `handle`'s runtime: its own process group, a
/// clean environment, the requested stdio, argv[0] as requested; moved into
/// the cgroup whose directory is open as `cgroup`, if any.
pub(crate) async fn spawn(
    spawner: &Spawner,
    handle: &Handle,
    prepared: &Prepared,
    req: &StartRequest,
    kill_on_host_death: bool,
    cgroup: Option<OwnedFd>,
) -> Result<Child, ProcessError> {
    let program = prepared.program.clone();
    let dir = prepared.dir.clone();
    let env = prepared.env.clone();
    let argv: Vec<OsString> = std::iter::once(&req.command).chain(&req.args).map(OsString::from).collect();
    let (stdin, stdout, stderr) = (
        match req.stdin_mode {
            StdinMode::Pipe => launch::Stdio::Pipe,
            StdinMode::Closed => launch::Stdio::Null,
        },
        stdio(req.stdout_mode),
        stdio(req.stderr_mode),
    );
    let handle = handle.clone();
    let spawning = spawner.run(end_unclaimed, move || {
        let _runtime = handle.enter();
        let spare = launch::spare_descriptor()?;
        let launched = launch::launch(&Launch {
            program: &program,
            argv: argv.iter().map(OsString::as_os_str).collect(),
            env: &env,
            dir: &dir,
            stdin,
            stdout,
            stderr,
            cgroup: cgroup.as_ref().map(AsRawFd::as_raw_fd),
            kill_on_host_death,
        });
        // The child has executed (or failed to): done with the directory.
        drop(cgroup);
        let launched = launched?;
        let pid = launched.pid;
        // One spawning thread, so the slot is the pidfd's unless another
        // thread opens something in this instant.
        drop(spare);
        let adopt = || -> Result<Child, OsFailure> {
            Ok(Child {
                pid: pid as u32,
                exit: ExitWatch::new(pid)?,
                stdin: launched.stdin.map(pipe::Sender::from_owned_fd).transpose()?,
                stdout: launched.stdout.map(pipe::Receiver::from_owned_fd).transpose()?,
                stderr: launched.stderr.map(pipe::Receiver::from_owned_fd).transpose()?,
            })
        };
        adopt().inspect_err(|_| abandon(pid))
    });
    let spawned = spawning.await?;
    spawned.map_err(|e| start_error(&req.command, &prepared.program, e))
}

/// A child whose start was given up while it started (its caller stopped
/// waiting): ended at once; its dropped watch hands it on to be reaped.
fn end_unclaimed(spawned: Result<Child, OsFailure>) {
    if let Ok(child) = spawned {
        signal::kill_group(child.pid);
    }
}

/// Ends and reaps a child the host could not take charge of (out of file
/// descriptors for its pidfd, say), so it neither runs unseen nor lingers.
fn abandon(pid: libc::pid_t) {
    // SAFETY: our own unreaped child (the pid can't be reused) and its group.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) == -1
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
    }
}

/// `limit-exceeded` when the host ran out of something (the request may
/// succeed later), else `spawn-failed` with the OS reason.
fn start_error(command: &str, program: &Path, e: OsFailure) -> ProcessError {
    let doing = format!("starting `{command}` ({})", program.display());
    e.limit_error(&doing).unwrap_or_else(|| {
        ProcessError::SpawnFailed(format!("command `{command}` ({}): {}", program.display(), e.error))
    })
}

/// Starts the pumps of the captured pipes and the reaper of `child`.
pub(crate) fn serve(handle: &Handle, mut child: Child, proc: &Arc<Proc>, table: Weak<Inner>) {
    if let Some(out) = child.stdout.take() {
        handle.spawn(pump(proc.clone(), OutputStream::Stdout, out, table.clone()));
    }
    if let Some(err) = child.stderr.take() {
        handle.spawn(pump(proc.clone(), OutputStream::Stderr, err, table.clone()));
    }
    handle.spawn(reap(child.exit, proc.clone(), table));
}

/// Reads one pipe into the capture until end of file (which comes when
/// every member of the group holding it has closed or exited).
async fn pump(proc: Arc<Proc>, stream: OutputStream, pipe: pipe::Receiver, table: Weak<Inner>) {
    loop {
        proc.wait_for_room().await;
        let read = match pipe.readable().await {
            Ok(()) => READ.with_borrow_mut(|buf| {
                let n = pipe.try_read(buf)?;
                Ok((n, n > 0 && proc.push_output(stream, &buf[..n], super::now_ms())))
            }),
            Err(e) => Err(e),
        };
        match read {
            Ok((0, _)) => break,
            Ok((_, over_budget)) => {
                if over_budget && let Some(inner) = table.upgrade() {
                    inner.reclaim_capture();
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => {}
            Err(e) => {
                tracing::warn!(pid = proc.pid, ?stream, error = %e, "reading child output failed");
                break;
            }
        }
    }
    proc.finish_output(stream, super::now_ms());
    // The last holder of the pipe is gone: often a stray member that kept
    // the cgroup of a reaped child populated.
    if let Some(inner) = table.upgrade()
        && let Some(cgroups) = inner.containment.cgroups()
    {
        cgroups.tidy();
    }
}

/// Waits for the child (so it never lingers as a zombie) and records its end.
async fn reap(mut exit: ExitWatch, proc: Arc<Proc>, table: Weak<Inner>) {
    let status = exit.wait().await;
    let end = End::new(status, super::now_ms());
    match table.upgrade() {
        Some(inner) => {
            inner.on_exit(&proc, end);
            if let (Some(cgroups), Some(cgroup)) = (inner.containment.cgroups(), &proc.cgroup) {
                cgroups.reaped(cgroup);
            }
        }
        None => proc.set_ended(end),
    }
    proc.notify();
}
