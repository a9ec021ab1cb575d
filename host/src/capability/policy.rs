//! What the host allows ([`Policy`]), how much it holds ([`Limits`]), and
//! turning a [`StartRequest`] into exactly what will be executed.
//!
//! The guest has already validated the request's syntax; the checks here are
//! defence in depth, and the ones only the host can make: which files and
//! directories really exist, where symlinks and `..` really lead, and what
//! the policy says about them. Every path is canonicalized before it is
//! compared, so neither a symlink nor `..` can escape the working-directory
//! root or the command allow-list.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::environment::{DEFAULT_LOCALE, child_path, effective_uid, set_var, user_env_of};
use crate::types::{ProcessError, StartRequest};

/// What processes the host agrees to start, and with what environment.
#[derive(Debug, Clone)]
pub struct Policy {
    /// When set, the only executables that may run: a command is allowed
    /// when its canonical path (symlinks resolved) equals the canonical path
    /// of an entry. `None` allows every executable.
    pub allowed_commands: Option<Vec<PathBuf>>,
    /// When set, every working directory must be this directory or inside
    /// it, after symlinks and `..` are resolved.
    pub working_dir_root: Option<PathBuf>,
    /// The working directory of a request that names none, and the base of
    /// a relative one.
    pub default_working_dir: PathBuf,
    /// The environment every child starts from, over the user's variables
    /// (`user_env`); the request's variables are added on top and override
    /// these. Default: `PATH` (the server's own, else [`DEFAULT_PATH`](super::DEFAULT_PATH)) and
    /// `LANG=`[`DEFAULT_LOCALE`]. The rest of the server's environment is
    /// never inherited unless the embedder copies it in here.
    pub base_env: Vec<(String, String)>,
    /// Start each child's environment with `HOME`, `USER`, `LOGNAME` and
    /// `SHELL` of the user it runs as, from the user database (see
    /// [`user_env`](super::environment::user_env)); `base_env` and the
    /// request override them. Default on. The user is the server's own
    /// (effective uid), looked up once, when the table is created.
    pub user_env: bool,
    /// Variable names a request may not set (for example `LD_PRELOAD`).
    /// Matched exactly; the base environment is not checked.
    pub forbidden_env: Vec<String>,
    /// Ask the kernel to SIGKILL each child when the host dies
    /// (`PR_SET_PDEATHSIG`), so that a crashed host leaves no orphans.
    ///
    /// Caveats: the signal fires when the *thread* that spawned the child
    /// exits, not the process, which is why the host spawns from one
    /// thread that never exits; it is cleared when the child executes a
    /// set-user-ID program; it reaches the child only, not processes the
    /// child starts (the kill of the whole group at shutdown covers those
    /// while the host is alive). Off, a child may outlive a host killed
    /// with SIGKILL.
    pub kill_on_host_death: bool,
    /// How everything a child starts is kept together, so that `kill` and
    /// shutdown end it all: a cgroup per child where the machine allows it,
    /// or process groups only (see [`Containment`]). Default
    /// [`Containment::Auto`].
    pub containment: Containment,
}

/// How a table keeps together everything a child starts.
///
/// Every child leads its own process group in every mode, and `signal`
/// always goes to that group. What differs is what `kill` (and shutdown)
/// can reach:
///
/// - with a **cgroup** per child (cgroup v2), every descendant of the child
///   stays in the child's cgroup whatever it does (`setsid`, double fork),
///   and `kill` ends the whole cgroup through `cgroup.kill`;
/// - with **process groups** only, `kill` reaches the members of the
///   child's group: a descendant that called `setsid` or `setpgid` has left
///   it and survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Containment {
    /// A cgroup per child when a writable cgroup v2 hierarchy with
    /// `cgroup.kill` (Linux 5.14) is found at table creation; process groups
    /// otherwise.
    #[default]
    Auto,
    /// A cgroup per child, or no child at all: when cgroups are not
    /// available every start fails with an `internal` error saying why.
    Cgroup,
    /// Process groups only, even where cgroups are available.
    ProcessGroup,
}

impl Default for Policy {
    /// Any command, any directory, starting in the current directory, with
    /// an environment of `HOME`, `USER`, `LOGNAME`, `SHELL` (the server's
    /// user's), `PATH` (the server's, else [`DEFAULT_PATH`](super::DEFAULT_PATH)) and
    /// `LANG=C.UTF-8`, nothing forbidden, children killed if the host dies,
    /// a cgroup per child where the machine allows it.
    ///
    /// Only `PATH` comes from the server's own environment: nothing else of
    /// it (tokens, credentials, proxies) reaches children unless the
    /// embedder adds it.
    fn default() -> Self {
        Policy {
            allowed_commands: None,
            working_dir_root: None,
            default_working_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            base_env: vec![
                ("PATH".to_owned(), child_path(std::env::var_os("PATH"))),
                ("LANG".to_owned(), DEFAULT_LOCALE.to_owned()),
            ],
            user_env: true,
            forbidden_env: Vec::new(),
            kill_on_host_death: true,
            containment: Containment::Auto,
        }
    }
}

/// How much the host holds: processes, captured output, waiting writers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The most processes running at once (default 1024); a start past it
    /// fails with `limit-exceeded`.
    pub max_processes: usize,
    /// The most bytes of captured output kept in memory per stream of each
    /// process (default 4 MiB), counting each line's text plus
    /// [`LINE_COST_BYTES`](super::LINE_COST_BYTES), and
    /// [`BLOCK_COST_BYTES`](super::BLOCK_COST_BYTES) per block of up to 256
    /// lines read together; past it the oldest lines are dropped and
    /// counted, unless the stream's spill file still has them.
    pub capture_bytes: usize,
    /// Where captured output spills to disk (default
    /// [`default_capture_dir`](super::default_capture_dir)); `None` keeps it
    /// in memory only. The host makes a directory of its own there (mode
    /// 0700), with one unnamed file per stream.
    pub capture_dir: Option<PathBuf>,
    /// The most bytes one stream's spill file holds (default 64 MiB; 0 does
    /// not spill); past it the oldest lines are dropped and counted, unless
    /// memory still has them.
    pub capture_disk_bytes: u64,
    /// The most bytes the spill files of every process hold together
    /// (default [`default_capture_disk_total_bytes`](super::default_capture_disk_total_bytes)
    /// of `capture_dir`). Past it the files of ended processes go first,
    /// then the oldest records of the largest files of running ones.
    pub capture_disk_total_bytes: u64,
    /// The most bytes of captured output kept in memory by every process
    /// together, counted as for `capture_bytes` (default an eighth of the
    /// machine's memory, at least 64 MiB and at most 1 GiB:
    /// [`default_capture_total_bytes`](super::default_capture_total_bytes)).
    /// Past it the output of ended processes is dropped first, oldest ended
    /// first, then the oldest lines of the largest streams of running ones;
    /// drops are counted as for `capture_bytes`.
    pub capture_total_bytes: usize,
    /// The longest line kept whole (default 64 KiB); longer lines are split
    /// into pieces of at most this many bytes.
    pub max_line_bytes: usize,
    /// How many ended processes stay visible to `get`, `list` and output
    /// reads (default 1024); past it the one that ended first is forgotten.
    pub max_retained_exited: usize,
    /// How long one stdin write may wait for the child to read (default 10 s).
    pub stdin_write_timeout: Duration,
}

impl Limits {
    /// The default of [`Limits::max_processes`].
    pub const DEFAULT_MAX_PROCESSES: usize = 1024;
    /// The default of [`Limits::capture_bytes`].
    pub const DEFAULT_CAPTURE_BYTES: usize = 4 << 20;
    /// The default of [`Limits::max_line_bytes`].
    pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 10;
    /// The default of [`Limits::max_retained_exited`].
    pub const DEFAULT_MAX_RETAINED_EXITED: usize = 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_processes: Limits::DEFAULT_MAX_PROCESSES,
            capture_bytes: Limits::DEFAULT_CAPTURE_BYTES,
            capture_dir: Some(super::disk::default_capture_dir()),
            capture_disk_bytes: 64 << 20,
            capture_disk_total_bytes: super::disk::default_capture_disk_total_bytes(&super::disk::default_capture_dir()),
            capture_total_bytes: super::memory::default_capture_total_bytes(),
            max_line_bytes: Limits::DEFAULT_MAX_LINE_BYTES,
            max_retained_exited: Limits::DEFAULT_MAX_RETAINED_EXITED,
            stdin_write_timeout: Duration::from_secs(10),
        }
    }
}

/// A request the policy accepted: what exactly to execute, where, and with
/// which environment.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The canonical path of the executable.
    pub program: PathBuf,
    /// The canonical working directory.
    pub dir: PathBuf,
    /// The child's whole environment.
    pub env: Vec<(String, String)>,
}

/// The policy with its paths canonicalized and its base environment
/// completed once, at table construction.
#[derive(Debug)]
pub(crate) struct CheckedPolicy {
    pub policy: Policy,
    allowed: Option<Vec<PathBuf>>,
    root: Option<PathBuf>,
    /// The user's variables (when `user_env`) with `base_env` over them.
    /// Every child runs as the server's user, so one lookup serves all; a
    /// child running as another user would need its own.
    base_env: Vec<(String, String)>,
}

/// Canonicalizes `path`, or keeps it as given when it can't be (a missing
/// entry then simply matches nothing).
fn canonical_or_same(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

impl CheckedPolicy {
    pub(crate) fn new(policy: Policy) -> Self {
        let allowed = policy.allowed_commands.as_ref().map(|list| list.iter().map(|p| canonical_or_same(p)).collect());
        let root = policy.working_dir_root.as_deref().map(canonical_or_same);
        let mut base_env = if policy.user_env { user_env_of(effective_uid()) } else { Vec::new() };
        for (name, value) in &policy.base_env {
            set_var(&mut base_env, name, value);
        }
        CheckedPolicy { policy, allowed, root, base_env }
    }

    /// Checks `req` against the policy and resolves it; nothing is spawned.
    pub(crate) fn prepare(&self, req: &StartRequest) -> Result<Prepared, ProcessError> {
        check_syntax(req)?;
        let env = self.environment(req)?;
        let dir = self.working_dir(req.working_dir.as_deref())?;
        let path = env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str());
        let program = resolve_command(&req.command, &dir, path)?;
        if let Some(allowed) = &self.allowed
            && !allowed.contains(&program)
        {
            return Err(ProcessError::Denied(format!(
                "command `{}` ({}) is not in the allowed commands",
                req.command,
                program.display()
            )));
        }
        Ok(Prepared { program, dir, env })
    }

    /// The base environment with the request's variables on top.
    fn environment(&self, req: &StartRequest) -> Result<Vec<(String, String)>, ProcessError> {
        let mut env = self.base_env.clone();
        for var in &req.env {
            if self.policy.forbidden_env.contains(&var.name) {
                return Err(ProcessError::Denied(format!("env `{}` is forbidden by policy", var.name)));
            }
            set_var(&mut env, &var.name, &var.value);
        }
        Ok(env)
    }

    /// The canonical working directory for `requested`, inside the root.
    fn working_dir(&self, requested: Option<&str>) -> Result<PathBuf, ProcessError> {
        let default = &self.policy.default_working_dir;
        let (shown, path) = match requested {
            None => (default.display().to_string(), default.clone()),
            Some(dir) => (dir.to_owned(), default.join(dir)), // join keeps an absolute `dir`
        };
        let failed = |reason: String| ProcessError::SpawnFailed(format!("working_dir `{shown}`: {reason}"));
        let dir = path.canonicalize().map_err(|e| failed(e.to_string()))?;
        if !dir.is_dir() {
            return Err(failed("Not a directory".to_owned()));
        }
        if let Some(root) = &self.root
            && !dir.starts_with(root)
        {
            return Err(ProcessError::Denied(format!(
                "working_dir `{shown}` ({}) is outside the allowed root {}",
                dir.display(),
                root.display()
            )));
        }
        Ok(dir)
    }
}

/// The rules the guest already enforces, checked again because a host
/// embedder may call the table directly: anything else would fail later
/// with a less clear error, or not at all.
fn check_syntax(req: &StartRequest) -> Result<(), ProcessError> {
    let invalid = |msg: String| Err(ProcessError::InvalidRequest(msg));
    if req.command.is_empty() {
        return invalid("command is empty".to_owned());
    }
    if req.command.contains('\0') || req.args.iter().any(|a| a.contains('\0')) {
        return invalid("command and args may not contain a NUL byte".to_owned());
    }
    if let Some(dir) = &req.working_dir
        && (dir.is_empty() || dir.contains('\0'))
    {
        return invalid("working_dir must be a non-empty path without NUL".to_owned());
    }
    for var in &req.env {
        if var.name.is_empty() || var.name.contains(['=', '\0']) || var.value.contains('\0') {
            return invalid(format!("env `{}`: a name is non-empty without `=` or NUL, a value has no NUL", var.name));
        }
    }
    Ok(())
}

/// True for a regular file with at least one execute bit.
fn is_executable_file(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds the executable `command` names, the way `execvp` would but with
/// the child's `PATH`, not the server's: a command with a `/` is a path
/// (relative to the working directory), anything else is looked up in each
/// absolute directory of `path` in order. Relative and empty `PATH` entries
/// (which mean the working directory to a shell) are skipped, so a request
/// can't run a file it just dropped into its own directory by a bare name.
/// Returns the canonical path.
pub(crate) fn resolve_command(command: &str, dir: &Path, path: Option<&str>) -> Result<PathBuf, ProcessError> {
    let failed = |reason: String| ProcessError::SpawnFailed(format!("command `{command}`: {reason}"));
    if command.contains('/') {
        let program = dir.join(command).canonicalize().map_err(|e| failed(e.to_string()))?;
        let meta = program.metadata().map_err(|e| failed(e.to_string()))?;
        if !meta.is_file() {
            return Err(failed("not a regular file".to_owned()));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(failed("Permission denied (not executable)".to_owned()));
        }
        return Ok(program);
    }
    let Some(path) = path else {
        return Err(ProcessError::SpawnFailed(format!(
            "command `{command}` not found: the child's environment has no PATH"
        )));
    };
    path.split(':')
        .map(Path::new)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(command))
        .find(|candidate| is_executable_file(candidate))
        .and_then(|candidate| candidate.canonicalize().ok())
        .ok_or_else(|| ProcessError::SpawnFailed(format!("command `{command}` not found on PATH ({path})")))
}

#[cfg(test)]
mod tests;
