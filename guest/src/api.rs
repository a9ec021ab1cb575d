//! The functions of the exported `api` interface, over any [`Capability`].
//!
//! Each takes what arrived, untrusted, and returns the reply the API
//! defines. The order is always: validate everything the guest can, then
//! call the capability, so that a bad request never reaches the host.

use crate::model::{
    Capability, OutputChunk, OutputSelector, Pid, ProcessInfo, ProcessStatus, Reply, StreamPosition, StreamStep,
};
use crate::prelude::*;
use crate::render::{self, ApiError};
use crate::request;
use crate::sse;

pub use crate::output::{OUTPUT_BATCH, output, output_next, output_open};
/// Lines asked for per read in one stream step: bounds a step's frames.
pub const STREAM_BATCH: u32 = 1024;
/// How long a run's last step waits for a process whose output is complete
/// but which the host has not reaped yet.
pub const EXIT_WAIT_MS: u32 = 1000;

/// `POST /processes`: 201 with the process-info.
pub fn start<C: Capability + ?Sized>(cap: &C, body: &[u8]) -> Reply {
    answer((|| {
        let request = request::parse_start(body)?;
        let info = cap.start(&request)?;
        Ok(json(201, render::process_info(&info)))
    })())
}

/// `GET /processes`: 200 with every process.
pub fn list<C: Capability + ?Sized>(cap: &C) -> Reply {
    json(200, render::process_list(&cap.list()))
}

/// `GET /processes/{ref}`: 200 with the process-info.
pub fn get<C: Capability + ?Sized>(cap: &C, process_ref: &str) -> Reply {
    answer((|| {
        let info = cap.get(request::parse_ref(process_ref)?)?;
        Ok(json(200, render::process_info(&info)))
    })())
}

/// `DELETE /processes/{ref}`: SIGKILL to the group, 204.
pub fn kill<C: Capability + ?Sized>(cap: &C, process_ref: &str) -> Reply {
    answer((|| {
        cap.kill(request::parse_ref(process_ref)?)?;
        Ok(no_content())
    })())
}

/// `POST /processes/{ref}/signal` with `{"signal": N}`: 200 `{"success":true}`.
pub fn signal<C: Capability + ?Sized>(cap: &C, process_ref: &str, body: &[u8]) -> Reply {
    answer((|| {
        let pid = request::parse_ref(process_ref)?;
        let signal = request::parse_signal(body)?;
        cap.signal(pid, signal)?;
        Ok(json(200, r#"{"success":true}"#.to_owned()))
    })())
}

/// `POST /processes/{ref}/stdin` with raw bytes: 204.
pub fn write_stdin<C: Capability + ?Sized>(cap: &C, process_ref: &str, data: &[u8]) -> Reply {
    answer((|| {
        cap.write_stdin(request::parse_ref(process_ref)?, data)?;
        Ok(no_content())
    })())
}

/// `POST /processes/{ref}/stdin/close`: 204.
pub fn close_stdin<C: Capability + ?Sized>(cap: &C, process_ref: &str) -> Reply {
    answer((|| {
        cap.close_stdin(request::parse_ref(process_ref)?)?;
        Ok(no_content())
    })())
}

/// `GET /health`: 200 `{"healthy":true}`; needs no capability call.
pub fn health() -> Reply {
    json(200, render::health())
}

/// `GET /info`: 200 with the host's counts and uptime.
pub fn info<C: Capability + ?Sized>(cap: &C) -> Reply {
    json(200, render::host_info(&cap.summary()))
}

/// Checks a start body without starting anything: the normalized request
/// JSON, or the error body JSON. Shared by `validate` and the validator
/// component so both judge a body the same way.
pub fn normalize(body: &[u8]) -> Result<String, String> {
    request::parse_start(body).map(|request| render::normalized(&request)).map_err(|error| error.body())
}

/// `validate`: 200 with the normalized request, or the error reply.
pub fn validate(body: &[u8]) -> Reply {
    answer(request::parse_start(body).map(|request| json(200, render::normalized(&request))))
}

/// Opens a follow stream after checking that the process exists, so that a
/// bad reference gets a plain error reply instead of an event stream.
pub fn follow_open<C: Capability + ?Sized>(
    cap: &C,
    process_ref: &str,
    selector: OutputSelector,
) -> Result<StreamPosition, Reply> {
    let opened = (|| {
        let pid = request::parse_ref(process_ref)?;
        cap.get(pid)?;
        Ok(StreamPosition { pid, selector, cursor: 0, deadline: None, timed_out: false, is_run: false })
    })();
    opened.map_err(|error: ApiError| error.reply())
}

/// `POST /processes/run`: validates, starts, and returns the start frame.
///
/// The deadline is counted from after the start, so the time the host took
/// to spawn is not charged to the command.
pub fn run_open<C: Capability + ?Sized>(cap: &C, body: &[u8]) -> Result<StreamStep, Reply> {
    let opened = (|| {
        let run = request::parse_run(body)?;
        let info = cap.start(&run.request)?;
        let deadline = run.timeout_ms.map(|ms| cap.now_ms().saturating_add(ms));
        Ok(StreamStep {
            frames: sse::run_start(&info),
            position: StreamPosition {
                pid: info.pid,
                selector: OutputSelector::Merged,
                cursor: 0,
                deadline,
                timed_out: false,
                is_run: true,
            },
            done: false,
        })
    })();
    opened.map_err(|error: ApiError| error.reply())
}

/// The next step of a follow or run stream, waiting up to `wait_ms` for
/// output (a run never waits past its deadline).
pub fn stream_next<C: Capability + ?Sized>(cap: &C, position: StreamPosition, wait_ms: u32) -> StreamStep {
    if position.is_run { run_step(cap, position, wait_ms) } else { follow_step(cap, position, wait_ms) }
}

fn follow_step<C: Capability + ?Sized>(cap: &C, mut position: StreamPosition, wait_ms: u32) -> StreamStep {
    let chunk = match read(cap, &position, wait_ms) {
        Ok(chunk) => chunk,
        Err(error) => return finished(sse::error_event(&error), position),
    };
    let mut frames = lines_frames(&position, &chunk, sse::output_event);
    position.cursor = chunk.next_cursor;
    if chunk.complete {
        frames.push_str(&sse::eof_event());
    }
    StreamStep { frames, position, done: chunk.complete }
}

fn run_step<C: Capability + ?Sized>(cap: &C, mut position: StreamPosition, mut wait_ms: u32) -> StreamStep {
    if let Some(deadline) = position.deadline
        && !position.timed_out
    {
        let now = cap.now_ms();
        if now >= deadline {
            match kill_if_running(cap, position.pid) {
                Ok(killed) => position.timed_out = killed,
                Err(error) => return finished(sse::run_error(&error), position),
            }
        } else {
            wait_ms = wait_ms.min(u32::try_from(deadline - now).unwrap_or(u32::MAX));
        }
    }
    let chunk = match read(cap, &position, wait_ms) {
        Ok(chunk) => chunk,
        Err(error) => return finished(sse::run_error(&error), position),
    };
    let mut frames = lines_frames(&position, &chunk, sse::run_output);
    position.cursor = chunk.next_cursor;
    if !chunk.complete {
        return StreamStep { frames, position, done: false };
    }
    let info = match final_state(cap, position.pid) {
        Ok(info) => info,
        Err(error) => {
            frames.push_str(&sse::run_error(&error));
            return finished(frames, position);
        }
    };
    let reason = match info.status {
        // Output complete yet not reaped: try again next step rather than
        // send an exit frame without an exit.
        ProcessStatus::Running => {
            return StreamStep { frames, position, done: false };
        }
        // Only our SIGKILL explains a signaled end after the deadline; a
        // process that exited by itself in the meantime is reported as such.
        ProcessStatus::Signaled if position.timed_out => "timed_out",
        ProcessStatus::Signaled => "signaled",
        ProcessStatus::Exited => "exited",
    };
    frames.push_str(&sse::run_exit(info.exit_code, info.signal, reason));
    finished(frames, position)
}

/// At the deadline: kills the group if the process still runs. True when
/// it did.
fn kill_if_running<C: Capability + ?Sized>(cap: &C, pid: Pid) -> Result<bool, ApiError> {
    if cap.get(pid)?.status != ProcessStatus::Running {
        return Ok(false);
    }
    cap.kill(pid)?;
    Ok(true)
}

fn final_state<C: Capability + ?Sized>(cap: &C, pid: Pid) -> Result<ProcessInfo, ApiError> {
    let info = cap.get(pid)?;
    if info.status == ProcessStatus::Running {
        return Ok(cap.wait(pid, EXIT_WAIT_MS)?);
    }
    Ok(info)
}

fn read<C: Capability + ?Sized>(cap: &C, position: &StreamPosition, wait_ms: u32) -> Result<OutputChunk, ApiError> {
    Ok(cap.read_output(position.pid, position.selector, position.cursor, STREAM_BATCH, wait_ms)?)
}

/// The frames of a chunk's lines, preceded by a comment when this reader
/// missed lines the host dropped.
fn lines_frames(
    position: &StreamPosition,
    chunk: &OutputChunk,
    frame: fn(&crate::model::OutputLine) -> String,
) -> String {
    let mut frames = String::new();
    let missed = missed_lines(position.cursor, chunk);
    if missed > 0 {
        frames.push_str(&sse::dropped_comment(missed));
    }
    for line in &chunk.lines {
        frames.push_str(&frame(line));
    }
    frames
}

/// Lines between `cursor` and the first line returned that the buffer
/// dropped before this reader got to them.
///
/// This relies on the cursor counting lines of the selection (cursor N:
/// N lines came before the next one), so that a read from N returning k
/// lines up to cursor M skipped M - N - k. Only a read that reports drops
/// is judged, so a host with another cursor scheme merely gets no comment
/// as long as it drops nothing.
pub fn missed_lines(cursor: u64, chunk: &OutputChunk) -> u64 {
    if chunk.dropped == 0 {
        return 0;
    }
    let returned = u64::try_from(chunk.lines.len()).unwrap_or(u64::MAX);
    chunk.next_cursor.saturating_sub(cursor).saturating_sub(returned)
}

fn finished(frames: String, position: StreamPosition) -> StreamStep {
    StreamStep { frames, position, done: true }
}

fn answer(result: Result<Reply, ApiError>) -> Reply {
    result.unwrap_or_else(|error| error.reply())
}

fn json(status: u16, body: String) -> Reply {
    Reply { status, body }
}

fn no_content() -> Reply {
    Reply { status: 204, body: String::new() }
}
