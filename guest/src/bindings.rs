//! The wit-bindgen layer: converts between generated and plain types and
//! exports `api` by calling [`crate::api`]. It decides nothing itself.

use crate::prelude::*;
wit_bindgen::generate!({
    path: "../wit",
    world: "guest",
});

use exports::sandbox::process::api as wit_api;
use sandbox::process::process as host;
use sandbox::process::types as wit;

use crate::api;
use crate::model::{self as plain, Capability, Pid};

/// The imported capability, seen through the plain [`Capability`] trait.
struct Imported;

impl Capability for Imported {
    fn start(&self, request: &plain::StartRequest) -> Result<plain::ProcessInfo, plain::ProcessError> {
        let request = wit::StartRequest {
            command: request.command.clone(),
            args: request.args.clone(),
            env: request
                .env
                .iter()
                .map(|var| wit::EnvVar { name: var.name.clone(), value: var.value.clone() })
                .collect(),
            working_dir: request.working_dir.clone(),
            stdin_mode: match request.stdin_mode {
                plain::StdinMode::Closed => wit::StdinMode::Closed,
                plain::StdinMode::Pipe => wit::StdinMode::Pipe,
            },
            stdout_mode: output_mode(request.stdout_mode),
            stderr_mode: output_mode(request.stderr_mode),
        };
        host::start(&request).map(info).map_err(error)
    }

    fn get(&self, pid: Pid) -> Result<plain::ProcessInfo, plain::ProcessError> {
        host::get(pid).map(info).map_err(error)
    }

    fn list(&self) -> Vec<plain::ProcessInfo> {
        host::list().into_iter().map(info).collect()
    }

    fn signal(&self, pid: Pid, signal: i32) -> Result<(), plain::ProcessError> {
        host::signal(pid, signal).map_err(error)
    }

    fn kill(&self, pid: Pid) -> Result<(), plain::ProcessError> {
        host::kill(pid).map_err(error)
    }

    fn write_stdin(&self, pid: Pid, data: &[u8]) -> Result<(), plain::ProcessError> {
        host::write_stdin(pid, data).map_err(error)
    }

    fn close_stdin(&self, pid: Pid) -> Result<(), plain::ProcessError> {
        host::close_stdin(pid).map_err(error)
    }

    fn read_output(
        &self,
        pid: Pid,
        selector: plain::OutputSelector,
        cursor: u64,
        max_lines: u32,
        wait_ms: u32,
    ) -> Result<plain::OutputChunk, plain::ProcessError> {
        let chunk = host::read_output(pid, to_selector(selector), cursor, max_lines, wait_ms).map_err(error)?;
        Ok(plain::OutputChunk {
            lines: chunk
                .lines
                .into_iter()
                .map(|line| plain::OutputLine {
                    stream: match line.stream {
                        wit::OutputStream::Stdout => plain::OutputStream::Stdout,
                        wit::OutputStream::Stderr => plain::OutputStream::Stderr,
                    },
                    line: line.line,
                    timestamp: line.timestamp,
                })
                .collect(),
            next_cursor: chunk.next_cursor,
            dropped: chunk.dropped,
            more: chunk.more,
            complete: chunk.complete,
        })
    }

    fn wait(&self, pid: Pid, timeout_ms: u32) -> Result<plain::ProcessInfo, plain::ProcessError> {
        host::wait(pid, timeout_ms).map(info).map_err(error)
    }

    fn summary(&self) -> plain::HostSummary {
        let summary = host::summary();
        plain::HostSummary {
            version: summary.version,
            uptime_secs: summary.uptime_secs,
            running_processes: summary.running_processes,
            total_processes: summary.total_processes,
        }
    }

    fn now_ms(&self) -> u64 {
        host::now_ms()
    }
}

fn output_mode(mode: plain::OutputMode) -> wit::OutputMode {
    match mode {
        plain::OutputMode::Capture => wit::OutputMode::Capture,
        plain::OutputMode::Discard => wit::OutputMode::Discard,
    }
}

fn to_selector(selector: plain::OutputSelector) -> wit::OutputSelector {
    match selector {
        plain::OutputSelector::Stdout => wit::OutputSelector::Stdout,
        plain::OutputSelector::Stderr => wit::OutputSelector::Stderr,
        plain::OutputSelector::Merged => wit::OutputSelector::Merged,
    }
}

fn from_selector(selector: wit::OutputSelector) -> plain::OutputSelector {
    match selector {
        wit::OutputSelector::Stdout => plain::OutputSelector::Stdout,
        wit::OutputSelector::Stderr => plain::OutputSelector::Stderr,
        wit::OutputSelector::Merged => plain::OutputSelector::Merged,
    }
}

fn info(info: wit::ProcessInfo) -> plain::ProcessInfo {
    plain::ProcessInfo {
        pid: info.pid,
        status: match info.status {
            wit::ProcessStatus::Running => plain::ProcessStatus::Running,
            wit::ProcessStatus::Exited => plain::ProcessStatus::Exited,
            wit::ProcessStatus::Signaled => plain::ProcessStatus::Signaled,
        },
        stdin_writable: info.stdin_writable,
        command: info.command,
        args: info.args,
        started_at: info.started_at,
        exit_code: info.exit_code,
        signal: info.signal,
        ended_at: info.ended_at,
    }
}

fn error(error: wit::ProcessError) -> plain::ProcessError {
    use plain::ProcessError as P;
    use wit::ProcessError as W;
    match error {
        W::InvalidRequest(m) => P::InvalidRequest(m),
        W::NotFound(pid) => P::NotFound(pid),
        W::SpawnFailed(m) => P::SpawnFailed(m),
        W::StdinNotWritable(refusal) => P::StdinNotWritable(
            refusal.pid,
            match refusal.state {
                wit::StdinState::NotAPipe => plain::StdinState::NotAPipe,
                wit::StdinState::Closed => plain::StdinState::Closed,
            },
        ),
        W::NotRunning(pid) => P::NotRunning(pid),
        W::InvalidSignal(n) => P::InvalidSignal(n),
        W::Denied(m) => P::Denied(m),
        W::LimitExceeded(m) => P::LimitExceeded(m),
        W::Internal(m) => P::Internal(m),
    }
}

fn reply(reply: plain::Reply) -> wit_api::Reply {
    wit_api::Reply { status: reply.status, body: reply.body }
}

fn to_position(position: plain::StreamPosition) -> wit_api::StreamPosition {
    wit_api::StreamPosition {
        pid: position.pid,
        selector: to_selector(position.selector),
        cursor: position.cursor,
        deadline: position.deadline,
        timed_out: position.timed_out,
        is_run: position.is_run,
    }
}

fn from_position(position: wit_api::StreamPosition) -> plain::StreamPosition {
    plain::StreamPosition {
        pid: position.pid,
        selector: from_selector(position.selector),
        cursor: position.cursor,
        deadline: position.deadline,
        timed_out: position.timed_out,
        is_run: position.is_run,
    }
}

fn to_output_position(position: plain::OutputPosition) -> wit_api::OutputPosition {
    wit_api::OutputPosition {
        pid: position.pid,
        selector: to_selector(position.selector),
        cursor: position.cursor,
        lines: position.lines,
        dropped: position.dropped,
    }
}

fn from_output_position(position: wit_api::OutputPosition) -> plain::OutputPosition {
    plain::OutputPosition {
        pid: position.pid,
        selector: from_selector(position.selector),
        cursor: position.cursor,
        lines: position.lines,
        dropped: position.dropped,
    }
}

fn page(page: plain::OutputPage) -> wit_api::OutputPage {
    wit_api::OutputPage { text: page.text, position: to_output_position(page.position), done: page.done }
}

fn step(step: plain::StreamStep) -> wit_api::StreamStep {
    wit_api::StreamStep { frames: step.frames, position: to_position(step.position), done: step.done }
}

/// The exported `api` interface.
struct Component;

impl wit_api::Guest for Component {
    fn start(body: Vec<u8>) -> wit_api::Reply {
        #[cfg(feature = "fault-injection")]
        crate::fault::inject(&body);
        reply(api::start(&Imported, &body))
    }

    fn list() -> wit_api::Reply {
        reply(api::list(&Imported))
    }

    fn get(process_ref: String) -> wit_api::Reply {
        reply(api::get(&Imported, &process_ref))
    }

    fn kill(process_ref: String) -> wit_api::Reply {
        reply(api::kill(&Imported, &process_ref))
    }

    fn signal(process_ref: String, body: Vec<u8>) -> wit_api::Reply {
        reply(api::signal(&Imported, &process_ref, &body))
    }

    fn write_stdin(process_ref: String, data: Vec<u8>) -> wit_api::Reply {
        reply(api::write_stdin(&Imported, &process_ref, &data))
    }

    fn close_stdin(process_ref: String) -> wit_api::Reply {
        reply(api::close_stdin(&Imported, &process_ref))
    }

    fn output(process_ref: String, selector: wit::OutputSelector) -> wit_api::Reply {
        reply(api::output(&Imported, &process_ref, from_selector(selector)))
    }

    fn output_open(process_ref: String, selector: wit::OutputSelector) -> Result<wit_api::OutputPage, wit_api::Reply> {
        api::output_open(&Imported, &process_ref, from_selector(selector)).map(page).map_err(reply)
    }

    fn output_next(position: wit_api::OutputPosition) -> wit_api::OutputPage {
        page(api::output_next(&Imported, from_output_position(position)))
    }

    fn health() -> wit_api::Reply {
        reply(api::health())
    }

    fn info() -> wit_api::Reply {
        reply(api::info(&Imported))
    }

    fn validate(body: Vec<u8>) -> wit_api::Reply {
        reply(api::validate(&body))
    }

    fn follow_open(
        process_ref: String,
        selector: wit::OutputSelector,
    ) -> Result<wit_api::StreamPosition, wit_api::Reply> {
        api::follow_open(&Imported, &process_ref, from_selector(selector)).map(to_position).map_err(reply)
    }

    fn run_open(body: Vec<u8>) -> Result<wit_api::StreamStep, wit_api::Reply> {
        #[cfg(feature = "fault-injection")]
        crate::fault::inject(&body);
        api::run_open(&Imported, &body).map(step).map_err(reply)
    }

    fn stream_next(position: wit_api::StreamPosition, wait_ms: u32) -> wit_api::StreamStep {
        step(api::stream_next(&Imported, from_position(position), wait_ms))
    }
}

export!(Component);
