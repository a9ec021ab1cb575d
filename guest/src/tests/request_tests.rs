//! Every rule and default of the start body.

use crate::model::{EnvVar, OutputMode, StartRequest, StdinMode};
use crate::render::ApiError;
use crate::request::parse_start;

fn start_error(body: &[u8]) -> ApiError {
    parse_start(body).expect_err("body must be refused")
}

/// Asserts a 400 INVALID_REQUEST with exactly `message`, for each case.
fn assert_invalid(cases: &[(&str, &str)]) {
    for (body, message) in cases {
        let error = start_error(body.as_bytes());
        assert_eq!(
            (error.status, error.code, error.message.as_str()),
            (400, "INVALID_REQUEST", *message),
            "body: {body}"
        );
    }
}

fn minimal(command: &str) -> StartRequest {
    StartRequest {
        command: command.to_owned(),
        args: vec![],
        env: vec![],
        working_dir: None,
        stdin_mode: StdinMode::Closed,
        stdout_mode: OutputMode::Capture,
        stderr_mode: OutputMode::Capture,
    }
}

#[test]
fn only_command_gets_every_default() {
    assert_eq!(parse_start(br#"{"command":"ls"}"#).unwrap(), minimal("ls"));
}

#[test]
fn null_optional_fields_mean_default() {
    let body = br#"{"command":"ls","args":null,"env":null,"working_dir":null,
        "stdin_mode":null,"stdout_mode":null,"stderr_mode":null}"#;
    assert_eq!(parse_start(body).unwrap(), minimal("ls"));
}

#[test]
fn every_field_is_read() {
    let body = br#" {"command":"python","args":["-m","http.server",""],
        "env":{"B":"2","A":"1=x"},"working_dir":"/tmp","stdin_mode":"pipe",
        "stdout_mode":"discard","stderr_mode":"discard"} "#;
    let request = parse_start(body).unwrap();
    assert_eq!(
        request,
        StartRequest {
            command: "python".into(),
            args: vec!["-m".into(), "http.server".into(), String::new()],
            // Body order, not sorted: the host applies them in this order.
            env: vec![EnvVar { name: "B".into(), value: "2".into() }, EnvVar { name: "A".into(), value: "1=x".into() },],
            working_dir: Some("/tmp".into()),
            stdin_mode: StdinMode::Pipe,
            stdout_mode: OutputMode::Discard,
            stderr_mode: OutputMode::Discard,
        }
    );
}

#[test]
fn unicode_and_escapes_survive() {
    let request = parse_start(r#"{"command":"écho","args":["\"q\"\n","日本"]}"#.as_bytes()).unwrap();
    assert_eq!(request.command, "écho");
    assert_eq!(request.args, vec!["\"q\"\n".to_owned(), "日本".to_owned()]);
}

#[test]
fn body_that_is_not_json() {
    let error = start_error(b"hello");
    assert_eq!(error.message, "request body is not valid JSON: expected value at line 1 column 1");
    assert_eq!((error.status, error.code), (400, "INVALID_REQUEST"));
}

#[test]
fn truncated_json_reports_the_position() {
    let error = start_error(br#"{"command":"ls""#);
    assert_eq!(error.message, "request body is not valid JSON: EOF while parsing an object at line 1 column 15");
}

#[test]
fn trailing_characters_are_refused() {
    let error = start_error(br#"{"command":"ls"} {}"#);
    assert!(error.message.starts_with("request body is not valid JSON: trailing characters"));
}

#[test]
fn body_must_be_an_object() {
    assert_invalid(&[
        ("[]", "request body must be a JSON object, got an array"),
        (r#""ls""#, "request body must be a JSON object, got a string"),
        ("null", "request body must be a JSON object, got null"),
        ("42", "request body must be a JSON object, got a number"),
        ("", "request body is empty; expected a JSON object"),
        (" \n", "request body is empty; expected a JSON object"),
    ]);
}

#[test]
fn invalid_utf8_is_refused() {
    let error = start_error(b"{\"command\":\"\xff\"}");
    assert_eq!(error.message, "request body is not valid UTF-8 (invalid byte at offset 12)");
    assert_eq!(error.code, "INVALID_REQUEST");
}

#[test]
fn command_rules() {
    let long = format!(r#"{{"command":"{}"}}"#, "c".repeat(4097));
    assert_invalid(&[
        ("{}", "missing field `command`"),
        (r#"{"command":null}"#, "field `command` must be a string, got null"),
        (r#"{"command":1}"#, "field `command` must be a string, got a number"),
        (r#"{"command":["ls"]}"#, "field `command` must be a string, got an array"),
        (r#"{"command":{}}"#, "field `command` must be a string, got an object"),
        (r#"{"command":true}"#, "field `command` must be a string, got a boolean"),
        (r#"{"command":""}"#, "field `command` must not be empty"),
        (r#"{"command":"l\u0000s"}"#, "field `command` must not contain a NUL byte"),
        (&long, "field `command` is 4097 bytes long; at most 4096 are allowed"),
    ]);
    let longest = format!(r#"{{"command":"{}"}}"#, "c".repeat(4096));
    assert!(parse_start(longest.as_bytes()).is_ok());
}

#[test]
fn args_rules() {
    let long_arg = format!(r#"{{"command":"ls","args":["{}"]}}"#, "a".repeat(131_073));
    assert_invalid(&[
        (r#"{"command":"ls","args":"-l"}"#, "field `args` must be an array of strings, got a string"),
        (r#"{"command":"ls","args":{}}"#, "field `args` must be an array of strings, got an object"),
        (r#"{"command":"ls","args":[1]}"#, "field `args[0]` must be a string, got a number"),
        (r#"{"command":"ls","args":["a","b","c",null]}"#, "field `args[3]` must be a string, got null"),
        (r#"{"command":"ls","args":["a",["b"]]}"#, "field `args[1]` must be a string, got an array"),
        (r#"{"command":"ls","args":["a","b\u0000"]}"#, "field `args[1]` must not contain a NUL byte"),
        (&long_arg, "field `args[0]` is 131073 bytes long; at most 131072 are allowed"),
    ]);
}

#[test]
fn args_count_limit() {
    let body = |n: usize| format!(r#"{{"command":"ls","args":[{}]}}"#, vec![r#""x""#; n].join(","));
    assert_eq!(parse_start(body(10_000).as_bytes()).unwrap().args.len(), 10_000);
    assert_invalid(&[(&body(10_001), "field `args` has 10001 elements; at most 10000 are allowed")]);
}

#[test]
fn env_rules() {
    assert_invalid(&[
        (r#"{"command":"ls","env":["A=1"]}"#, "field `env` must be an object of strings, got an array"),
        (r#"{"command":"ls","env":"A=1"}"#, "field `env` must be an object of strings, got a string"),
        (r#"{"command":"ls","env":{"A":1}}"#, "field `env.A` must be a string, got a number"),
        (r#"{"command":"ls","env":{"A":null}}"#, "field `env.A` must be a string, got null"),
        (r#"{"command":"ls","env":{"A":{"B":"c"}}}"#, "field `env.A` must be a string, got an object"),
        (r#"{"command":"ls","env":{"":"x"}}"#, "field `env.` has an empty variable name"),
        (r#"{"command":"ls","env":{"A=B":"x"}}"#, "field `env.A=B`: a variable name must not contain `=`"),
        (r#"{"command":"ls","env":{"A\u0000":"x"}}"#, "field `env.A\\0`: a variable name must not contain a NUL byte"),
        (r#"{"command":"ls","env":{"A":"x\u0000"}}"#, "field `env.A` must not contain a NUL byte"),
        (r#"{"command":"ls","env":{"A":"1","A":"2"}}"#, "duplicate field `env.A`"),
    ]);
}

#[test]
fn env_count_limit() {
    let body = |n: usize| {
        let vars: Vec<String> = (0..n).map(|i| format!(r#""V{i}":"x""#)).collect();
        format!(r#"{{"command":"ls","env":{{{}}}}}"#, vars.join(","))
    };
    assert_eq!(parse_start(body(1_000).as_bytes()).unwrap().env.len(), 1_000);
    assert_invalid(&[(&body(1_001), "field `env` has 1001 variables; at most 1000 are allowed")]);
}

#[test]
fn working_dir_rules() {
    let long = format!(r#"{{"command":"ls","working_dir":"/{}"}}"#, "d".repeat(4096));
    assert_invalid(&[
        (r#"{"command":"ls","working_dir":5}"#, "field `working_dir` must be a string, got a number"),
        (r#"{"command":"ls","working_dir":""}"#, "field `working_dir` must not be empty"),
        (r#"{"command":"ls","working_dir":"/t\u0000"}"#, "field `working_dir` must not contain a NUL byte"),
        (&long, "field `working_dir` is 4097 bytes long; at most 4096 are allowed"),
    ]);
}

#[test]
fn enum_fields_take_only_their_spellings() {
    assert_invalid(&[
        (r#"{"command":"ls","stdin_mode":"open"}"#, r#"field `stdin_mode` must be "closed" or "pipe", got "open""#),
        (r#"{"command":"ls","stdin_mode":1}"#, r#"field `stdin_mode` must be "closed" or "pipe", got a number"#),
        (
            r#"{"command":"ls","stdout_mode":"pipe"}"#,
            r#"field `stdout_mode` must be "capture" or "discard", got "pipe""#,
        ),
        (
            r#"{"command":"ls","stderr_mode":"CAPTURE"}"#,
            r#"field `stderr_mode` must be "capture" or "discard", got "CAPTURE""#,
        ),
        (
            r#"{"command":"ls","stderr_mode":false}"#,
            r#"field `stderr_mode` must be "capture" or "discard", got a boolean"#,
        ),
    ]);
}

#[test]
fn unknown_fields_are_refused_by_name() {
    assert_invalid(&[
        (r#"{"command":"ls","foo":1}"#, "unknown field `foo`"),
        (r#"{"command":"ls","timeout":5}"#, "unknown field `timeout`"),
        (r#"{"Command":"ls"}"#, "unknown field `Command`"),
    ]);
}

#[test]
fn quoted_field_names_are_escaped_and_cut_short() {
    let error = start_error(r#"{"a\nb":1}"#.as_bytes());
    assert_eq!(error.message, "unknown field `a\\nb`");
    let long = format!(r#"{{"{}":1}}"#, "x".repeat(1000));
    let error = start_error(long.as_bytes());
    assert_eq!(error.message, format!("unknown field `{}…`", "x".repeat(64)));
}

#[test]
fn managed_fields_are_not_supported_yet() {
    for field in ["user", "name", "restart", "health_check"] {
        let message = format!("field `{field}` is not supported yet (managed processes)");
        for value in [r#""x""#, "{}", "null"] {
            let body = format!(r#"{{"command":"ls","{field}":{value}}}"#);
            assert_invalid(&[(&body, &message)]);
        }
    }
}

#[test]
fn duplicate_fields_are_refused() {
    assert_invalid(&[
        (r#"{"command":"ls","command":"rm"}"#, "duplicate field `command`"),
        (r#"{"command":"ls","args":[],"args":["-l"]}"#, "duplicate field `args`"),
    ]);
}

#[test]
fn many_members_are_judged_in_linear_time() {
    // Pairwise duplicate detection would take minutes here.
    let members: Vec<String> = (0..200_000).map(|i| format!(r#""k{i}":0"#)).collect();
    let body = format!("{{{}}}", members.join(","));
    let started = std::time::Instant::now();
    assert_invalid(&[(&body, "unknown field `k0`")]);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn duplicates_are_found_late_in_a_body() {
    let body = r#"{"command":"ls","args":[],"env":{},"args":null}"#;
    assert_invalid(&[(body, "duplicate field `args`")]);
}
