//! The request/reply functions of `api`, through the fake capability.

use serde_json::Value;

use super::fake::{Fake, T0};
use crate::api;
use crate::model::*;

fn body(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

fn error(reply: &Reply) -> (u16, String, String) {
    let value = body(reply);
    assert_eq!(value.as_object().unwrap().len(), 2, "error body: {}", reply.body);
    (reply.status, value["code"].as_str().unwrap().to_owned(), value["error"].as_str().unwrap().to_owned())
}

#[test]
fn start_replies_201_with_process_info() {
    let fake = Fake::new();
    let reply = api::start(&fake, br#"{"command":"cat","args":["-n"],"stdin_mode":"pipe"}"#);
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.body,
        format!(
            r#"{{"pid":100,"status":"running","stdin_writable":true,"command":"cat","args":["-n"],"started_at":{T0},"exit_code":null,"signal":null,"ended_at":null}}"#
        )
    );
    let started = &fake.0.borrow().started[0];
    assert_eq!((started.stdin_mode, started.stdout_mode), (StdinMode::Pipe, OutputMode::Capture));
}

#[test]
fn invalid_start_never_reaches_the_capability() {
    let fake = Fake::new();
    let reply = api::start(&fake, br#"{"command":"ls","user":"root"}"#);
    assert_eq!(
        error(&reply),
        (400, "INVALID_REQUEST".into(), "field `user` is not supported yet (managed processes)".into())
    );
    assert!(fake.calls().is_empty());
}

#[test]
fn start_failures_map_to_their_statuses() {
    for (failure, status, code) in [
        (ProcessError::SpawnFailed("No such file or directory (os error 2)".into()), 400, "SPAWN_FAILED"),
        (ProcessError::Denied("not allowed".into()), 403, "DENIED"),
        (ProcessError::LimitExceeded("too many processes".into()), 429, "LIMIT_EXCEEDED"),
        (ProcessError::InvalidRequest("working_dir `/nope` does not exist".into()), 400, "INVALID_REQUEST"),
        (ProcessError::Internal("boom".into()), 500, "INTERNAL"),
    ] {
        let fake = Fake::new();
        fake.fail("start", failure);
        let (got_status, got_code, _) = error(&api::start(&fake, br#"{"command":"nope"}"#));
        assert_eq!((got_status, got_code.as_str()), (status, code));
    }
    let fake = Fake::new();
    fake.fail("start", ProcessError::SpawnFailed("No such file or directory (os error 2)".into()));
    let (_, _, message) = error(&api::start(&fake, br#"{"command":"nope"}"#));
    assert!(message.contains("No such file or directory (os error 2)"), "{message}");
}

#[test]
fn list_get_and_not_found() {
    let fake = Fake::new();
    assert_eq!(api::list(&fake), Reply { status: 200, body: r#"{"processes":[]}"#.into() });
    let a = fake.spawn("a");
    let b = fake.spawn("b");
    let list = body(&api::list(&fake));
    let pids: Vec<u64> = list["processes"].as_array().unwrap().iter().map(|p| p["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids, vec![u64::from(a), u64::from(b)]);

    let got = api::get(&fake, &b.to_string());
    assert_eq!((got.status, body(&got)["command"].as_str()), (200, Some("b")));
    assert_eq!(error(&api::get(&fake, "999")), (404, "NOT_FOUND".into(), "no process with pid 999".into()));
}

#[test]
fn bad_references_are_refused_before_any_call() {
    let fake = Fake::new();
    let replies = [
        api::get(&fake, "-1"),
        api::kill(&fake, "0"),
        api::signal(&fake, "abc", br#"{"signal":15}"#),
        api::write_stdin(&fake, "%34%32", b"x"),
        api::close_stdin(&fake, ""),
        api::output(&fake, "99999999999", OutputSelector::Stdout),
    ];
    for reply in &replies {
        let (status, code, message) = error(reply);
        assert_eq!((status, code.as_str()), (400, "INVALID_REQUEST"));
        assert!(message.starts_with("process reference `"), "{message}");
    }
    assert_eq!(api::follow_open(&fake, "4x", OutputSelector::Merged).unwrap_err().status, 400);
    assert!(fake.calls().is_empty());
}

#[test]
fn kill_is_204_with_empty_body() {
    let fake = Fake::new();
    let pid = fake.spawn("sleep");
    assert_eq!(api::kill(&fake, &pid.to_string()), Reply { status: 204, body: String::new() });
    assert_eq!(fake.calls(), vec![format!("kill {pid}")]);
    assert_eq!(api::kill(&fake, "7").status, 404);
}

#[test]
fn signal_checks_reference_then_body_then_calls() {
    let fake = Fake::new();
    let pid = fake.spawn("sleep").to_string();
    let ok = api::signal(&fake, &pid, br#"{"signal":15}"#);
    assert_eq!(ok, Reply { status: 200, body: r#"{"success":true}"#.into() });
    assert_eq!(fake.calls(), vec![format!("signal {pid} 15")]);

    assert_eq!(error(&api::signal(&fake, &pid, br#"{"signal":65}"#)).1, "INVALID_SIGNAL");
    assert_eq!(error(&api::signal(&fake, &pid, b"")).1, "INVALID_REQUEST");
    assert_eq!(fake.calls().len(), 1, "refused bodies must not be sent");

    fake.fail("signal", ProcessError::NotRunning(100));
    assert_eq!(
        error(&api::signal(&fake, &pid, br#"{"signal":9}"#)),
        (400, "NOT_RUNNING".into(), "process 100 is not running".into())
    );
}

#[test]
fn stdin_write_and_close() {
    let fake = Fake::new();
    let pid = fake.spawn("cat");
    let reference = pid.to_string();
    assert_eq!(api::write_stdin(&fake, &reference, b"hello\n\xff"), Reply { status: 204, body: String::new() });
    assert_eq!(fake.0.borrow().stdin[&pid], b"hello\n\xff");
    assert_eq!(api::close_stdin(&fake, &reference), Reply { status: 204, body: String::new() });
    fake.fail("write_stdin", ProcessError::StdinNotWritable(pid, StdinState::Closed));
    assert_eq!(error(&api::write_stdin(&fake, &reference, b"x")).1, "STDIN_NOT_WRITABLE");
    fake.fail("close_stdin", ProcessError::StdinNotWritable(pid, StdinState::NotAPipe));
    assert_eq!(error(&api::close_stdin(&fake, &reference)).1, "STDIN_NOT_WRITABLE");
}

#[test]
fn output_collects_every_line_across_reads() {
    let fake = Fake::new();
    let pid = fake.spawn("seq");
    for i in 0..5000 {
        fake.emit(pid, OutputStream::Stdout, &i.to_string());
    }
    fake.emit(pid, OutputStream::Stderr, "warning");
    let reply = api::output(&fake, &pid.to_string(), OutputSelector::Stdout);
    let value = body(&reply);
    assert_eq!(reply.status, 200);
    assert_eq!(value["line_count"], 5000);
    assert_eq!(value["lines"][4999], "4999");
    assert!(value.get("dropped_lines").is_none());
    assert_eq!(
        fake.calls(),
        vec![
            format!("read {pid} stdout cursor=0 max=4096 wait=0"),
            format!("read {pid} stdout cursor=4096 max=4096 wait=0"),
        ],
        "a short read ends the reply: the reader caught up"
    );
}

/// A child writing faster than the guest reads must not keep the call
/// reading (and holding) lines until the guest runs out of memory: once the
/// buffer drops lines the reader has not reached, the reply ends.
#[test]
fn output_of_a_flood_ends_once_the_writer_laps_the_reader() {
    let fake = Fake::new();
    let pid = fake.spawn("yes");
    for _ in 0..10_000 {
        fake.emit(pid, OutputStream::Stdout, "y");
    }
    // 5,000 new lines (and as many dropped) before every read: the second
    // read finds that lines after the first one's end were dropped.
    fake.0.borrow_mut().flooding.insert(pid, 5_000);
    let reply = api::output(&fake, &pid.to_string(), OutputSelector::Stdout);
    let value = body(&reply);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(fake.calls().len(), 2, "{:?}", fake.calls());
    assert_eq!(value["line_count"], 2 * 4096);
    assert_eq!(value["dropped_lines"], 10_000);
}

/// Merged output of two streams capped apart: the stream that kept less
/// leaves gaps in the merged cursor space. Skipping them is no sign of a
/// writer lapping the reader: the reply goes on to the end.
#[test]
fn merged_output_reads_past_the_gaps_of_a_stream_that_kept_less() {
    let fake = Fake::new();
    let pid = fake.spawn("sh");
    for i in 0..4096 {
        fake.emit(pid, OutputStream::Stdout, &format!("early {i}"));
    }
    for i in 0..4000 {
        fake.emit(pid, OutputStream::Stdout, &format!("out {i}"));
        fake.emit(pid, OutputStream::Stderr, &format!("err {i}"));
    }
    fake.exit(pid, 0);
    fake.0.borrow_mut().stderr_dropped.insert(pid, 2000);
    let reply = api::output(&fake, &pid.to_string(), OutputSelector::Merged);
    let value = body(&reply);
    assert_eq!(value["line_count"], 4096 + 4000 + 2000, "{:?}", fake.calls());
    assert_eq!(value["dropped_lines"], 2000);
    assert_eq!(value["lines"][4096], "out 0");
    assert_eq!(value["lines"][4096 + 2000], "out 2000");
    assert_eq!(value["lines"][4096 + 2001], "err 2000");
    assert_eq!(fake.calls().len(), 3);
}

#[test]
fn output_selectors_and_dropped_lines() {
    let fake = Fake::new();
    let pid = fake.spawn("sh");
    fake.emit(pid, OutputStream::Stdout, "one");
    fake.emit(pid, OutputStream::Stderr, "two");
    fake.emit(pid, OutputStream::Stdout, "three");
    let reference = pid.to_string();
    assert_eq!(
        api::output(&fake, &reference, OutputSelector::Merged).body,
        format!(r#"{{"pid":{pid},"lines":["one","two","three"],"line_count":3}}"#)
    );
    assert_eq!(
        api::output(&fake, &reference, OutputSelector::Stderr).body,
        format!(r#"{{"pid":{pid},"lines":["two"],"line_count":1}}"#)
    );
    fake.0.borrow_mut().dropped.insert(pid, 2);
    assert_eq!(
        api::output(&fake, &reference, OutputSelector::Merged).body,
        format!(r#"{{"pid":{pid},"lines":["three"],"line_count":1,"dropped_lines":2}}"#)
    );
    assert_eq!(api::output(&fake, "12345", OutputSelector::Merged).status, 404);
}

#[test]
fn health_info_and_validate() {
    let fake = Fake::new();
    fake.spawn("a");
    assert_eq!(api::health(), Reply { status: 200, body: r#"{"healthy":true}"#.into() });
    assert_eq!(
        api::info(&fake).body,
        r#"{"version":"0.1.0","uptime_secs":12,"running_processes":1,"total_processes":1}"#
    );
    assert_eq!(
        api::validate(br#"{"command":"ls","stdout_mode":"discard"}"#),
        Reply {
            status: 200,
            body: r#"{"command":"ls","args":[],"env":{},"working_dir":null,"stdin_mode":"closed","stdout_mode":"capture","stderr_mode":"capture"}"#
                .replace(r#""stdout_mode":"capture""#, r#""stdout_mode":"discard""#)
        }
    );
    assert_eq!(error(&api::validate(b"[]")).0, 400);
}

#[test]
fn normalize_is_what_the_validator_exports() {
    assert_eq!(api::normalize(br#"{"command":"ls"}"#).unwrap(), api::validate(br#"{"command":"ls"}"#).body);
    assert_eq!(
        api::normalize(br#"{"command":""}"#).unwrap_err(),
        r#"{"error":"field `command` must not be empty","code":"INVALID_REQUEST"}"#
    );
}
