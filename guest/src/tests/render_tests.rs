//! The exact JSON the API replies with.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::model::*;
use crate::render::{self, ApiError};

fn keys(json: &str) -> BTreeSet<String> {
    match serde_json::from_str::<Value>(json).unwrap() {
        Value::Object(map) => map.keys().cloned().collect(),
        other => panic!("not an object: {other}"),
    }
}

fn exited() -> ProcessInfo {
    ProcessInfo {
        pid: 42,
        status: ProcessStatus::Exited,
        stdin_writable: false,
        command: "python".into(),
        args: vec!["-m".into(), "http.server".into()],
        started_at: 1_710_000_000_000,
        exit_code: Some(3),
        signal: None,
        ended_at: Some(1_710_000_000_500),
    }
}

#[test]
fn error_body_shape() {
    let error = ApiError::from(ProcessError::NotFound(42));
    assert_eq!(error.body(), r#"{"error":"no process with pid 42","code":"NOT_FOUND"}"#);
    assert_eq!(error.reply(), Reply { status: 404, body: error.body() });
    let quoted = ApiError::invalid_request("bad \"x\"\n");
    assert_eq!(quoted.body(), r#"{"error":"bad \"x\"\n","code":"INVALID_REQUEST"}"#);
}

#[test]
fn every_process_error_has_its_status_and_code() {
    for (error, status, code, message) in [
        (ProcessError::InvalidRequest("rule".into()), 400, "INVALID_REQUEST", "rule"),
        (ProcessError::NotFound(7), 404, "NOT_FOUND", "no process with pid 7"),
        (
            ProcessError::SpawnFailed("No such file or directory (os error 2)".into()),
            400,
            "SPAWN_FAILED",
            "failed to start the command: No such file or directory (os error 2)",
        ),
        (
            ProcessError::StdinNotWritable(7, StdinState::NotAPipe),
            400,
            "STDIN_NOT_WRITABLE",
            "stdin of process 7 is not a pipe: start it with \"stdin_mode\":\"pipe\" to write to it",
        ),
        (
            ProcessError::StdinNotWritable(7, StdinState::Closed),
            400,
            "STDIN_NOT_WRITABLE",
            "stdin of process 7 is closed (by a close request, by the process, or at its exit)",
        ),
        (ProcessError::NotRunning(7), 400, "NOT_RUNNING", "process 7 is not running"),
        (ProcessError::InvalidSignal(99), 400, "INVALID_SIGNAL", "signal 99 is not a signal the host delivers"),
        (
            ProcessError::Denied("command `rm` is not allowed".into()),
            403,
            "DENIED",
            "denied: command `rm` is not allowed",
        ),
        (ProcessError::LimitExceeded("64 processes".into()), 429, "LIMIT_EXCEEDED", "limit exceeded: 64 processes"),
        (ProcessError::Internal("pipe broke".into()), 500, "INTERNAL", "internal error: pipe broke"),
    ] {
        let api = ApiError::from(error);
        assert_eq!((api.status, api.code, api.message.as_str()), (status, code, message));
        assert_eq!(keys(&api.body()), BTreeSet::from(["error".into(), "code".into()]));
    }
}

#[test]
fn process_info_has_exactly_the_api_keys() {
    let expected: BTreeSet<String> =
        ["pid", "status", "stdin_writable", "command", "args", "started_at", "exit_code", "signal", "ended_at"]
            .into_iter()
            .map(String::from)
            .collect();
    assert_eq!(keys(&render::process_info(&exited())), expected);
}

#[test]
fn process_info_writes_nulls() {
    let mut info = exited();
    info.status = ProcessStatus::Running;
    info.stdin_writable = true;
    info.exit_code = None;
    info.ended_at = None;
    assert_eq!(
        render::process_info(&info),
        r#"{"pid":42,"status":"running","stdin_writable":true,"command":"python","args":["-m","http.server"],"started_at":1710000000000,"exit_code":null,"signal":null,"ended_at":null}"#
    );
    assert_eq!(
        render::process_info(&exited()),
        r#"{"pid":42,"status":"exited","stdin_writable":false,"command":"python","args":["-m","http.server"],"started_at":1710000000000,"exit_code":3,"signal":null,"ended_at":1710000000500}"#
    );
    info.status = ProcessStatus::Signaled;
    info.signal = Some(9);
    assert!(render::process_info(&info).contains(r#""status":"signaled""#));
}

#[test]
fn process_list_wraps_infos() {
    assert_eq!(render::process_list(&[]), r#"{"processes":[]}"#);
    let list: Value = serde_json::from_str(&render::process_list(&[exited(), exited()])).unwrap();
    assert_eq!(list["processes"].as_array().unwrap().len(), 2);
    assert_eq!(list["processes"][0]["pid"], 42);
}

#[test]
fn output_reply_adds_dropped_lines_only_when_some_were() {
    let lines = vec!["a".to_owned(), "say \"hi\"\t\u{1}".to_owned(), "日本".to_owned()];
    assert_eq!(
        render::output_reply(42, &lines, 0),
        "{\"pid\":42,\"lines\":[\"a\",\"say \\\"hi\\\"\\t\\u0001\",\"日本\"],\"line_count\":3}"
    );
    assert_eq!(render::output_reply(42, &[], 5), r#"{"pid":42,"lines":[],"line_count":0,"dropped_lines":5}"#);
}

#[test]
fn health_and_info() {
    assert_eq!(render::health(), r#"{"healthy":true}"#);
    let summary = HostSummary { version: "0.1.0".into(), uptime_secs: 3, running_processes: 1, total_processes: 4 };
    assert_eq!(
        render::host_info(&summary),
        r#"{"version":"0.1.0","uptime_secs":3,"running_processes":1,"total_processes":4}"#
    );
}

#[test]
fn normalized_request_writes_every_default() {
    let request = StartRequest {
        command: "ls".into(),
        args: vec![],
        env: vec![EnvVar { name: "Z".into(), value: "1".into() }, EnvVar { name: "A".into(), value: "\"2\"".into() }],
        working_dir: None,
        stdin_mode: StdinMode::Closed,
        stdout_mode: OutputMode::Capture,
        stderr_mode: OutputMode::Discard,
    };
    assert_eq!(
        render::normalized(&request),
        r#"{"command":"ls","args":[],"env":{"Z":"1","A":"\"2\""},"working_dir":null,"stdin_mode":"closed","stdout_mode":"capture","stderr_mode":"discard"}"#
    );
    let with_dir = StartRequest { working_dir: Some("/tmp".into()), stdin_mode: StdinMode::Pipe, ..request };
    let value: Value = serde_json::from_str(&render::normalized(&with_dir)).unwrap();
    assert_eq!((value["working_dir"].as_str(), value["stdin_mode"].as_str()), (Some("/tmp"), Some("pipe")));
}

#[test]
fn output_line_escapes_everything() {
    let line = OutputLine { stream: OutputStream::Stderr, line: "a\"b\\c\r\u{7f}\u{1b}[0m é".into(), timestamp: 5 };
    let json = render::output_line(&line);
    assert!(!json.contains('\n') && !json.contains('\r'));
    let back: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(back["line"], line.line.as_str());
    assert_eq!(back["stream"], "stderr");
    assert_eq!(back["timestamp"], 5);
}
