//! Starting a child, and the tasks that serve it: one pump per captured
//! pipe, one reaper.
//!
//! Spawning happens on one long-lived thread per host process (the
//! *spawner*), shared by every table:
//!
//! - `PR_SET_PDEATHSIG` fires when the thread that forked the child exits,
//!   not when the process does: a child forked from a short-lived thread (a
//!   `spawn_blocking` worker retires after 10 s idle) would be killed at a
//!   random moment. The spawner never exits, so the death signal means what
//!   it says: the host died. (A dropped table kills its children itself.)
//! - A child inherits every file descriptor of the host until it executes
//!   (close-on-exec only closes them then). Were two threads forking at
//!   once, the child of one could hold the other's pipes for that moment:
//!   a child that closed its stdin would still have a reader, and a write
//!   to it would succeed. One thread creates every pipe and forks every
//!   child, so a fork never sees another spawn's child-side ends.
//!
//! The spawner enters the caller's tokio runtime for each spawn, so the
//! pipes and the child are registered with it.
//!
//! With cgroup containment the child moves itself into its cgroup before it
//! executes anything (see `cgroup`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, Weak, mpsc};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::runtime::Handle;

use super::Inner;
use super::policy::Prepared;
use super::process::{End, Proc};
use crate::types::{OutputMode, OutputStream, ProcessError, StartRequest, StdinMode};

/// The read buffer of a pump starts this small, so that a thousand quiet
/// processes cost little...
const READ_BUF_MIN: usize = 4 << 10;
/// ...and doubles, up to this, each time a read fills it: a flood is read
/// in large chunks, with few wakeups and lock acquisitions.
const READ_BUF_MAX: usize = 64 << 10;

type Job = Box<dyn FnOnce() + Send>;

/// The jobs of the spawning thread, which starts at the first spawn.
static JOBS: Mutex<Option<mpsc::Sender<Job>>> = Mutex::new(None);

/// A table's handle to the host process's one spawning thread.
#[derive(Default)]
pub(crate) struct Spawner;

impl Spawner {
    /// Runs `job` on the spawner thread and returns its result.
    fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ProcessError> {
        let internal = |what: &str| ProcessError::Internal(format!("spawner thread: {what}"));
        let (reply, result) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = reply.send(job());
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
        // A short block: fork and exec, which a spawn on this thread would
        // cost anyway.
        result.recv().map_err(|_| internal("failed"))
    }
}

/// The command for `prepared`: its own process group, a clean environment,
/// the requested stdio, argv[0] as requested; moved into the cgroup whose
/// `cgroup.procs` is open as `cgroup_procs`, if any.
fn command(
    prepared: &Prepared,
    req: &StartRequest,
    kill_on_host_death: bool,
    cgroup_procs: Option<RawFd>,
) -> Command {
    let mut cmd = Command::new(&prepared.program);
    cmd.arg0(&req.command)
        .args(&req.args)
        .env_clear()
        .envs(prepared.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&prepared.dir)
        .process_group(0)
        .kill_on_drop(false)
        .stdin(match req.stdin_mode {
            StdinMode::Pipe => Stdio::piped(),
            StdinMode::Closed => Stdio::null(),
        })
        .stdout(stdio(req.stdout_mode))
        .stderr(stdio(req.stderr_mode));
    // SAFETY: runs in the forked child before exec and only calls signal(),
    // which is async-signal-safe, allocating nothing.
    unsafe {
        cmd.pre_exec(|| {
            // Ignored signals survive exec: a server started under `nohup`
            // (SIGHUP ignored) would hand that on, and a child sent SIGHUP
            // through the API would not die. Children start with defaults.
            for sig in 1..=libc::SIGRTMAX() {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            Ok(())
        });
    }
    if let Some(fd) = cgroup_procs {
        // SAFETY: the closure runs in the forked child before exec and makes
        // one async-signal-safe call (write), allocating nothing. `fd` stays
        // open in the parent until the spawn returned (see `spawn`), so the
        // forked child has it; it is close-on-exec, so the program doesn't.
        unsafe {
            cmd.pre_exec(move || {
                // "0" moves the writing process: the child, before it runs
                // anything that could fork.
                match libc::write(fd, b"0".as_ptr().cast(), 1) {
                    1 => Ok(()),
                    -1 => Err(io::Error::last_os_error()),
                    _ => Err(io::Error::from_raw_os_error(libc::EIO)),
                }
            });
        }
    }
    if kill_on_host_death {
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe calls (prctl, getppid), allocating nothing.
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) == -1
                {
                    return Err(io::Error::last_os_error());
                }
                // If the host died before the prctl, no signal will come:
                // don't run as an orphan.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    cmd
}

fn stdio(mode: OutputMode) -> Stdio {
    match mode {
        OutputMode::Capture => Stdio::piped(),
        OutputMode::Discard => Stdio::null(),
    }
}

/// Spawns the child on the spawner thread, inside `handle`'s runtime; into
/// the cgroup whose `cgroup.procs` is open as `cgroup_procs`, if any.
pub(crate) fn spawn(
    spawner: &Spawner,
    handle: &Handle,
    prepared: &Prepared,
    req: &StartRequest,
    kill_on_host_death: bool,
    cgroup_procs: Option<OwnedFd>,
) -> Result<Child, ProcessError> {
    let mut cmd = command(
        prepared,
        req,
        kill_on_host_death,
        cgroup_procs.as_ref().map(AsRawFd::as_raw_fd),
    );
    let handle = handle.clone();
    let spawned = spawner.run(move || {
        let _runtime = handle.enter();
        let spawned = cmd.spawn();
        // Closed only now: the pre_exec hook writes to it in the child.
        drop(cgroup_procs);
        spawned
    })?;
    spawned.map_err(|e| spawn_error(&req.command, &prepared.program, e))
}

fn spawn_error(command: &str, program: &Path, e: io::Error) -> ProcessError {
    ProcessError::SpawnFailed(format!("command `{command}` ({}): {e}", program.display()))
}

/// Starts the pumps of the captured pipes and the reaper of `child`.
pub(crate) fn serve(handle: &Handle, mut child: Child, proc: &Arc<Proc>, table: Weak<Inner>) {
    if let Some(out) = child.stdout.take() {
        handle.spawn(pump(proc.clone(), OutputStream::Stdout, out, table.clone()));
    }
    if let Some(err) = child.stderr.take() {
        handle.spawn(pump(proc.clone(), OutputStream::Stderr, err, table.clone()));
    }
    handle.spawn(reap(child, proc.clone(), table));
}

/// Reads one pipe into the capture until end of file (which comes when
/// every member of the group holding it has closed or exited).
async fn pump(
    proc: Arc<Proc>,
    stream: OutputStream,
    mut pipe: impl AsyncRead + Unpin,
    table: Weak<Inner>,
) {
    let mut buf = vec![0u8; READ_BUF_MIN];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                proc.push_output(stream, &buf[..n], super::now_ms());
                if n == buf.len() && buf.len() < READ_BUF_MAX {
                    buf.resize(buf.len() * 2, 0);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
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
async fn reap(mut child: Child, proc: Arc<Proc>, table: Weak<Inner>) {
    let status = child.wait().await;
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
