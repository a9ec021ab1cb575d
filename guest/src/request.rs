//! Parsing and validation of untrusted input: the start, signal and run
//! bodies and the process reference of a path.
//!
//! Bodies are read into a [`Node`] tree rather than derived structs so that
//! every error names the field at fault (derive's type errors do not) and
//! duplicate members are refused instead of silently resolved.

use crate::json::{self, Node, object, shown};
use crate::model::{EnvVar, OutputMode, Pid, StartRequest, StdinMode};
use crate::prelude::*;
use crate::render::ApiError;

/// Longest `command` and `working_dir`, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Most elements of `args`.
pub const MAX_ARGS: usize = 10_000;
/// Longest element of `args`, in bytes (Linux `MAX_ARG_STRLEN`).
pub const MAX_ARG_BYTES: usize = 131_072;
/// Most variables in `env`.
pub const MAX_ENV: usize = 1_000;
/// Longest `timeout` of a run, in seconds (one day).
pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;
/// Lowest and highest signal number the API accepts.
pub const SIGNAL_RANGE: core::ops::RangeInclusive<i64> = 1..=64;

/// The fields of a start body.
const START_FIELDS: &[&str] = &["command", "args", "env", "working_dir", "stdin_mode", "stdout_mode", "stderr_mode"];
/// The fields of a run body.
const RUN_FIELDS: &[&str] = &["command", "args", "env", "working_dir", "timeout"];
/// Fields of managed processes the official client may send: refused by
/// name so that nobody believes they took effect.
const MANAGED_FIELDS: &[&str] = &["user", "name", "restart", "health_check"];
/// Start fields that a run fixes itself (stdin closed, output captured).
const RUN_FIXED_FIELDS: &[&str] = &["stdin_mode", "stdout_mode", "stderr_mode"];

/// A validated run body: the start request it implies and its time limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// Stdin closed, both outputs captured.
    pub request: StartRequest,
    /// The time limit in milliseconds, rounded up so it is never 0.
    pub timeout_ms: Option<u64>,
}

/// Parses and validates a start body, applying every default.
pub fn parse_start(body: &[u8]) -> Result<StartRequest, ApiError> {
    let members = object(body)?;
    for (name, _) in &members {
        if !START_FIELDS.contains(&name.as_str()) {
            return Err(refused_field(name));
        }
    }
    Ok(StartRequest {
        command: command(&members)?,
        args: args(&members)?,
        env: env(&members)?,
        working_dir: working_dir(&members)?,
        stdin_mode: choice(
            &members,
            "stdin_mode",
            &[("closed", StdinMode::Closed), ("pipe", StdinMode::Pipe)],
            StdinMode::Closed,
        )?,
        stdout_mode: output_mode(&members, "stdout_mode")?,
        stderr_mode: output_mode(&members, "stderr_mode")?,
    })
}

/// Parses and validates a run body: stdin is closed and both outputs are
/// captured, because a run only reports output and exit.
pub fn parse_run(body: &[u8]) -> Result<RunRequest, ApiError> {
    let members = object(body)?;
    for (name, _) in &members {
        if RUN_FIXED_FIELDS.contains(&name.as_str()) {
            return Err(ApiError::invalid_request(format!(
                "field `{name}` is not accepted by run (stdin is closed and output is captured)"
            )));
        }
        if !RUN_FIELDS.contains(&name.as_str()) {
            return Err(refused_field(name));
        }
    }
    let request = StartRequest {
        command: command(&members)?,
        args: args(&members)?,
        env: env(&members)?,
        working_dir: working_dir(&members)?,
        stdin_mode: StdinMode::Closed,
        stdout_mode: OutputMode::Capture,
        stderr_mode: OutputMode::Capture,
    };
    Ok(RunRequest { request, timeout_ms: timeout(&members)? })
}

/// Parses a signal body, exactly `{"signal": N}` with N from 1 to 64.
///
/// A number that is an integer but out of range is `INVALID_SIGNAL`; any
/// other mistake (wrong type, fraction, missing or extra field) is
/// `INVALID_REQUEST`, since the body itself is malformed.
pub fn parse_signal(body: &[u8]) -> Result<i32, ApiError> {
    let members = object(body)?;
    for (name, _) in &members {
        if name != "signal" {
            return Err(ApiError::invalid_request(format!("unknown field `{}`", shown(name))));
        }
    }
    let number = match member(&members, "signal") {
        None => return Err(ApiError::invalid_request("missing field `signal`")),
        Some(Node::Number(n)) => n,
        Some(other) => return Err(wrong_type("signal", "an integer", other)),
    };
    let out_of_range = |got: String| {
        ApiError::invalid_signal(format!(
            "field `signal` must be between {} and {}, got {got}",
            SIGNAL_RANGE.start(),
            SIGNAL_RANGE.end()
        ))
    };
    if let Some(n) = number.as_i64() {
        return match i32::try_from(n) {
            Ok(signal) if SIGNAL_RANGE.contains(&n) => Ok(signal),
            _ => Err(out_of_range(n.to_string())),
        };
    }
    if number.is_u64() {
        return Err(out_of_range(number.to_string()));
    }
    // serde_json reads an integer literal beyond 64 bits as a float: it is
    // still an integer the sender meant, just out of range.
    let value = number.as_f64().unwrap_or(f64::NAN);
    // (Every finite f64 this large is an integer.)
    if value.is_finite() && (value >= 9.2e18 || value <= -9.2e18) {
        return Err(out_of_range(format!("{value:e}")));
    }
    Err(ApiError::invalid_request(format!("field `signal` must be an integer, got {number}")))
}

/// Parses the `{ref}` of a path: a positive decimal `pid_t`, written
/// canonically, so that one process has exactly one reference.
pub fn parse_ref(process_ref: &str) -> Result<Pid, ApiError> {
    let bytes = process_ref.as_bytes();
    let canonical = matches!(bytes.first(), Some(b'1'..=b'9')) && bytes.iter().all(u8::is_ascii_digit);
    match process_ref.parse::<i32>() {
        Ok(pid) if canonical => Ok(pid.unsigned_abs()),
        _ => Err(ApiError::invalid_request(format!("process reference `{}` is not a process id", shown(process_ref)))),
    }
}

/// The error for a field that is not part of the body's shape.
fn refused_field(name: &str) -> ApiError {
    if MANAGED_FIELDS.contains(&name) {
        ApiError::invalid_request(format!("field `{name}` is not supported yet (managed processes)"))
    } else {
        ApiError::invalid_request(format!("unknown field `{}`", shown(name)))
    }
}

/// The value of a member, with `null` read as absent: the official client
/// leaves out defaults, and others may spell "default" as `null`.
fn member<'a>(members: &'a [(String, Node)], name: &str) -> Option<&'a Node> {
    members.iter().find(|(n, _)| n == name).map(|(_, v)| v).filter(|v| **v != Node::Null)
}

fn wrong_type(field: &str, expected: &str, got: &Node) -> ApiError {
    ApiError::invalid_request(format!("field `{field}` must be {expected}, got {}", got.kind()))
}

/// Checks text that reaches the OS: a NUL would truncate it there.
fn check_text(field: &str, text: &str, max: usize, allow_empty: bool) -> Result<(), ApiError> {
    if !allow_empty && text.is_empty() {
        return Err(ApiError::invalid_request(format!("field `{field}` must not be empty")));
    }
    if text.contains('\0') {
        return Err(ApiError::invalid_request(format!("field `{field}` must not contain a NUL byte")));
    }
    if text.len() > max {
        return Err(ApiError::invalid_request(format!(
            "field `{field}` is {} bytes long; at most {max} are allowed",
            text.len()
        )));
    }
    Ok(())
}

fn command(members: &[(String, Node)]) -> Result<String, ApiError> {
    // Unlike the optional fields, `null` is not a default here: there is none.
    match members.iter().find(|(n, _)| n == "command").map(|(_, v)| v) {
        None => Err(ApiError::invalid_request("missing field `command`")),
        Some(Node::String(s)) => {
            check_text("command", s, MAX_PATH_BYTES, false)?;
            Ok(s.clone())
        }
        Some(other) => Err(wrong_type("command", "a string", other)),
    }
}

fn args(members: &[(String, Node)]) -> Result<Vec<String>, ApiError> {
    let items = match member(members, "args") {
        None => return Ok(Vec::new()),
        Some(Node::Array(items)) => items,
        Some(other) => return Err(wrong_type("args", "an array of strings", other)),
    };
    if items.len() > MAX_ARGS {
        return Err(ApiError::invalid_request(format!(
            "field `args` has {} elements; at most {MAX_ARGS} are allowed",
            items.len()
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = format!("args[{i}]");
            match item {
                Node::String(s) => {
                    check_text(&field, s, MAX_ARG_BYTES, true)?;
                    Ok(s.clone())
                }
                other => Err(wrong_type(&field, "a string", other)),
            }
        })
        .collect()
}

fn env(members: &[(String, Node)]) -> Result<Vec<EnvVar>, ApiError> {
    let vars = match member(members, "env") {
        None => return Ok(Vec::new()),
        Some(Node::Object(vars)) => vars,
        Some(other) => return Err(wrong_type("env", "an object of strings", other)),
    };
    if vars.len() > MAX_ENV {
        return Err(ApiError::invalid_request(format!(
            "field `env` has {} variables; at most {MAX_ENV} are allowed",
            vars.len()
        )));
    }
    if let Some(name) = json::first_duplicate(vars) {
        return Err(ApiError::invalid_request(format!("duplicate field `env.{}`", shown(name))));
    }
    vars.iter()
        .map(|(name, value)| {
            let field = format!("env.{}", shown(name));
            if name.is_empty() {
                return Err(ApiError::invalid_request("field `env.` has an empty variable name"));
            }
            if name.contains('=') {
                return Err(ApiError::invalid_request(format!(
                    "field `{field}`: a variable name must not contain `=`"
                )));
            }
            if name.contains('\0') {
                return Err(ApiError::invalid_request(format!(
                    "field `{field}`: a variable name must not contain a NUL byte"
                )));
            }
            match value {
                Node::String(v) => {
                    check_text(&field, v, usize::MAX, true)?;
                    Ok(EnvVar { name: name.clone(), value: v.clone() })
                }
                other => Err(wrong_type(&field, "a string", other)),
            }
        })
        .collect()
}

fn working_dir(members: &[(String, Node)]) -> Result<Option<String>, ApiError> {
    match member(members, "working_dir") {
        None => Ok(None),
        Some(Node::String(s)) => {
            check_text("working_dir", s, MAX_PATH_BYTES, false)?;
            Ok(Some(s.clone()))
        }
        Some(other) => Err(wrong_type("working_dir", "a string", other)),
    }
}

fn output_mode(members: &[(String, Node)], field: &str) -> Result<OutputMode, ApiError> {
    choice(members, field, &[("capture", OutputMode::Capture), ("discard", OutputMode::Discard)], OutputMode::Capture)
}

/// Reads an enum field spelled as one of `options`.
fn choice<T: Copy>(members: &[(String, Node)], field: &str, options: &[(&str, T)], default: T) -> Result<T, ApiError> {
    let spelled = options.iter().map(|(name, _)| format!("\"{name}\"")).collect::<Vec<_>>().join(" or ");
    match member(members, field) {
        None => Ok(default),
        Some(Node::String(s)) => options.iter().find(|(name, _)| name == s).map(|(_, value)| *value).ok_or_else(|| {
            ApiError::invalid_request(format!("field `{field}` must be {spelled}, got \"{}\"", shown(s)))
        }),
        Some(other) => Err(wrong_type(field, &spelled, other)),
    }
}

fn timeout(members: &[(String, Node)]) -> Result<Option<u64>, ApiError> {
    let seconds = match member(members, "timeout") {
        None => return Ok(None),
        Some(Node::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(other) => return Err(wrong_type("timeout", "a number of seconds", other)),
    };
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= MAX_TIMEOUT_SECS) {
        return Err(ApiError::invalid_request(format!(
            "field `timeout` must be more than 0 and at most {MAX_TIMEOUT_SECS} seconds, got {seconds}"
        )));
    }
    // Rounded up: a tiny positive timeout must not become "no time at all".
    // (By hand: `ceil` is std's, not core's. The value is positive and
    // bounded, so the cast truncates.)
    let ms = seconds * 1000.0;
    let whole = ms as u64;
    Ok(Some(if (whole as f64) < ms { whole + 1 } else { whole }))
}
