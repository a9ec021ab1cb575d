//! The command line's flags: the policy and limits shared by every
//! subcommand that runs processes.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use sandbox_process::capability::environment::{locale_is_available, set_var};
use sandbox_process::capability::{
    Containment, default_capture_dir, default_capture_disk_total_bytes, default_capture_total_bytes,
};
use sandbox_process::{GuestLimits, Limits, Policy};

/// Start and manage operating-system processes through a WebAssembly guest,
/// and serve the sandbox process HTTP API.
///
/// Every request is parsed, validated and answered by the sandboxed guest
/// component; this host only spawns, pipes, signals and reaps.
#[derive(Parser, Debug)]
#[command(name = "sandbox-process", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the sandbox process HTTP API (`/api/v1/...`).
    Serve(crate::cli::serve_args::ServeArgs),
    /// Run one start request and stream the child's output; exit with its
    /// exit code (128 + signal number when a signal ended it).
    ///
    /// REQUEST is the JSON body of `POST /api/v1/processes`, e.g.
    /// '{"command":"echo","args":["hi"]}'. With "stdin_mode":"pipe" this
    /// command's standard input is passed to the child. Exits 2 when the
    /// request is refused (the error is printed as JSON on stderr).
    Exec(ExecArgs),
    /// Check a start request without running it: print the normalized
    /// request (every default applied) as JSON and exit 0, or print the
    /// error as JSON and exit 2.
    Validate(ValidateArgs),
    /// Write the guest components this binary embeds into a directory, for
    /// other runtimes: `sandbox_process_guest.wasm` (Node through jco) and
    /// `sandbox_process_validator.wasm` (the plain `wasmtime` CLI).
    ExportWasm(crate::cli::export::ExportArgs),
}

/// The variable the server reads its token from (`serve --token`).
const TOKEN_VARIABLE: &str = "SANDBOX_PROCESS_TOKEN";

/// `sandbox-process exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The request: inline JSON, @FILE to read it from a file, or - for stdin.
    #[arg(value_name = "REQUEST")]
    pub request: String,
    /// Policy and limits.
    #[command(flatten)]
    pub host: HostArgs,
}

/// `sandbox-process validate`.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The request: inline JSON, @FILE to read it from a file, or - for stdin.
    #[arg(value_name = "REQUEST")]
    pub request: String,
    /// Guest limits (validation runs in the guest).
    #[command(flatten)]
    pub guest: GuestArgs,
}

/// What the processes may do, and how much they may take.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Policy and limits")]
pub struct HostArgs {
    /// Allow only this command (an absolute path, resolved through symlinks);
    /// repeat to allow several. Without it any command may run.
    #[arg(long = "allow-command", value_name = "PATH")]
    pub allow_commands: Vec<PathBuf>,
    /// Working directories must be inside DIR (checked after resolving `..`
    /// and symlinks).
    #[arg(long, value_name = "DIR")]
    pub working_dir_root: Option<PathBuf>,
    /// The working directory of requests that name none [default: the
    /// current directory].
    #[arg(long, value_name = "DIR")]
    pub default_working_dir: Option<PathBuf>,
    /// Add KEY=VALUE to the base environment of every child, or replace a
    /// default (e.g. HOME=/srv/home); repeatable. Requests may add to and
    /// override it. --help lists what a child gets by default.
    ///
    /// By default a child gets exactly: HOME, USER, LOGNAME and SHELL from
    /// the user database entry of the user it runs as (this program's), as
    /// git, pip, npm, cargo and shells need them; PATH, this program's own
    /// (/usr/local/bin:/usr/bin:/bin if it has none), to find commands; and
    /// LANG=C.UTF-8 (see --locale), so that text is UTF-8. A user without an
    /// entry gets HOME=/ and SHELL=/bin/sh, and no USER or LOGNAME. Nothing
    /// else of this program's environment (see --inherit-env), never its
    /// token, and no TERM: children have pipes, not a terminal.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// The children's locale: their LANG [default: C.UTF-8]. Overrides an
    /// inherited LANG; --env LANG=... overrides it. Other LC_* variables
    /// can be given with --env.
    #[arg(long, value_name = "LOCALE", value_parser = parse_locale)]
    pub locale: Option<String>,
    /// Add this program's own environment to the children's base, over the
    /// defaults (so its HOME, LANG... win) and under --locale and --env;
    /// never SANDBOX_PROCESS_TOKEN, nor a variable that holds the server's
    /// token, nor one that is not UTF-8 (these two are left out with a
    /// warning).
    #[arg(long)]
    pub inherit_env: bool,
    /// Refuse requests that set the environment variable NAME (e.g.
    /// LD_PRELOAD); repeatable.
    #[arg(long = "forbid-env", value_name = "NAME")]
    pub forbid_env: Vec<String>,
    /// The most processes running at once [default: 1024]. Each running
    /// process holds 4 file descriptors (stdin, stdout and stderr pipes, a
    /// pidfd): `serve` raises its open-file limit to the hard limit
    /// (`ulimit -Hn`) and refuses to start if N does not fit beside the
    /// connections and a reserve; without this flag it lowers the default
    /// to what fits, with a warning.
    #[arg(long, value_name = "N")]
    pub max_processes: Option<usize>,
    /// Captured bytes kept in memory per process and stream, counting each
    /// line's text plus 1 byte, and 64 bytes per block of up to 256 lines
    /// read from the pipe together; past it only the newest are kept in
    /// memory (older ones are read back from the spill file, or dropped and
    /// counted without one).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::DEFAULT_CAPTURE_BYTES)]
    pub capture_bytes: usize,
    /// Captured bytes kept in memory by all processes together, counted as
    /// for --capture-bytes; past it the output of ended processes goes
    /// first (the one that ended first first), then the oldest lines of the
    /// largest streams of running ones (dropped and counted unless their
    /// spill files have them) [default: 1/8 of the memory this server may
    /// use (MemTotal, or its cgroup's memory limit if lower), at least 64
    /// MiB, at most 1 GiB].
    #[arg(long, value_name = "BYTES")]
    pub capture_total_bytes: Option<usize>,
    /// Where captured output spills to disk: a directory of this server's
    /// own is made there (mode 0700, removed at exit), with one unnamed
    /// file per stream (mode 0600, gone when its process is forgotten)
    /// [default: /var/tmp if writable, else $TMPDIR or /tmp].
    #[arg(long, value_name = "DIR")]
    pub capture_dir: Option<PathBuf>,
    /// Bytes of each stream's output kept on disk; past it the oldest lines
    /// are dropped (and counted). 0 keeps output in memory only.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub capture_disk_bytes: u64,
    /// Bytes kept on disk by all processes' output together; past it the
    /// files of ended processes go first, then the oldest output of the
    /// largest files of running ones (dropped and counted) [default: a
    /// quarter of the space free on --capture-dir's filesystem at start, at
    /// most 16 GiB].
    #[arg(long, value_name = "BYTES")]
    pub capture_disk_total_bytes: Option<u64>,
    /// Longer output lines are split into pieces of this size.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::DEFAULT_MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
    /// Ended processes kept for inspection before the oldest are forgotten.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_MAX_RETAINED_EXITED)]
    pub max_retained_exited: usize,
    /// Do not give children a parent-death signal (by default a child is
    /// sent SIGKILL if this program dies, even by SIGKILL).
    #[arg(long)]
    pub no_kill_on_exit: bool,
    /// How a kill (and shutdown) reaches everything a process started:
    /// `auto` uses a cgroup v2 per process where the machine allows it (so
    /// even descendants that called setsid end) and process groups
    /// otherwise; `cgroup` refuses to start processes without one;
    /// `process-group` never uses cgroups.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse_containment())]
    pub containment: Containment,
    /// Guest limits.
    #[command(flatten)]
    pub guest: GuestArgs,
}

/// What one guest call may use.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Guest limits")]
pub struct GuestArgs {
    /// The most linear memory one guest instance may use, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = GuestLimits::default().memory_bytes >> 20)]
    pub guest_memory_mib: usize,
    /// The time one guest call may run, in milliseconds; past it the call
    /// fails (500) and the server goes on. Waits in the capability (a slow
    /// spawn, a stdin write the child is slow to read) don't count.
    #[arg(long, value_name = "MS", default_value_t = GuestLimits::default().call_budget.as_millis() as u64)]
    pub guest_call_ms: u64,
    /// Do not cache the compiled guest (compile it at every start).
    #[arg(long)]
    pub no_cache: bool,
}

impl HostArgs {
    /// The policy and limits these flags describe. `secret` is the server's
    /// token, if any: no variable holding it may reach a child.
    pub fn policy_and_limits(&self, secret: Option<&str>) -> Result<(Policy, Limits)> {
        let mut policy = Policy::default();
        if !self.allow_commands.is_empty() {
            let mut allowed = Vec::new();
            for path in &self.allow_commands {
                if !path.is_absolute() {
                    bail!("--allow-command {}: give an absolute path", path.display());
                }
                allowed.push(path.canonicalize().with_context(|| format!("--allow-command {}", path.display()))?);
            }
            policy.allowed_commands = Some(allowed);
        }
        if let Some(root) = &self.working_dir_root {
            policy.working_dir_root =
                Some(root.canonicalize().with_context(|| format!("--working-dir-root {}", root.display()))?);
        }
        if let Some(dir) = &self.default_working_dir {
            policy.default_working_dir =
                dir.canonicalize().with_context(|| format!("--default-working-dir {}", dir.display()))?;
        } else if let Some(root) = &policy.working_dir_root {
            policy.default_working_dir = root.clone();
        }
        policy.base_env = self.base_env(std::mem::take(&mut policy.base_env), std::env::vars_os(), secret)?;
        policy.forbidden_env = self.forbid_env.clone();
        policy.kill_on_host_death = !self.no_kill_on_exit;
        policy.containment = self.containment;
        let capture_dir = match &self.capture_dir {
            Some(dir) if !dir.is_dir() => bail!("--capture-dir {}: not a directory", dir.display()),
            Some(dir) => dir.canonicalize().with_context(|| format!("--capture-dir {}", dir.display()))?,
            None => default_capture_dir(),
        };
        let limits = Limits {
            max_processes: self.max_processes.unwrap_or(Limits::DEFAULT_MAX_PROCESSES),
            capture_bytes: self.capture_bytes,
            capture_total_bytes: self.capture_total_bytes.unwrap_or_else(default_capture_total_bytes),
            capture_disk_bytes: self.capture_disk_bytes,
            capture_disk_total_bytes: self
                .capture_disk_total_bytes
                .unwrap_or_else(|| default_capture_disk_total_bytes(&capture_dir)),
            capture_dir: Some(capture_dir),
            max_line_bytes: self.max_line_bytes,
            max_retained_exited: self.max_retained_exited,
            ..Limits::default()
        };
        if limits.max_processes == 0
            || limits.capture_bytes == 0
            || limits.capture_total_bytes == 0
            || limits.max_line_bytes == 0
        {
            bail!("--max-processes, --capture-bytes, --capture-total-bytes and --max-line-bytes must be positive");
        }
        Ok((policy, limits))
    }

    /// The children's base environment: `defaults`, then (with
    /// --inherit-env) `server_env`, this program's own, then --locale, then
    /// --env. A variable whose value holds `secret` never gets in: an
    /// inherited one is left out (and logged), one given by --env is an
    /// error, since the operator asked for it.
    fn base_env(
        &self,
        defaults: Vec<(String, String)>,
        server_env: impl IntoIterator<Item = (OsString, OsString)>,
        secret: Option<&str>,
    ) -> Result<Vec<(String, String)>> {
        let holds_secret = |value: &str| secret.is_some_and(|s| !s.is_empty() && value.contains(s));
        let mut env = defaults;
        if self.inherit_env {
            for (name, value) in server_env {
                let (name, value) = match (name.into_string(), value.into_string()) {
                    (Ok(name), Ok(value)) => (name, value),
                    (name, _) => {
                        let name = name.unwrap_or_else(|raw| raw.to_string_lossy().into_owned());
                        tracing::warn!(name = %name, "--inherit-env: left out a variable that is not UTF-8");
                        continue;
                    }
                };
                // Documented, so not worth a log line at every start.
                if name == TOKEN_VARIABLE {
                    continue;
                }
                if holds_secret(&value) {
                    tracing::warn!(name = %name, "--inherit-env: left out a variable that holds the server's token");
                    continue;
                }
                set_var(&mut env, &name, &value);
            }
        }
        if let Some(locale) = &self.locale {
            set_var(&mut env, "LANG", locale);
        }
        for (key, value) in &self.env {
            if holds_secret(value) {
                bail!("--env {key}: the value holds the server's token, which children must never see");
            }
            set_var(&mut env, key, value);
        }
        if let Some((_, lang)) = env.iter().find(|(k, _)| k == "LANG")
            && !locale_is_available(lang)
        {
            tracing::warn!(
                LANG = %lang,
                "this machine's C library does not know the children's locale: their programs will fall back to \
                 the C locale, where text is bytes, not UTF-8 characters"
            );
        }
        Ok(env)
    }
}

impl GuestArgs {
    /// The guest limits these flags describe.
    pub fn guest_limits(&self) -> GuestLimits {
        let mut limits = GuestLimits {
            memory_bytes: self.guest_memory_mib.saturating_mul(1 << 20).max(1 << 20),
            call_budget: Duration::from_millis(self.guest_call_ms.max(1)),
            ..GuestLimits::default()
        };
        if self.no_cache {
            limits.cache_dir = None;
        }
        limits
    }
}

fn parse_containment() -> impl clap::builder::TypedValueParser<Value = Containment> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(["auto", "cgroup", "process-group"]).map(|s| match s.as_str() {
        "cgroup" => Containment::Cgroup,
        "process-group" => Containment::ProcessGroup,
        _ => Containment::Auto,
    })
}

fn parse_locale(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(['\0', '=']) {
        return Err(format!("`{s}` is not a locale name (e.g. C.UTF-8, en_US.UTF-8)"));
    }
    Ok(s.to_owned())
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE with a non-empty KEY")),
    }
}

/// Reads a request argument: inline JSON, `@FILE`, or `-` for stdin.
pub fn read_request(arg: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    if arg == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("reading the request from stdin")?;
        Ok(buf)
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read(path).with_context(|| format!("reading the request from {path}"))
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests;
