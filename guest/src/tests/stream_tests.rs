//! Follow and run streams, step by step, with exact frame text.

use super::fake::{Fake, T0};
use crate::api::{self, missed_lines};
use crate::model::*;

fn follow(fake: &Fake, pid: Pid, selector: OutputSelector) -> StreamPosition {
    api::follow_open(fake, &pid.to_string(), selector).expect("follow opens")
}

#[test]
fn follow_open_checks_the_process() {
    let fake = Fake::new();
    let reply = api::follow_open(&fake, "77", OutputSelector::Stdout).unwrap_err();
    assert_eq!(reply.body, r#"{"error":"no process with pid 77","code":"NOT_FOUND"}"#);
    assert_eq!(reply.status, 404);
    let pid = fake.spawn("tail");
    assert_eq!(
        follow(&fake, pid, OutputSelector::Stderr),
        StreamPosition {
            pid,
            selector: OutputSelector::Stderr,
            cursor: 0,
            deadline: None,
            timed_out: false,
            is_run: false,
        }
    );
}

#[test]
fn follow_replays_then_streams_then_ends_with_eof() {
    let fake = Fake::new();
    let pid = fake.spawn("sh");
    fake.emit(pid, OutputStream::Stdout, "hello");
    fake.emit(pid, OutputStream::Stderr, "oops \"quoted\"");
    let position = follow(&fake, pid, OutputSelector::Merged);

    let step = api::stream_next(&fake, position, 250);
    let t = T0;
    assert_eq!(
        step.frames,
        format!(
            "event: output\ndata: {{\"line\":\"hello\",\"timestamp\":{t},\"stream\":\"stdout\"}}\n\n\
             event: output\ndata: {{\"line\":\"oops \\\"quoted\\\"\",\"timestamp\":{t},\"stream\":\"stderr\"}}\n\n"
        )
    );
    assert!(!step.done);
    assert_eq!(step.position.cursor, 2);

    // Nothing new: the step waits (in the host) and sends nothing.
    let idle = api::stream_next(&fake, step.position, 250);
    assert_eq!((idle.frames.as_str(), idle.done), ("", false));
    assert!(fake.calls().last().unwrap().ends_with("cursor=2 max=1024 wait=250"));

    fake.emit(pid, OutputStream::Stdout, "bye");
    fake.exit(pid, 0);
    let last = api::stream_next(&fake, idle.position, 250);
    assert_eq!(
        last.frames,
        format!(
            "event: output\ndata: {{\"line\":\"bye\",\"timestamp\":{},\"stream\":\"stdout\"}}\n\n\
             event: eof\ndata: {{}}\n\n",
            t + 250
        )
    );
    assert!(last.done);
}

#[test]
fn follow_of_one_stream_still_names_it() {
    let fake = Fake::new();
    let pid = fake.spawn("sh");
    fake.emit(pid, OutputStream::Stdout, "out");
    fake.emit(pid, OutputStream::Stderr, "err");
    fake.exit(pid, 1);
    let step = api::stream_next(&fake, follow(&fake, pid, OutputSelector::Stderr), 0);
    assert_eq!(
        step.frames,
        format!(
            "event: output\ndata: {{\"line\":\"err\",\"timestamp\":{T0},\"stream\":\"stderr\"}}\n\n\
             event: eof\ndata: {{}}\n\n"
        )
    );
    assert!(step.done);
}

#[test]
fn follow_error_ends_with_an_error_event() {
    let fake = Fake::new();
    let pid = fake.spawn("sh");
    let position = follow(&fake, pid, OutputSelector::Stdout);
    fake.fail("read_output", ProcessError::Internal("capture lost".into()));
    let step = api::stream_next(&fake, position.clone(), 0);
    assert_eq!(
        step.frames,
        "event: error\ndata: {\"error\":\"internal error: capture lost\",\"code\":\"INTERNAL\"}\n\n"
    );
    assert!(step.done);
    assert_eq!(step.position, position);
}

#[test]
fn follow_reports_lines_it_missed() {
    let fake = Fake::new();
    let pid = fake.spawn("yes");
    for i in 0..5 {
        fake.emit(pid, OutputStream::Stdout, &format!("y{i}"));
    }
    fake.0.borrow_mut().dropped.insert(pid, 3);
    let step = api::stream_next(&fake, follow(&fake, pid, OutputSelector::Stdout), 0);
    assert_eq!(
        step.frames,
        format!(
            ": dropped 3 lines\n\
             event: output\ndata: {{\"line\":\"y3\",\"timestamp\":{T0},\"stream\":\"stdout\"}}\n\n\
             event: output\ndata: {{\"line\":\"y4\",\"timestamp\":{T0},\"stream\":\"stdout\"}}\n\n"
        )
    );
    // Caught up: the buffer still reports 3 dropped, but none were missed now.
    fake.emit(pid, OutputStream::Stdout, "y5");
    let next = api::stream_next(&fake, step.position, 0);
    assert!(!next.frames.contains("dropped"), "{}", next.frames);
}

#[test]
fn missed_lines_counts_only_a_skip() {
    let chunk = |lines: usize, next_cursor, dropped| OutputChunk {
        lines: vec![OutputLine { stream: OutputStream::Stdout, line: String::new(), timestamp: 0 }; lines],
        next_cursor,
        dropped,
        more: false,
        complete: false,
    };
    assert_eq!(missed_lines(0, &chunk(2, 5, 3)), 3);
    assert_eq!(missed_lines(3, &chunk(2, 5, 3)), 0);
    assert_eq!(missed_lines(0, &chunk(0, 9, 9)), 9);
    // No drop reported: whatever the cursor scheme, no comment.
    assert_eq!(missed_lines(0, &chunk(1, 4096, 0)), 0);
}

#[test]
fn run_open_refuses_bad_bodies_without_starting() {
    let fake = Fake::new();
    let reply = api::run_open(&fake, br#"{"command":"ls","timeout":0}"#).unwrap_err();
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("field `timeout`"));
    assert!(fake.calls().is_empty());

    fake.fail("start", ProcessError::SpawnFailed("Permission denied (os error 13)".into()));
    let reply = api::run_open(&fake, br#"{"command":"/etc/passwd"}"#).unwrap_err();
    assert_eq!(
        reply.body,
        r#"{"error":"failed to start the command: Permission denied (os error 13)","code":"SPAWN_FAILED"}"#
    );
}

#[test]
fn run_streams_data_frames_and_an_exit_frame() {
    let fake = Fake::new();
    let open = api::run_open(&fake, br#"{"command":"sh","args":["-c","echo hi"]}"#).unwrap();
    let pid = open.position.pid;
    assert_eq!(open.frames, format!("data: {{\"pid\":{pid},\"started_at\":{T0}}}\n\n"));
    assert!(!open.done);
    assert_eq!(
        open.position,
        StreamPosition {
            pid,
            selector: OutputSelector::Merged,
            cursor: 0,
            deadline: None,
            timed_out: false,
            is_run: true,
        }
    );
    let started = fake.0.borrow().started[0].clone();
    assert_eq!(started.stdin_mode, StdinMode::Closed);
    assert_eq!((started.stdout_mode, started.stderr_mode), (OutputMode::Capture, OutputMode::Capture));

    fake.emit(pid, OutputStream::Stdout, "hi");
    fake.emit(pid, OutputStream::Stderr, "warn");
    let step = api::stream_next(&fake, open.position, 100);
    assert_eq!(
        step.frames,
        format!(
            "data: {{\"line\":\"hi\",\"timestamp\":{T0},\"stream\":\"stdout\"}}\n\n\
             data: {{\"line\":\"warn\",\"timestamp\":{T0},\"stream\":\"stderr\"}}\n\n"
        )
    );
    assert!(!step.done);

    fake.exit(pid, 3);
    let last = api::stream_next(&fake, step.position, 100);
    assert_eq!(last.frames, "data: {\"exit_code\":3,\"signal\":null,\"reason\":\"exited\"}\n\n");
    assert!(last.done);
}

#[test]
fn run_reports_a_signal_it_did_not_send() {
    let fake = Fake::new();
    let open = api::run_open(&fake, br#"{"command":"sleep","timeout":60}"#).unwrap();
    fake.end(open.position.pid, ProcessStatus::Signaled, None, Some(15));
    let last = api::stream_next(&fake, open.position, 0);
    assert_eq!(last.frames, "data: {\"exit_code\":null,\"signal\":15,\"reason\":\"signaled\"}\n\n");
    assert!(last.done);
    assert!(!fake.calls().iter().any(|c| c.starts_with("kill")));
}

#[test]
fn run_timeout_kills_the_group_and_says_timed_out() {
    let fake = Fake::new();
    let open = api::run_open(&fake, br#"{"command":"sleep","args":["100"],"timeout":1.5}"#).unwrap();
    let pid = open.position.pid;
    assert_eq!(open.position.deadline, Some(T0 + 1_500));

    // The waits are clamped to the deadline: 1000 ms, then the 500 left.
    let first = api::stream_next(&fake, open.position, 1000);
    assert_eq!((first.frames.as_str(), first.done, first.position.timed_out), ("", false, false));
    let second = api::stream_next(&fake, first.position, 1000);
    assert_eq!((second.frames.as_str(), second.done), ("", false));
    let reads: Vec<String> = fake.calls().into_iter().filter(|c| c.starts_with("read")).collect();
    assert_eq!(
        reads,
        vec![
            format!("read {pid} merged cursor=0 max=1024 wait=1000"),
            format!("read {pid} merged cursor=0 max=1024 wait=500"),
        ]
    );

    let last = api::stream_next(&fake, second.position, 1000);
    assert!(fake.calls().contains(&format!("kill {pid}")));
    assert!(last.position.timed_out);
    assert_eq!(last.frames, "data: {\"exit_code\":null,\"signal\":9,\"reason\":\"timed_out\"}\n\n");
    assert!(last.done);
}

#[test]
fn run_that_ends_by_itself_after_the_deadline_is_not_killed() {
    let fake = Fake::new();
    let open = api::run_open(&fake, br#"{"command":"true","timeout":0.001}"#).unwrap();
    fake.0.borrow_mut().now += 10;
    fake.exit(open.position.pid, 0);
    let last = api::stream_next(&fake, open.position, 1000);
    assert!(!fake.calls().iter().any(|c| c.starts_with("kill")));
    assert_eq!(last.frames, "data: {\"exit_code\":0,\"signal\":null,\"reason\":\"exited\"}\n\n");
}

#[test]
fn run_waits_for_a_process_reaped_after_its_output() {
    let fake = Fake::new();
    let open = api::run_open(&fake, br#"{"command":"sh"}"#).unwrap();
    let pid = open.position.pid;
    fake.0.borrow_mut().reaped_late.push(pid);
    let last = api::stream_next(&fake, open.position, 0);
    assert!(fake.calls().contains(&format!("wait {pid} 1000")));
    assert_eq!(last.frames, "data: {\"exit_code\":0,\"signal\":null,\"reason\":\"exited\"}\n\n");
    assert!(last.done);
}

#[test]
fn run_error_mid_stream_is_a_data_error_frame() {
    let fake = Fake::new();
    let open = api::run_open(&fake, br#"{"command":"sh"}"#).unwrap();
    fake.fail("read_output", ProcessError::NotFound(open.position.pid));
    let step = api::stream_next(&fake, open.position.clone(), 0);
    assert_eq!(
        step.frames,
        format!("data: {{\"error\":\"no process with pid {}\",\"code\":\"NOT_FOUND\"}}\n\n", open.position.pid)
    );
    assert!(step.done);
}

#[test]
fn run_output_keeps_its_frames_when_the_exit_lookup_fails() {
    let fake = Fake::new();
    let open = api::run_open(&fake, br#"{"command":"sh"}"#).unwrap();
    let pid = open.position.pid;
    fake.emit(pid, OutputStream::Stdout, "last words");
    fake.exit(pid, 0);
    fake.fail("get", ProcessError::Internal("table gone".into()));
    let step = api::stream_next(&fake, open.position, 0);
    assert_eq!(
        step.frames,
        format!(
            "data: {{\"line\":\"last words\",\"timestamp\":{T0},\"stream\":\"stdout\"}}\n\n\
             data: {{\"error\":\"internal error: table gone\",\"code\":\"INTERNAL\"}}\n\n"
        )
    );
    assert!(step.done);
}

#[test]
fn stream_lines_with_newlines_stay_one_data_line() {
    let fake = Fake::new();
    let pid = fake.spawn("printf");
    fake.emit(pid, OutputStream::Stdout, "a\nb\r\n\u{0}");
    let step = api::stream_next(&fake, follow(&fake, pid, OutputSelector::Stdout), 0);
    let data_lines: Vec<&str> = step.frames.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(data_lines.len(), 2, "{:?}", step.frames);
    assert!(data_lines[1].starts_with(r#"data: {"line":"a\nb\r\n\u0000""#));
}
