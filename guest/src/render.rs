//! The JSON bodies of the API, and the error every failure becomes.
//!
//! Bodies are serialized from borrowed, ordered structs: key order is not
//! part of the contract, but a fixed order keeps replies diffable and tests
//! exact. serde_json does the escaping (quotes, control characters, Unicode).

use crate::prelude::*;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::model::{
    EnvVar, HostSummary, OutputLine, OutputMode, OutputStream, Pid, ProcessError, ProcessInfo, ProcessStatus, Reply,
    StartRequest, StdinMode, StdinState,
};

/// A failed request as the API reports it: status, code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The machine-readable code, e.g. `INVALID_REQUEST`.
    pub code: &'static str,
    /// The human message; names the field at fault where there is one.
    pub message: String,
}

impl ApiError {
    /// A body or reference that breaks a rule of the API (400).
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self { status: 400, code: "INVALID_REQUEST", message: message.into() }
    }

    /// A signal number outside the range the API delivers (400).
    pub fn invalid_signal(message: impl Into<String>) -> Self {
        Self { status: 400, code: "INVALID_SIGNAL", message: message.into() }
    }

    /// The error body, `{"error":...,"code":...}`.
    pub fn body(&self) -> String {
        to_json(&ErrorJson { error: &self.message, code: self.code })
    }

    /// The complete error reply.
    pub fn reply(&self) -> Reply {
        Reply { status: self.status, body: self.body() }
    }
}

impl From<ProcessError> for ApiError {
    fn from(error: ProcessError) -> Self {
        let (status, code, message) = match error {
            ProcessError::InvalidRequest(m) => (400, "INVALID_REQUEST", m),
            ProcessError::NotFound(pid) => (404, "NOT_FOUND", format!("no process with pid {pid}")),
            ProcessError::SpawnFailed(reason) => {
                (400, "SPAWN_FAILED", format!("failed to start the command: {reason}"))
            }
            ProcessError::StdinNotWritable(pid, StdinState::NotAPipe) => (
                400,
                "STDIN_NOT_WRITABLE",
                format!("stdin of process {pid} is not a pipe: start it with \"stdin_mode\":\"pipe\" to write to it"),
            ),
            ProcessError::StdinNotWritable(pid, StdinState::Closed) => (
                400,
                "STDIN_NOT_WRITABLE",
                format!("stdin of process {pid} is closed (by a close request, by the process, or at its exit)"),
            ),
            ProcessError::NotRunning(pid) => (400, "NOT_RUNNING", format!("process {pid} is not running")),
            ProcessError::InvalidSignal(n) => {
                (400, "INVALID_SIGNAL", format!("signal {n} is not a signal the host delivers"))
            }
            ProcessError::Denied(m) => (403, "DENIED", format!("denied: {m}")),
            ProcessError::LimitExceeded(m) => (429, "LIMIT_EXCEEDED", format!("limit exceeded: {m}")),
            ProcessError::Internal(m) => (500, "INTERNAL", format!("internal error: {m}")),
        };
        Self { status, code, message }
    }
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    error: &'a str,
    code: &'a str,
}

#[derive(Serialize)]
struct InfoJson<'a> {
    pid: Pid,
    status: &'static str,
    stdin_writable: bool,
    command: &'a str,
    args: &'a [String],
    started_at: u64,
    exit_code: Option<i32>,
    signal: Option<i32>,
    ended_at: Option<u64>,
}

impl<'a> From<&'a ProcessInfo> for InfoJson<'a> {
    fn from(info: &'a ProcessInfo) -> Self {
        InfoJson {
            pid: info.pid,
            status: status_name(info.status),
            stdin_writable: info.stdin_writable,
            command: &info.command,
            args: &info.args,
            started_at: info.started_at,
            exit_code: info.exit_code,
            signal: info.signal,
            ended_at: info.ended_at,
        }
    }
}

/// The API's name of a status.
pub fn status_name(status: ProcessStatus) -> &'static str {
    match status {
        ProcessStatus::Running => "running",
        ProcessStatus::Exited => "exited",
        ProcessStatus::Signaled => "signaled",
    }
}

/// The API's name of a stream.
pub fn stream_name(stream: OutputStream) -> &'static str {
    match stream {
        OutputStream::Stdout => "stdout",
        OutputStream::Stderr => "stderr",
    }
}

/// The process-info object.
pub fn process_info(info: &ProcessInfo) -> String {
    to_json(&InfoJson::from(info))
}

/// `{"processes":[process-info, ...]}`.
pub fn process_list(infos: &[ProcessInfo]) -> String {
    #[derive(Serialize)]
    struct ListJson<'a> {
        processes: Vec<InfoJson<'a>>,
    }
    to_json(&ListJson { processes: infos.iter().map(InfoJson::from).collect() })
}

/// `{"pid":N,"lines":[...],"line_count":N}`, plus `dropped_lines` only when
/// the buffer lost lines, so the common reply stays exactly the documented one.
pub fn output_reply(pid: Pid, lines: &[String], dropped: u64) -> String {
    #[derive(Serialize)]
    struct OutputJson<'a> {
        pid: Pid,
        lines: &'a [String],
        line_count: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        dropped_lines: Option<u64>,
    }
    to_json(&OutputJson { pid, lines, line_count: lines.len(), dropped_lines: (dropped > 0).then_some(dropped) })
}

/// The start of a paged output reply, `{"pid":N,"lines":[`: the lines
/// follow ([`push_output_line`]), then [`output_tail`]. Together, the same
/// JSON as [`output_reply`].
pub fn output_head(pid: Pid) -> String {
    format!(r#"{{"pid":{pid},"lines":["#)
}

/// One line of a paged output reply, after a comma unless it is the first.
pub fn push_output_line(text: &mut String, line: &str, first: bool) {
    if !first {
        text.push(',');
    }
    text.push_str(&to_json(&line));
}

/// The end of a paged output reply.
pub fn output_tail(line_count: u64, dropped: u64) -> String {
    match dropped {
        0 => format!(r#"],"line_count":{line_count}}}"#),
        _ => format!(r#"],"line_count":{line_count},"dropped_lines":{dropped}}}"#),
    }
}

/// `{"line":...,"timestamp":...,"stream":...}`, the data of an output event.
pub fn output_line(line: &OutputLine) -> String {
    #[derive(Serialize)]
    struct LineJson<'a> {
        line: &'a str,
        timestamp: u64,
        stream: &'static str,
    }
    to_json(&LineJson { line: &line.line, timestamp: line.timestamp, stream: stream_name(line.stream) })
}

/// `{"pid":N,"started_at":MS}`, the first frame of a run.
pub fn run_started(info: &ProcessInfo) -> String {
    #[derive(Serialize)]
    struct StartedJson {
        pid: Pid,
        started_at: u64,
    }
    to_json(&StartedJson { pid: info.pid, started_at: info.started_at })
}

/// `{"exit_code":E,"signal":S,"reason":R}`, the last frame of a run.
pub fn run_exit(exit_code: Option<i32>, signal: Option<i32>, reason: &str) -> String {
    #[derive(Serialize)]
    struct ExitJson<'a> {
        exit_code: Option<i32>,
        signal: Option<i32>,
        reason: &'a str,
    }
    to_json(&ExitJson { exit_code, signal, reason })
}

/// `{"healthy":true}`.
pub fn health() -> String {
    r#"{"healthy":true}"#.to_owned()
}

/// The `/info` object.
pub fn host_info(summary: &HostSummary) -> String {
    #[derive(Serialize)]
    struct HostJson<'a> {
        version: &'a str,
        uptime_secs: u64,
        running_processes: u32,
        total_processes: u64,
    }
    to_json(&HostJson {
        version: &summary.version,
        uptime_secs: summary.uptime_secs,
        running_processes: summary.running_processes,
        total_processes: summary.total_processes,
    })
}

/// The normalized start request: every default written out, `env` as an
/// object in body order, `working_dir` null for the host's default.
pub fn normalized(request: &StartRequest) -> String {
    #[derive(Serialize)]
    struct RequestJson<'a> {
        command: &'a str,
        args: &'a [String],
        env: EnvJson<'a>,
        working_dir: Option<&'a str>,
        stdin_mode: &'static str,
        stdout_mode: &'static str,
        stderr_mode: &'static str,
    }
    to_json(&RequestJson {
        command: &request.command,
        args: &request.args,
        env: EnvJson(&request.env),
        working_dir: request.working_dir.as_deref(),
        stdin_mode: match request.stdin_mode {
            StdinMode::Closed => "closed",
            StdinMode::Pipe => "pipe",
        },
        stdout_mode: mode_name(request.stdout_mode),
        stderr_mode: mode_name(request.stderr_mode),
    })
}

fn mode_name(mode: OutputMode) -> &'static str {
    match mode {
        OutputMode::Capture => "capture",
        OutputMode::Discard => "discard",
    }
}

/// `env` as a JSON object that keeps the body's order (serde_json's `Map`
/// would sort it).
struct EnvJson<'a>(&'a [EnvVar]);

impl Serialize for EnvJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for var in self.0 {
            map.serialize_entry(&var.name, &var.value)?;
        }
        map.end()
    }
}

/// Serializes a body. The structs above have only string keys and plain
/// values, so this cannot fail; should it ever, the reply is still JSON.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        format!(
            r#"{{"error":{},"code":"INTERNAL"}}"#,
            serde_json::Value::String(format!("could not render the reply: {e}"))
        )
    })
}
