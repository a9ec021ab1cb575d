//! The rules of the signal and run bodies and of the process reference.

use crate::model::{OutputMode, StdinMode};
use crate::request::{parse_ref, parse_run, parse_signal};

#[test]
fn signal_accepts_1_to_64() {
    assert_eq!(parse_signal(br#"{"signal":15}"#).unwrap(), 15);
    assert_eq!(parse_signal(br#"{"signal":1}"#).unwrap(), 1);
    assert_eq!(parse_signal(br#" {"signal": 64} "#).unwrap(), 64);
}

#[test]
fn signal_out_of_range_is_invalid_signal() {
    for (body, got) in [
        (r#"{"signal":0}"#, "0"),
        (r#"{"signal":-1}"#, "-1"),
        (r#"{"signal":65}"#, "65"),
        (r#"{"signal":2147483648}"#, "2147483648"),
        (r#"{"signal":18446744073709551615}"#, "18446744073709551615"),
        (r#"{"signal":99999999999999999999}"#, "1e20"),
        (r#"{"signal":-1e300}"#, "-1e300"),
    ] {
        let error = parse_signal(body.as_bytes()).unwrap_err();
        assert_eq!(
            (error.status, error.code, error.message),
            (400, "INVALID_SIGNAL", format!("field `signal` must be between 1 and 64, got {got}")),
            "body: {body}"
        );
    }
}

#[test]
fn malformed_signal_body_is_invalid_request() {
    for (body, message) in [
        (r#"{"signal":1.5}"#, "field `signal` must be an integer, got 1.5"),
        (r#"{"signal":15.0}"#, "field `signal` must be an integer, got 15.0"),
        (r#"{"signal":"15"}"#, "field `signal` must be an integer, got a string"),
        (r#"{"signal":[15]}"#, "field `signal` must be an integer, got an array"),
        (r#"{"signal":null}"#, "missing field `signal`"),
        ("{}", "missing field `signal`"),
        ("", "request body is empty; expected a JSON object"),
        ("15", "request body must be a JSON object, got a number"),
        (r#"{"signal":15,"group":true}"#, "unknown field `group`"),
        (r#"{"signal":15,"signal":9}"#, "duplicate field `signal`"),
    ] {
        let error = parse_signal(body.as_bytes()).unwrap_err();
        assert_eq!(
            (error.status, error.code, error.message.as_str()),
            (400, "INVALID_REQUEST", message),
            "body: {body}"
        );
    }
}

#[test]
fn process_references() {
    assert_eq!(parse_ref("1").unwrap(), 1);
    assert_eq!(parse_ref("42").unwrap(), 42);
    assert_eq!(parse_ref("2147483647").unwrap(), 2_147_483_647);
    for bad in [
        "",
        "0",
        "00",
        "042",
        "-1",
        "+42",
        " 42",
        "42 ",
        "4 2",
        "1e3",
        "42.0",
        "0x2a",
        "2147483648",
        "4294967296",
        "99999999999999999999",
        "abc",
        "%34%32",
        "٤٢",
        "42/x",
    ] {
        let error = parse_ref(bad).unwrap_err();
        assert_eq!(
            (error.status, error.code, error.message),
            (400, "INVALID_REQUEST", format!("process reference `{bad}` is not a process id")),
            "ref: {bad:?}"
        );
    }
}

#[test]
fn run_fixes_stdin_and_output() {
    let run = parse_run(br#"{"command":"sh","args":["-c","echo hi"],"env":{"A":"1"},"working_dir":"/"}"#).unwrap();
    assert_eq!(run.timeout_ms, None);
    assert_eq!(run.request.stdin_mode, StdinMode::Closed);
    assert_eq!((run.request.stdout_mode, run.request.stderr_mode), (OutputMode::Capture, OutputMode::Capture));
    assert_eq!(run.request.args, vec!["-c".to_owned(), "echo hi".to_owned()]);
    assert_eq!(run.request.working_dir.as_deref(), Some("/"));
}

#[test]
fn run_timeout_is_seconds_rounded_up_to_ms() {
    for (timeout, ms) in
        [("1.5", Some(1_500)), ("0.0001", Some(1)), ("86400", Some(86_400_000)), ("null", None), ("2", Some(2_000))]
    {
        let body = format!(r#"{{"command":"ls","timeout":{timeout}}}"#);
        assert_eq!(parse_run(body.as_bytes()).unwrap().timeout_ms, ms, "timeout {timeout}");
    }
}

#[test]
fn run_timeout_rules() {
    for (timeout, message) in [
        ("0", "field `timeout` must be more than 0 and at most 86400 seconds, got 0"),
        ("-1", "field `timeout` must be more than 0 and at most 86400 seconds, got -1"),
        ("86400.5", "field `timeout` must be more than 0 and at most 86400 seconds, got 86400.5"),
        (r#""10""#, "field `timeout` must be a number of seconds, got a string"),
        ("true", "field `timeout` must be a number of seconds, got a boolean"),
    ] {
        let body = format!(r#"{{"command":"ls","timeout":{timeout}}}"#);
        let error = parse_run(body.as_bytes()).unwrap_err();
        assert_eq!((error.status, error.code, error.message.as_str()), (400, "INVALID_REQUEST", message));
    }
    // serde_json itself refuses a number that overflows f64.
    let error = parse_run(br#"{"command":"ls","timeout":1e400}"#).unwrap_err();
    assert!(error.message.starts_with("request body is not valid JSON: number out of range"), "{}", error.message);
}

#[test]
fn run_refuses_other_fields() {
    for (body, message) in [
        (
            r#"{"command":"ls","stdin_mode":"pipe"}"#,
            "field `stdin_mode` is not accepted by run (stdin is closed and output is captured)",
        ),
        (
            r#"{"command":"ls","stdout_mode":"discard"}"#,
            "field `stdout_mode` is not accepted by run (stdin is closed and output is captured)",
        ),
        (r#"{"command":"ls","restart":"always"}"#, "field `restart` is not supported yet (managed processes)"),
        (r#"{"command":"ls","foo":1}"#, "unknown field `foo`"),
        (r#"{"command":"ls","timeout":1,"timeout":2}"#, "duplicate field `timeout`"),
        (r#"{"command":""}"#, "field `command` must not be empty"),
        (r#"{"command":"ls","args":[1]}"#, "field `args[0]` must be a string, got a number"),
        ("[]", "request body must be a JSON object, got an array"),
    ] {
        let error = parse_run(body.as_bytes()).unwrap_err();
        assert_eq!(
            (error.status, error.code, error.message.as_str()),
            (400, "INVALID_REQUEST", message),
            "body: {body}"
        );
    }
}
