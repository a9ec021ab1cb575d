//! The invariants of the guest's parsing and validation, under arbitrary
//! input: start, run and signal bodies, and process references.
//!
//! - [`check_body`] takes the bytes as they are (not JSON, invalid UTF-8,
//!   anything); [`check_json`] first builds a JSON body from them, with the
//!   API's field names and hostile values, so that the checks reach the
//!   validation of every field rather than stopping at the JSON syntax.
//! - For every body: parsing never panics; an accepted start request obeys
//!   every rule the guest promises the host (non-empty command, no NUL,
//!   the length and count limits, env names without `=`, unique names);
//!   the normalized form of an accepted request is accepted again as the
//!   same request and normalizes to itself; a refused one gets a 400 whose
//!   body is exactly `{"error": .., "code": ..}`; `validate` and
//!   `normalize` agree with `parse_start`.
//! - A refused request never reaches the capability; an accepted one
//!   reaches it once, as parsed (`api::start`, `api::run_open`,
//!   `api::signal`, `api::get`).
//! - A run's timeout is positive and at most a day; a signal is 1 to 64; a
//!   reference is accepted only as the canonical decimal of a positive
//!   `i32`.
//!
//! Compiled in two places: the `guest_body` and `guest_json` fuzz
//! targets, and the guest's tests (`guest/tests/fuzz_invariants.rs`, over a
//! fixed seeded corpus), which include this file by path.

use std::cell::RefCell;

use sandbox_process_guest::api;
use sandbox_process_guest::model::{
    Capability, HostSummary, OutputChunk, OutputSelector, Pid, ProcessError, ProcessInfo, ProcessStatus, StartRequest,
};
use sandbox_process_guest::render::ApiError;
use sandbox_process_guest::request::{self, MAX_ARG_BYTES, MAX_ARGS, MAX_ENV, MAX_PATH_BYTES, MAX_TIMEOUT_SECS};

use super::source::Source;

/// Checks every parser on `body` as it is.
pub fn check_body(body: &[u8]) {
    check_start(body);
    check_run(body);
    check_signal(body);
    check_ref(body);
}

/// Builds a JSON body from `data` and checks every parser on it.
pub fn check_json(data: &[u8]) {
    let body = json_body(&mut Source::new(data));
    check_body(&body);
}

/// A capability that records what reached it and answers harmlessly.
#[derive(Default)]
struct Recorder {
    starts: RefCell<Vec<StartRequest>>,
    signals: RefCell<Vec<(Pid, i32)>>,
    others: RefCell<Vec<&'static str>>,
}

impl Recorder {
    fn info(&self, pid: Pid) -> ProcessInfo {
        ProcessInfo {
            pid,
            status: ProcessStatus::Running,
            stdin_writable: false,
            command: String::new(),
            args: Vec::new(),
            started_at: 0,
            exit_code: None,
            signal: None,
            ended_at: None,
        }
    }

    fn other(&self, what: &'static str) {
        self.others.borrow_mut().push(what);
    }
}

impl Capability for Recorder {
    fn start(&self, request: &StartRequest) -> Result<ProcessInfo, ProcessError> {
        self.starts.borrow_mut().push(request.clone());
        Ok(self.info(7))
    }
    fn get(&self, pid: Pid) -> Result<ProcessInfo, ProcessError> {
        self.other("get");
        Ok(self.info(pid))
    }
    fn list(&self) -> Vec<ProcessInfo> {
        self.other("list");
        Vec::new()
    }
    fn signal(&self, pid: Pid, signal: i32) -> Result<(), ProcessError> {
        self.signals.borrow_mut().push((pid, signal));
        Ok(())
    }
    fn kill(&self, _: Pid) -> Result<(), ProcessError> {
        self.other("kill");
        Ok(())
    }
    fn write_stdin(&self, _: Pid, _: &[u8]) -> Result<(), ProcessError> {
        self.other("write_stdin");
        Ok(())
    }
    fn close_stdin(&self, _: Pid) -> Result<(), ProcessError> {
        self.other("close_stdin");
        Ok(())
    }
    fn read_output(&self, _: Pid, _: OutputSelector, cursor: u64, _: u32, _: u32) -> Result<OutputChunk, ProcessError> {
        self.other("read_output");
        Ok(OutputChunk { lines: Vec::new(), next_cursor: cursor, dropped: 0, more: false, complete: true })
    }
    fn wait(&self, pid: Pid, _: u32) -> Result<ProcessInfo, ProcessError> {
        self.other("wait");
        Ok(self.info(pid))
    }
    fn summary(&self) -> HostSummary {
        self.other("summary");
        HostSummary { version: String::new(), uptime_secs: 0, running_processes: 0, total_processes: 0 }
    }
    fn now_ms(&self) -> u64 {
        1_000
    }
}

/// A refusal as the API defines it: a 400 with one of `codes`, and a body
/// that is exactly `{"error": "<message>", "code": "<code>"}`.
fn check_error(error: &ApiError, codes: &[&str]) {
    assert_eq!(error.status, 400, "{error:?}");
    assert!(codes.contains(&error.code), "{error:?}");
    let body: serde_json::Value = serde_json::from_str(&error.body()).expect("the error body is JSON");
    let object = body.as_object().expect("the error body is an object");
    assert_eq!(object.len(), 2, "{body}");
    assert_eq!(object["error"].as_str(), Some(error.message.as_str()));
    assert_eq!(object["code"].as_str(), Some(error.code));
    assert_eq!(error.reply().status, 400);
}

/// Text that reaches the OS: no NUL, within `max` bytes.
fn check_text(text: &str, max: usize, allow_empty: bool) {
    assert!(!text.contains('\0'), "a NUL reached the request: {text:?}");
    assert!(text.len() <= max, "{} bytes over the limit {max}", text.len());
    assert!(allow_empty || !text.is_empty(), "an empty text was accepted");
}

/// Every rule an accepted start request obeys.
fn check_request(r: &StartRequest) {
    check_text(&r.command, MAX_PATH_BYTES, false);
    assert!(r.args.len() <= MAX_ARGS);
    for arg in &r.args {
        check_text(arg, MAX_ARG_BYTES, true);
    }
    assert!(r.env.len() <= MAX_ENV);
    for (i, var) in r.env.iter().enumerate() {
        check_text(&var.name, usize::MAX, false);
        assert!(!var.name.contains('='), "env name {:?} has `=`", var.name);
        check_text(&var.value, usize::MAX, true);
        assert!(r.env[..i].iter().all(|v| v.name != var.name), "env name {:?} twice", var.name);
    }
    if let Some(dir) = &r.working_dir {
        check_text(dir, MAX_PATH_BYTES, false);
    }
}

fn check_start(body: &[u8]) {
    let parsed = request::parse_start(body);
    let normalized = api::normalize(body);
    let validated = api::validate(body);
    match (&parsed, &normalized) {
        (Ok(r), Ok(n)) => {
            check_request(r);
            let again = request::parse_start(n.as_bytes())
                .unwrap_or_else(|e| panic!("the normalized form {n} is refused: {e:?}"));
            assert_eq!(&again, r, "normalizing changed the request");
            assert_eq!(&api::normalize(n.as_bytes()).unwrap(), n, "not idempotent");
            assert_eq!((validated.status, &validated.body), (200, n));
        }
        (Err(e), Err(b)) => {
            check_error(e, &["INVALID_REQUEST"]);
            assert_eq!(b, &e.body());
            assert_eq!(validated, e.reply());
        }
        _ => panic!("parse_start and normalize disagree: {parsed:?} / {normalized:?}"),
    }
    let cap = Recorder::default();
    let reply = api::start(&cap, body);
    match &parsed {
        Ok(r) => {
            assert_eq!(reply.status, 201);
            assert_eq!(*cap.starts.borrow(), std::slice::from_ref(r));
        }
        Err(e) => {
            assert_eq!(reply, e.reply());
            assert!(cap.starts.borrow().is_empty(), "a refused start reached the host");
        }
    }
    assert!(cap.others.borrow().is_empty(), "{:?}", cap.others.borrow());
}

fn check_run(body: &[u8]) {
    let parsed = request::parse_run(body);
    let cap = Recorder::default();
    let opened = api::run_open(&cap, body);
    match &parsed {
        Ok(run) => {
            check_request(&run.request);
            let r = &run.request;
            assert_eq!(
                (r.stdin_mode, r.stdout_mode, r.stderr_mode),
                (
                    sandbox_process_guest::model::StdinMode::Closed,
                    sandbox_process_guest::model::OutputMode::Capture,
                    sandbox_process_guest::model::OutputMode::Capture
                )
            );
            if let Some(ms) = run.timeout_ms {
                assert!(ms >= 1 && ms <= (MAX_TIMEOUT_SECS * 1000.0) as u64, "{ms} ms");
            }
            let step = opened.expect("an accepted run opens");
            assert!(!step.done);
            assert_eq!(*cap.starts.borrow(), std::slice::from_ref(r));
            assert_eq!(
                step.position.deadline,
                run.timeout_ms.map(|ms| 1_000 + ms),
                "the deadline counts from the start"
            );
        }
        Err(e) => {
            check_error(e, &["INVALID_REQUEST"]);
            assert_eq!(opened.unwrap_err(), e.reply());
            assert!(cap.starts.borrow().is_empty(), "a refused run reached the host");
        }
    }
}

fn check_signal(body: &[u8]) {
    let parsed = request::parse_signal(body);
    let cap = Recorder::default();
    let reply = api::signal(&cap, "42", body);
    match &parsed {
        Ok(n) => {
            assert!((1..=64).contains(n), "signal {n} accepted");
            assert_eq!(reply.status, 200);
            assert_eq!(*cap.signals.borrow(), [(42, *n)]);
        }
        Err(e) => {
            check_error(e, &["INVALID_REQUEST", "INVALID_SIGNAL"]);
            assert_eq!(reply, e.reply());
            assert!(cap.signals.borrow().is_empty(), "a refused signal reached the host");
        }
    }
}

fn check_ref(body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    for reference in [&text[..], text.trim()] {
        let cap = Recorder::default();
        let reply = api::get(&cap, reference);
        match request::parse_ref(reference) {
            Ok(pid) => {
                assert_eq!(pid.to_string(), reference, "a non-canonical reference accepted");
                assert!(pid >= 1 && pid <= i32::MAX as u32, "pid {pid}");
                assert_eq!(reply.status, 200);
                assert_eq!(*cap.others.borrow(), ["get"]);
            }
            Err(e) => {
                check_error(&e, &["INVALID_REQUEST"]);
                assert_eq!(reply, e.reply());
                assert!(cap.others.borrow().is_empty(), "a refused reference reached the host");
            }
        }
    }
    // Every canonical reference is accepted, whatever the number.
    if let Ok(n) = u32::try_from(body.len() * 7919 + usize::from(body.first().copied().unwrap_or(1))) {
        let pid = n % (i32::MAX as u32) + 1;
        assert_eq!(request::parse_ref(&pid.to_string()), Ok(pid));
    }
}

/// Field names: the API's, the managed ones it refuses, and others.
const NAMES: &[&str] = &[
    "command",
    "command",
    "args",
    "args",
    "env",
    "env",
    "working_dir",
    "stdin_mode",
    "stdout_mode",
    "stderr_mode",
    "timeout",
    "signal",
    "signal",
    "user",
    "name",
    "restart",
    "health_check",
    "",
    "Command",
    "command\u{0}",
    "__proto__",
    "stdin-mode",
];

/// String values, written as JSON string contents (escapes included).
const STRINGS: &[&str] = &[
    "",
    "sh",
    "echo",
    "/bin/echo",
    "./run.sh",
    "..",
    "../../etc",
    "/workspace",
    "a=b",
    "=",
    "LD_PRELOAD",
    "PATH",
    "closed",
    "pipe",
    "capture",
    "discard",
    "Pipe",
    "x\\u0000y",
    "\\u0000",
    "\\ud800",
    "\\udc00\\ud800",
    "\\ud83d\\ude00",
    "é",
    "\\n",
    "\\\"",
    "\\\\",
    "\\t\\u001f",
    "\u{2028}",
    "42",
    "-1",
];

/// Number literals, as written in JSON.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "9",
    "15",
    "64",
    "65",
    "-1",
    "2147483647",
    "2147483648",
    "-2147483649",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e3",
    "1E400",
    "-1e400",
    "0.5",
    "0.0001",
    "1e-320",
    "15.0",
    "86400",
    "86400.0000001",
    "86401",
    "1e19",
    "9.2e18",
    "123456789012345678901234567890",
];

/// A JSON body built from choices: usually an object of API fields,
/// sometimes another value, sometimes damaged.
pub fn json_body(src: &mut Source) -> Vec<u8> {
    let mut out = String::new();
    if src.below(8) == 0 {
        value(src, &mut out, 0);
    } else {
        let members = src.below(9);
        out.push('{');
        for i in 0..members {
            if i > 0 {
                out.push(',');
            }
            string(src.pick(NAMES), &mut out);
            out.push(':');
            value(src, &mut out, 0);
        }
        out.push('}');
    }
    let mut bytes = out.into_bytes();
    match src.below(16) {
        0 if !bytes.is_empty() => {
            let at = src.below(bytes.len());
            bytes.truncate(at);
        }
        1 if !bytes.is_empty() => {
            let at = src.below(bytes.len());
            bytes[at] = src.byte();
        }
        2 => bytes.splice(0..0, *b"\xEF\xBB\xBF").for_each(drop), // a BOM
        3 => bytes.extend_from_slice(b" \n\t"),
        _ => {}
    }
    bytes
}

fn string(contents: &str, out: &mut String) {
    out.push('"');
    out.push_str(contents);
    out.push('"');
}

fn value(src: &mut Source, out: &mut String, depth: usize) {
    let kinds = if depth > 3 { 4 } else { 8 };
    match src.below(kinds) {
        0 => out.push_str(src.pick(&["null", "true", "false"])),
        1 => out.push_str(src.pick(NUMBERS)),
        2 | 3 => string(src.pick(STRINGS), out),
        4 => {
            // A long string: around each limit of the API (the longest
            // ones rarely: they make an input slow).
            let (len, fill) = if src.below(16) == 0 {
                (src.pick(&[MAX_ARG_BYTES, MAX_ARG_BYTES + 1]), src.pick(&["a", "é"]))
            } else {
                (src.pick(&[MAX_PATH_BYTES, MAX_PATH_BYTES + 1, 100]), src.pick(&["a", "é", "\\u0000"]))
            };
            out.push('"');
            let mut written = 0;
            while written < len {
                out.push_str(fill);
                written += if fill == "é" { 2 } else { 1 };
            }
            out.push('"');
        }
        5 => {
            // An array: a few values, or many short strings.
            out.push('[');
            let count = if src.below(32) == 0 { src.pick(&[MAX_ARGS, MAX_ARGS + 1]) } else { src.below(6) };
            for i in 0..count {
                if i > 0 {
                    out.push(',');
                }
                if count > 10 {
                    out.push_str("\"a\"");
                } else {
                    value(src, out, depth + 1);
                }
            }
            out.push(']');
        }
        6 => {
            // An object, the shape of `env`: names with `=`, NUL, repeats.
            out.push('{');
            let count = if src.below(32) == 0 { MAX_ENV + src.below(2) } else { src.below(5) };
            for i in 0..count {
                if i > 0 {
                    out.push(',');
                }
                if count > 10 {
                    out.push_str(&format!("\"V{i}\":\"x\""));
                    continue;
                }
                string(src.pick(STRINGS), out);
                out.push(':');
                value(src, out, depth + 1);
            }
            out.push('}');
        }
        _ => {
            // Deep nesting.
            let depth = src.pick(&[10, 127, 128, 129, 127, 128, 129, 1000]);
            out.push_str(&"[".repeat(depth));
            out.push_str(&"]".repeat(depth));
        }
    }
}
