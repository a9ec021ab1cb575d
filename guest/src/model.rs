//! Plain Rust mirrors of the WIT types (`wit/types.wit`), the capability as
//! a trait, and the API's reply and stream records (`wit/api.wit`).
//!
//! Nothing here depends on generated bindings, so all deciding logic can be
//! tested natively against a fake [`Capability`].

use crate::prelude::*;
/// A process id; also the key the API addresses a process by.
pub type Pid = u32;

/// What the child's standard input is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinMode {
    /// `/dev/null`.
    Closed,
    /// A pipe written with `write-stdin`, ended with `close-stdin`.
    Pipe,
}

/// What becomes of one of the child's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Kept line by line in the host's bounded buffer.
    Capture,
    /// Sent to `/dev/null`.
    Discard,
}

/// One environment variable given to the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// Non-empty, no `=`, no NUL.
    pub name: String,
    /// No NUL.
    pub value: String,
}

/// A validated start request, every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRequest {
    /// The program.
    pub command: String,
    /// The arguments after the program name.
    pub args: Vec<String>,
    /// Variables added to the host's base environment, in body order.
    pub env: Vec<EnvVar>,
    /// The directory to start in; `None` is the host's default.
    pub working_dir: Option<String>,
    /// Where stdin comes from.
    pub stdin_mode: StdinMode,
    /// What happens to stdout.
    pub stdout_mode: OutputMode,
    /// What happens to stderr.
    pub stderr_mode: OutputMode,
}

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessStatus {
    /// Started and not yet reaped.
    Running,
    /// Ended normally; `exit_code` is set.
    Exited,
    /// Ended by a signal; `signal` is set.
    Signaled,
}

/// The process-info object of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The process id.
    pub pid: Pid,
    /// Running, exited or signaled.
    pub status: ProcessStatus,
    /// True while stdin is an open pipe.
    pub stdin_writable: bool,
    /// The command as requested.
    pub command: String,
    /// The arguments as requested.
    pub args: Vec<String>,
    /// Start time, ms since the epoch.
    pub started_at: u64,
    /// Set once exited.
    pub exit_code: Option<i32>,
    /// Set once signaled.
    pub signal: Option<i32>,
    /// Set once not running, ms since the epoch.
    pub ended_at: Option<u64>,
}

/// One of the child's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Which captured output a read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputSelector {
    /// Standard output only.
    Stdout,
    /// Standard error only.
    Stderr,
    /// Both, in the order the host read them.
    Merged,
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// The stream it was written to.
    pub stream: OutputStream,
    /// The text without its trailing newline.
    pub line: String,
    /// When the host read it, ms since the epoch.
    pub timestamp: u64,
}

/// The answer to one read of captured output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// Lines after the cursor, oldest first.
    pub lines: Vec<OutputLine>,
    /// The cursor for the next read.
    pub next_cursor: u64,
    /// Lines of the selection dropped so far because the buffer was full.
    pub dropped: u64,
    /// Lines after these were captured already (a host may return fewer
    /// than asked for, to bound one answer).
    pub more: bool,
    /// The process ended and every line has been returned.
    pub complete: bool,
}

/// Counts and uptime of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSummary {
    /// The host's version.
    pub version: String,
    /// Seconds since the host started.
    pub uptime_secs: u64,
    /// Processes running now.
    pub running_processes: u32,
    /// Processes started since the host started.
    pub total_processes: u64,
}

/// Why a process's stdin can't be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinState {
    /// Started with `stdin_mode` `closed`: there never was a pipe.
    NotAPipe,
    /// The pipe was closed (by a close, by the child, or at its exit).
    Closed,
}

/// Why the capability refused or failed a call; each case is one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessError {
    /// A rule of the API is broken (400).
    InvalidRequest(String),
    /// No such pid (404).
    NotFound(Pid),
    /// The OS could not start the command; the OS reason (400).
    SpawnFailed(String),
    /// Stdin can't be written: never a pipe, or closed (400).
    StdinNotWritable(Pid, StdinState),
    /// The process has already ended (400).
    NotRunning(Pid),
    /// Not a signal number the host delivers (400).
    InvalidSignal(i32),
    /// The host's policy forbids it (403).
    Denied(String),
    /// A limit of the host was reached (429).
    LimitExceeded(String),
    /// The host failed (500).
    Internal(String),
}

/// The `process` interface the guest imports, one method per WIT function.
///
/// The component implements it over the generated imports; tests implement
/// it in memory. Methods take `&self` because the real capability is a set
/// of free functions with no guest-side state.
pub trait Capability {
    /// Starts a process.
    fn start(&self, request: &StartRequest) -> Result<ProcessInfo, ProcessError>;
    /// The current state of one process; never waits.
    fn get(&self, pid: Pid) -> Result<ProcessInfo, ProcessError>;
    /// Every process, in start order; never waits.
    fn list(&self) -> Vec<ProcessInfo>;
    /// Sends `signal` to the process group.
    fn signal(&self, pid: Pid, signal: i32) -> Result<(), ProcessError>;
    /// Sends SIGKILL to the process group; a no-op once it has ended.
    fn kill(&self, pid: Pid) -> Result<(), ProcessError>;
    /// Writes all of `data` to the stdin pipe.
    fn write_stdin(&self, pid: Pid, data: &[u8]) -> Result<(), ProcessError>;
    /// Closes the stdin pipe.
    fn close_stdin(&self, pid: Pid) -> Result<(), ProcessError>;
    /// Reads up to `max_lines` lines after `cursor`, waiting up to `wait_ms`
    /// for one when there is none and the output is not complete.
    fn read_output(
        &self,
        pid: Pid,
        selector: OutputSelector,
        cursor: u64,
        max_lines: u32,
        wait_ms: u32,
    ) -> Result<OutputChunk, ProcessError>;
    /// Waits up to `timeout_ms` for the process to end; returns its state.
    fn wait(&self, pid: Pid, timeout_ms: u32) -> Result<ProcessInfo, ProcessError>;
    /// Counts and uptime, for `/info`.
    fn summary(&self) -> HostSummary;
    /// The host's wall clock, ms since the epoch.
    fn now_ms(&self) -> u64;
}

/// A complete reply: HTTP status and JSON body (empty for 204).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status the API defines for this outcome.
    pub status: u16,
    /// The JSON body, or the empty string.
    pub body: String,
}

/// What a stream remembers between steps; the host hands it back unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPosition {
    /// The process the stream is about.
    pub pid: Pid,
    /// The output it follows.
    pub selector: OutputSelector,
    /// The read cursor in the captured output.
    pub cursor: u64,
    /// For a run: when (ms since the epoch) the group is killed.
    pub deadline: Option<u64>,
    /// For a run: the deadline passed and the group was killed.
    pub timed_out: bool,
    /// A run stream (data-only frames, exit frame) rather than a follow.
    pub is_run: bool,
}

/// Where a paged output reply is; the host hands it back unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPosition {
    /// The process whose output it is.
    pub pid: Pid,
    /// The output it is.
    pub selector: OutputSelector,
    /// The read cursor in the captured output.
    pub cursor: u64,
    /// Lines in the pages so far.
    pub lines: u64,
    /// Lines dropped, as the last read said.
    pub dropped: u64,
}

/// One page of a paged output reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPage {
    /// The next piece of the JSON body.
    pub text: String,
    /// Pass to the next page.
    pub position: OutputPosition,
    /// The body is complete with `text`.
    pub done: bool,
}

/// One step of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStep {
    /// Zero or more complete SSE frames.
    pub frames: String,
    /// Pass to the next step.
    pub position: StreamPosition,
    /// The stream is over: send `frames`, then end the body.
    pub done: bool,
}
