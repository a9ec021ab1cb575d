//! The whole stack without HTTP: requests go through the real guest
//! component (in wasmtime) to the real native capability and real processes.

use std::sync::Arc;
use std::time::Duration;

use sandbox_process::types::OutputSelector;
use sandbox_process::{GuestLimits, GuestRuntime, Limits, Policy, ProcessTable, Reply};
use serde_json::{Value, json};

fn runtime_with(limits: Limits) -> Arc<GuestRuntime> {
    let processes = ProcessTable::new(Policy::default(), limits);
    let guest = GuestLimits { cache_dir: Some(env!("CARGO_TARGET_TMPDIR").into()), ..GuestLimits::default() };
    Arc::new(GuestRuntime::new(processes, guest).expect("the guest loads"))
}

fn runtime() -> Arc<GuestRuntime> {
    runtime_with(Limits::default())
}

fn json_of(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {:?}", reply.body))
}

async fn start(rt: &GuestRuntime, body: Value) -> Value {
    let reply = rt.start(body.to_string().as_bytes()).await.unwrap();
    assert_eq!(reply.status, 201, "start failed: {}", reply.body);
    json_of(&reply)
}

/// Waits for the process to end and returns its process-info.
async fn wait_ended(rt: &GuestRuntime, pid: u64) -> Value {
    let info = rt.processes().wait(pid as u32, Duration::from_secs(20)).await.unwrap();
    assert_ne!(info.status, sandbox_process::types::ProcessStatus::Running, "pid {pid} did not end in time");
    let reply = rt.get(&pid.to_string()).await.unwrap();
    assert_eq!(reply.status, 200);
    json_of(&reply)
}

/// Reads all of a finished process's output through the guest.
async fn output(rt: &GuestRuntime, pid: u64, selector: OutputSelector) -> Value {
    // The output is complete once the pipes are drained, which can trail
    // the exit by a moment: wait for that through the capability.
    let _ = rt.processes().read_output(pid as u32, selector, u64::MAX, 1, Duration::from_secs(5)).await;
    let reply = rt.output(&pid.to_string(), selector).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    json_of(&reply)
}

fn assert_error(reply: &Reply, status: u16, code: &str, mentions: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = json_of(reply);
    assert_eq!(body["code"], code, "{}", reply.body);
    let message = body["error"].as_str().expect("error message");
    assert!(message.contains(mentions), "error {message:?} should mention {mentions:?}");
    assert_eq!(body.as_object().unwrap().len(), 2, "error body has exactly error and code");
}

#[tokio::test]
async fn echo_output_is_captured_with_timestamps() {
    let rt = runtime();
    let info = start(&rt, json!({"command": "echo", "args": ["hello", "world"]})).await;
    let keys: Vec<&str> = info.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected =
        vec!["pid", "status", "stdin_writable", "command", "args", "started_at", "exit_code", "signal", "ended_at"];
    expected.sort();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort();
    assert_eq!(keys_sorted, expected);
    assert_eq!(info["command"], "echo");
    assert_eq!(info["stdin_writable"], false);
    let pid = info["pid"].as_u64().unwrap();
    let ended = wait_ended(&rt, pid).await;
    assert_eq!(ended["status"], "exited");
    assert_eq!(ended["exit_code"], 0);
    assert_eq!(ended["signal"], Value::Null);
    assert!(ended["ended_at"].as_u64().unwrap() >= ended["started_at"].as_u64().unwrap());

    let out = output(&rt, pid, OutputSelector::Stdout).await;
    assert_eq!(out, json!({"pid": pid, "lines": ["hello world"], "line_count": 1}));

    // Timestamps are per line, in milliseconds, no earlier than the start.
    let chunk = rt.processes().read_output(pid as u32, OutputSelector::Merged, 0, 10, Duration::ZERO).await.unwrap();
    assert_eq!(chunk.lines.len(), 1);
    assert!(chunk.lines[0].timestamp >= info["started_at"].as_u64().unwrap());
}

#[tokio::test]
async fn cat_echoes_piped_stdin_after_close() {
    let rt = runtime();
    let info = start(&rt, json!({"command": "cat", "stdin_mode": "pipe"})).await;
    assert_eq!(info["stdin_writable"], true);
    let pid = info["pid"].as_u64().unwrap().to_string();
    let sent = "first line\nsecond line with \"quotes\" and ünïcode\n";
    let reply = rt.write_stdin(&pid, sent.as_bytes()).await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (204, ""));
    let reply = rt.close_stdin(&pid).await.unwrap();
    assert_eq!(reply.status, 204);
    let ended = wait_ended(&rt, pid.parse().unwrap()).await;
    assert_eq!(ended["exit_code"], 0);
    assert_eq!(ended["stdin_writable"], false);
    let out = output(&rt, pid.parse().unwrap(), OutputSelector::Stdout).await;
    let lines: Vec<&str> = sent.lines().collect();
    assert_eq!(out["lines"], json!(lines));

    // Closed now: a write is refused with the API's code, a close (the
    // retry of one whose answer was lost) succeeds.
    assert_error(&rt.write_stdin(&pid, b"late").await.unwrap(), 400, "STDIN_NOT_WRITABLE", &pid);
    assert_eq!(rt.close_stdin(&pid).await.unwrap().status, 204);
}

#[tokio::test]
async fn sigterm_shows_signaled_with_the_signal_number() {
    let rt = runtime();
    let info = start(&rt, json!({"command": "sleep", "args": ["100"]})).await;
    let pid = info["pid"].as_u64().unwrap();
    let reply = rt.signal(&pid.to_string(), br#"{"signal": 15}"#).await.unwrap();
    assert_eq!((reply.status, json_of(&reply)), (200, json!({"success": true})));
    let ended = wait_ended(&rt, pid).await;
    assert_eq!(ended["status"], "signaled");
    assert_eq!(ended["signal"], 15);
    assert_eq!(ended["exit_code"], Value::Null);
    assert!(ended["ended_at"].is_u64());
    // A second signal finds it ended.
    assert_error(&rt.signal(&pid.to_string(), br#"{"signal": 15}"#).await.unwrap(), 400, "NOT_RUNNING", "");
}

/// The pids of live (not zombie) processes whose process group is `pgid`.
fn group_members(pgid: u64) -> Vec<u64> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // Fields after the parenthesised command: state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            members.push(entry.file_name().to_string_lossy().parse().unwrap_or(0));
        }
    }
    members
}

#[tokio::test]
async fn kill_ends_the_whole_process_group() {
    let rt = runtime();
    let info = start(&rt, json!({"command": "sh", "args": ["-c", "sleep 100 & sleep 100 & wait"]})).await;
    let pid = info["pid"].as_u64().unwrap();
    // Wait until the shell has started both sleeps.
    for _ in 0..200 {
        if group_members(pid).len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(group_members(pid).len() >= 3, "the shell and its two sleeps run in one group");
    let reply = rt.kill(&pid.to_string()).await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (204, ""));
    let ended = wait_ended(&rt, pid).await;
    assert_eq!(ended["status"], "signaled");
    assert_eq!(ended["signal"], 9);
    for _ in 0..200 {
        if group_members(pid).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(group_members(pid), Vec::<u64>::new(), "no member of the group survives");
}

#[tokio::test]
async fn spawn_failures_are_clear() {
    let rt = runtime();
    let reply = rt.start(br#"{"command": "no-such-command-xyz"}"#).await.unwrap();
    assert_error(&reply, 400, "SPAWN_FAILED", "no-such-command-xyz");
    let reply = rt.start(br#"{"command": "true", "working_dir": "/no/such/dir"}"#).await.unwrap();
    assert_error(&reply, 400, "SPAWN_FAILED", "/no/such/dir");
    // Nothing was left behind by the refused requests.
    let list = json_of(&rt.list().await.unwrap());
    assert_eq!(list, json!({"processes": []}));
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let rt = runtime();
    let cases: &[(&[u8], &str)] = &[
        (b"{not json", "JSON"),
        (br#"{"command": 5}"#, "command"),
        (br#"{"command": ""}"#, "command"),
        (br#"{"command": "echo", "args": "hi"}"#, "args"),
        (br#"{"command": "echo", "stdin_mode": "open"}"#, "stdin_mode"),
        (br#"{"command": "echo", "stdout_mode": "keep"}"#, "stdout_mode"),
        (br#"{"command": "echo", "env": {"A=B": "c"}}"#, "env"),
        (br#"{"command": "echo", "colour": "blue"}"#, "colour"),
        (br#"{"command": "echo", "restart": {}}"#, "restart"),
    ];
    for (body, field) in cases {
        let reply = rt.start(body).await.unwrap();
        assert_error(&reply, 400, "INVALID_REQUEST", field);
    }
    assert_eq!(json_of(&rt.list().await.unwrap()), json!({"processes": []}), "nothing started");
}

#[tokio::test]
async fn output_over_the_cap_keeps_the_newest_lines_and_reports_the_drop() {
    // In memory only: a spill file would keep them all.
    let rt = runtime_with(Limits { capture_bytes: 4096, capture_dir: None, ..Limits::default() });
    let info = start(&rt, json!({"command": "seq", "args": ["1", "5000"]})).await;
    let pid = info["pid"].as_u64().unwrap();
    wait_ended(&rt, pid).await;
    let out = output(&rt, pid, OutputSelector::Stdout).await;
    let lines = out["lines"].as_array().unwrap();
    assert!(lines.len() < 5000, "some lines were dropped");
    assert_eq!(lines.last().unwrap(), "5000", "the newest line is kept");
    let dropped = out["dropped_lines"].as_u64().expect("the drop is reported");
    assert_eq!(dropped + lines.len() as u64, 5000, "kept + dropped = written");
    assert_eq!(out["line_count"].as_u64().unwrap(), lines.len() as u64);
}

/// Children of this test process that are zombies (state Z).
fn zombie_children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 1 && fields[0] == "Z" && fields[1] == me {
            zombies.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    zombies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_zombie_after_200_short_processes() {
    let rt = runtime();
    let mut pids = Vec::new();
    for i in 0..200 {
        let info = start(&rt, json!({"command": "true", "args": [i.to_string()]})).await;
        pids.push(info["pid"].as_u64().unwrap());
    }
    for pid in pids {
        let ended = wait_ended(&rt, pid).await;
        assert_eq!(ended["exit_code"], 0);
    }
    assert_eq!(zombie_children(), Vec::<String>::new());
}

#[tokio::test]
async fn validate_applies_the_defaults() {
    let rt = runtime();
    let reply = rt.validate(br#"{"command": "ls"}"#).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        json_of(&reply),
        json!({"command": "ls", "args": [], "env": {}, "working_dir": null,
               "stdin_mode": "closed", "stdout_mode": "capture", "stderr_mode": "capture"})
    );
}

/// A call that finds every instance of the pool in use waits for one
/// instead of failing to instantiate.
#[tokio::test]
async fn calls_past_the_instance_pool_wait_for_a_slot() {
    let processes = ProcessTable::new(Policy::default(), Limits::default());
    let guest =
        GuestLimits { max_instances: 1, cache_dir: Some(env!("CARGO_TARGET_TMPDIR").into()), ..GuestLimits::default() };
    let rt = Arc::new(GuestRuntime::new(processes, guest).expect("the guest loads"));
    let held = rt.session().await.expect("the only instance");
    let waiting = tokio::spawn({
        let rt = rt.clone();
        async move { rt.validate(br#"{"command":"true"}"#).await }
    });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    if waiting.is_finished() {
        panic!(
            "a second call ran while the pool's only instance was in use: {:?}",
            waiting.await.unwrap().map(|r| r.body)
        );
    }
    drop(held);
    let reply = waiting.await.unwrap().expect("the queued call runs once the slot is free");
    assert_eq!(reply.status, 200, "{}", reply.body);
}
