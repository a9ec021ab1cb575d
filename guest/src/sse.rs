//! Server-sent-event frame text.
//!
//! Every `data:` line carries one JSON object rendered by serde_json, which
//! escapes newlines, so a captured line can never break a frame apart.
//! Follow streams use named events; run streams use bare `data:` frames,
//! because that is what the official client parses for each.

use crate::model::{OutputLine, ProcessInfo};
use crate::prelude::*;
use crate::render::{self, ApiError};

/// `event: output` with the line, its timestamp and its stream.
pub fn output_event(line: &OutputLine) -> String {
    format!("event: output\ndata: {}\n\n", render::output_line(line))
}

/// `event: eof`: the process ended and its output is drained.
pub fn eof_event() -> String {
    "event: eof\ndata: {}\n\n".to_owned()
}

/// `event: error`: the stream cannot go on.
pub fn error_event(error: &ApiError) -> String {
    format!("event: error\ndata: {}\n\n", error.body())
}

/// A comment line saying this reader missed `count` lines that the host's
/// buffer dropped before they were read.
///
/// It ends with a single newline, not a blank line, so it joins the next
/// frame's block: SSE parsers skip comment lines, and no parser sees an
/// event with empty data that it might try to read as JSON.
pub fn dropped_comment(count: u64) -> String {
    format!(": dropped {count} lines\n")
}

/// A run's first frame: pid and start time.
pub fn run_start(info: &ProcessInfo) -> String {
    data(&render::run_started(info))
}

/// A run's output frame.
pub fn run_output(line: &OutputLine) -> String {
    data(&render::output_line(line))
}

/// A run's exit frame; `reason` is `exited`, `signaled` or `timed_out`.
pub fn run_exit(exit_code: Option<i32>, signal: Option<i32>, reason: &str) -> String {
    data(&render::run_exit(exit_code, signal, reason))
}

/// A run that ends without an exit frame: the error says why.
pub fn run_error(error: &ApiError) -> String {
    data(&error.body())
}

fn data(json: &str) -> String {
    format!("data: {json}\n\n")
}
