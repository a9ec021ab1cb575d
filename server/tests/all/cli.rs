//! The `sandbox-process` command line: exec and validate, as a user runs them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn sandbox_process(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandbox-process"))
        .args(args)
        .env("XDG_CACHE_HOME", env!("CARGO_TARGET_TMPDIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn exec_prints_the_output_and_exits_as_the_child_did() {
    let out = sandbox_process(&["exec", r#"{"command":"echo","args":["hi"]}"#], b"");
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "hi\n".to_string()), "{}", text(&out.stderr));

    let script = r#"{"command":"sh","args":["-c","echo out; echo err >&2; exit 3"]}"#;
    let out = sandbox_process(&["exec", script], b"");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n", "the child's stderr goes to stderr");

    let out = sandbox_process(&["exec", r#"{"command":"sh","args":["-c","kill -TERM $$"]}"#], b"");
    assert_eq!(out.status.code(), Some(128 + 15), "128 + the signal");
}

#[test]
fn exec_passes_stdin_through_a_pipe() {
    let out = sandbox_process(&["exec", r#"{"command":"cat","stdin_mode":"pipe"}"#], b"one\ntwo\n");
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "one\ntwo\n".to_string()));
    // Closed stdin (the default): the child reads end of file at once.
    let out = sandbox_process(&["exec", r#"{"command":"cat"}"#], b"ignored\n");
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), String::new()));
}

#[test]
fn exec_refusals_exit_2_with_the_error_as_json() {
    let out = sandbox_process(&["exec", r#"{"command":"ls","colour":"red"}"#], b"");
    assert_eq!(out.status.code(), Some(2));
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["code"], "INVALID_REQUEST");
    assert!(error["error"].as_str().unwrap().contains("colour"));

    let out = sandbox_process(&["exec", r#"{"command":"no-such-command-xyz"}"#], b"");
    assert_eq!(out.status.code(), Some(2));
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["code"], "SPAWN_FAILED");

    let out = sandbox_process(&["exec", "@/no/such/file.json"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/no/such/file.json"), "{}", text(&out.stderr));
}

#[test]
fn validate_prints_the_normalized_request_or_the_error() {
    let out = sandbox_process(&["validate", "-"], br#"{"command":"ls","args":["-l"]}"#);
    assert_eq!(out.status.code(), Some(0));
    let normalized: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        normalized,
        serde_json::json!({"command": "ls", "args": ["-l"], "env": {}, "working_dir": null,
            "stdin_mode": "closed", "stdout_mode": "capture", "stderr_mode": "capture"})
    );
    let out = sandbox_process(&["validate", r#"{"command":"ls","stdin_mode":"open"}"#], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("stdin_mode"), "{}", text(&out.stderr));
}

#[test]
fn every_subcommand_explains_itself() {
    for args in [&["--help"][..], &["serve", "--help"], &["exec", "--help"], &["validate", "--help"]] {
        let out = sandbox_process(args, b"");
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(text(&out.stdout).contains("Usage: sandbox-process"), "{args:?}");
    }
    let serve = text(&sandbox_process(&["serve", "--help"], b"").stdout);
    for flag in ["--listen", "--token", "--allow-command", "--working-dir-root", "--max-processes", "--capture-bytes"] {
        assert!(serve.contains(flag), "serve --help mentions {flag}");
    }
}
