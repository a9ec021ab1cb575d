//! The life of real processes through a `ProcessTable`: output capture,
//! stdin, signals, kills of whole groups, waiting.

use crate::capability_common;

use std::time::Duration;

use capability_common::*;
use sandbox_process::types::{
    EnvVar, OutputMode, OutputSelector, OutputStream, ProcessError, ProcessStatus, StdinRefusal, StdinState,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_is_captured_with_timestamps() {
    let t = table();
    let started = t.start(request("echo", &["hello", "world"])).await.unwrap();
    assert_eq!(started.command, "echo");
    assert_eq!(started.args, ["hello", "world"]);
    assert!(!started.stdin_writable);
    let (lines, chunk) = read_all(&t, started.pid, OutputSelector::Merged).await;
    assert_eq!(texts(&lines), ["hello world"]);
    assert_eq!(lines[0].stream, OutputStream::Stdout);
    assert_eq!(chunk.dropped, 0);
    let info = ended(&t, started.pid).await;
    assert_eq!((info.status, info.exit_code, info.signal), (ProcessStatus::Exited, Some(0), None));
    let ended_at = info.ended_at.unwrap();
    // A line is stamped when the host reads it and the end when the reaper
    // sees it; the two tasks race, so a line written before the exit may be
    // stamped after it. Both come after the start.
    assert!(started.started_at <= lines[0].timestamp);
    assert!(started.started_at <= ended_at);
    assert!(started.started_at > 1_600_000_000_000, "milliseconds since the epoch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_and_stderr_are_told_apart_and_merged_in_arrival_order() {
    let t = table();
    // Two pipes are read concurrently, so "arrival order" is only defined
    // for lines that arrive one after the other: the child waits for a line
    // on stdin before each write, and we send it once the previous write
    // has arrived.
    let script = "echo out1; read a; echo err1 >&2; read b; echo out2";
    let p = t.start(piped("sh", &["-c", script])).await.unwrap();
    let mut cursor = 0;
    for expected in ["out1", "err1"] {
        let chunk = t.read_output(p.pid, OutputSelector::Merged, cursor, 10, BOUND).await.unwrap();
        assert_eq!(texts(&chunk.lines), [expected]);
        cursor = chunk.next_cursor;
        t.write_stdin(p.pid, b"\n".to_vec()).await.unwrap();
    }
    let (out, _) = read_all(&t, p.pid, OutputSelector::Stdout).await;
    let (err, _) = read_all(&t, p.pid, OutputSelector::Stderr).await;
    let (merged, _) = read_all(&t, p.pid, OutputSelector::Merged).await;
    assert_eq!(texts(&out), ["out1", "out2"]);
    assert_eq!(texts(&err), ["err1"]);
    assert_eq!(texts(&merged), ["out1", "err1", "out2"]);
    let streams: Vec<_> = merged.iter().map(|l| l.stream).collect();
    assert_eq!(streams, [OutputStream::Stdout, OutputStream::Stderr, OutputStream::Stdout]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cat_returns_what_was_written_to_stdin() {
    let t = table();
    let p = t.start(piped("cat", &[])).await.unwrap();
    assert!(p.stdin_writable);
    t.write_stdin(p.pid, b"first\nsec".to_vec()).await.unwrap();
    t.write_stdin(p.pid, b"ond\n\xffpartial".to_vec()).await.unwrap();
    t.close_stdin(p.pid).unwrap();
    assert!(!t.get(p.pid).unwrap().stdin_writable);
    let (lines, _) = read_all(&t, p.pid, OutputSelector::Stdout).await;
    assert_eq!(texts(&lines), ["first", "second", "\u{fffd}partial"]);
    assert_eq!(ended(&t, p.pid).await.exit_code, Some(0));
    // Closing again is no error (a retried close), writing is.
    t.close_stdin(p.pid).unwrap();
    let written = t.write_stdin(p.pid, b"x".to_vec()).await;
    assert!(
        matches!(written, Err(ProcessError::StdinNotWritable(StdinRefusal { pid, state: StdinState::Closed })) if pid == p.pid),
        "{written:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_of_a_closed_stdin_process_is_not_writable() {
    let t = table();
    let p = t.start(request("sleep", &["100"])).await.unwrap();
    let not_a_pipe = |r: &Result<(), ProcessError>| matches!(r, Err(ProcessError::StdinNotWritable(StdinRefusal { pid, state: StdinState::NotAPipe })) if *pid == p.pid);
    let written = t.write_stdin(p.pid, b"x".to_vec()).await;
    assert!(not_a_pipe(&written), "{written:?}");
    let closed = t.close_stdin(p.pid);
    assert!(not_a_pipe(&closed), "{closed:?}");
    t.kill(p.pid).unwrap();
    ended(&t, p.pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_closed_its_stdin_makes_writes_fail_cleanly() {
    let t = table();
    let p = t.start(piped("sh", &["-c", "exec 0<&-; echo closed; exec sleep 100"])).await.unwrap();
    let first = t.read_output(p.pid, OutputSelector::Stdout, 0, 1, BOUND).await.unwrap();
    assert_eq!(texts(&first.lines), ["closed"]);
    // The child's end is closed now: the write breaks the pipe.
    match t.write_stdin(p.pid, b"data\n".to_vec()).await {
        Err(ProcessError::StdinNotWritable(StdinRefusal { pid, state: StdinState::Closed })) => assert_eq!(pid, p.pid),
        other => panic!("{other:?}"),
    }
    assert!(!t.get(p.pid).unwrap().stdin_writable);
    t.kill(p.pid).unwrap();
    ended(&t, p.pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdin_write_the_child_never_reads_times_out_and_close_still_works() {
    let limits =
        sandbox_process::capability::Limits { stdin_write_timeout: Duration::from_millis(200), ..Default::default() };
    let t = sandbox_process::capability::ProcessTable::new(policy(), limits);
    let p = t.start(piped("sleep", &["100"])).await.unwrap();
    // Far more than a pipe buffer holds.
    match t.write_stdin(p.pid, vec![b'x'; 4 << 20]).await {
        Err(ProcessError::LimitExceeded(msg)) => {
            assert_eq!(msg, "child did not read stdin within 200ms")
        }
        other => panic!("{other:?}"),
    }
    assert!(t.get(p.pid).unwrap().stdin_writable, "a slow child keeps its pipe");
    t.close_stdin(p.pid).unwrap();
    t.kill(p.pid).unwrap();
    ended(&t, p.pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_stdin_ends_a_blocked_write() {
    let t = table();
    let p = t.start(piped("sleep", &["100"])).await.unwrap();
    let writer = {
        let t = t.clone();
        tokio::spawn(async move { t.write_stdin(p.pid, vec![b'x'; 4 << 20]).await })
    };
    t.close_stdin(p.pid).unwrap_or(()); // the writer may not have begun yet
    let written = tokio::time::timeout(BOUND, writer).await.expect("the close woke the writer").unwrap();
    assert!(
        matches!(written, Err(ProcessError::StdinNotWritable(StdinRefusal { state: StdinState::Closed, .. }))),
        "{written:?}"
    );
    assert!(!t.get(p.pid).unwrap().stdin_writable);
    t.kill(p.pid).unwrap();
    ended(&t, p.pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_sleep_as_signaled() {
    let t = table();
    let p = t.start(request("sleep", &["100"])).await.unwrap();
    t.signal(p.pid, libc::SIGTERM).unwrap();
    let info = ended(&t, p.pid).await;
    assert_eq!(info.status, ProcessStatus::Signaled);
    assert_eq!((info.signal, info.exit_code), (Some(15), None));
    assert!(info.ended_at.unwrap() >= info.started_at);
    assert!(matches!(t.signal(p.pid, 15), Err(ProcessError::NotRunning(pid)) if pid == p.pid));
    t.kill(p.pid).expect("killing an ended process succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signals_and_unknown_pids_are_refused() {
    let t = table();
    let p = t.start(request("sleep", &["100"])).await.unwrap();
    for bad in [0, -9, 65] {
        assert!(matches!(t.signal(p.pid, bad), Err(ProcessError::InvalidSignal(s)) if s == bad));
    }
    t.kill(p.pid).unwrap();
    assert_eq!(ended(&t, p.pid).await.signal, Some(libc::SIGKILL));
    let unknown = u32::MAX - 1;
    assert!(matches!(t.get(unknown), Err(ProcessError::NotFound(pid)) if pid == unknown));
    assert!(matches!(t.kill(unknown), Err(ProcessError::NotFound(_))));
    assert!(matches!(t.signal(unknown, 15), Err(ProcessError::NotFound(_))));
    assert!(matches!(t.wait(unknown, Duration::ZERO).await, Err(ProcessError::NotFound(_))));
    assert!(matches!(
        t.read_output(unknown, OutputSelector::Merged, 0, 10, Duration::ZERO).await,
        Err(ProcessError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_every_member_of_the_group() {
    let t = table();
    let p = t.start(request("sh", &["-c", "sleep 100 & sleep 100"])).await.unwrap();
    let sleeps = || live_members(p.pid).iter().filter(|m| m.comm == "sleep").count();
    assert!(eventually(|| sleeps() == 2).await, "both sleeps started: {:?}", live_members(p.pid));
    t.kill(p.pid).unwrap();
    assert_eq!(ended(&t, p.pid).await.signal, Some(libc::SIGKILL));
    assert!(eventually(|| live_members(p.pid).is_empty()).await, "left alive: {:?}", live_members(p.pid));
    t.kill(p.pid).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_exit_still_ends_stray_members() {
    let t = table();
    // The leader exits at once; its background child stays in the group and
    // holds stdout open, so the output is not complete.
    let p = t.start(request("sh", &["-c", "sleep 100 &"])).await.unwrap();
    let info = ended(&t, p.pid).await;
    assert_eq!(info.exit_code, Some(0));
    assert!(!t.read_output(p.pid, OutputSelector::Merged, 0, 10, Duration::ZERO).await.unwrap().complete);
    t.kill(p.pid).unwrap();
    assert!(eventually(|| live_members(p.pid).is_empty()).await, "left alive: {:?}", live_members(p.pid));
    // With the stray member gone, its pipe closes and the output completes.
    let (lines, _) = read_all(&t, p.pid, OutputSelector::Merged).await;
    assert!(lines.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_exit_information() {
    let t = table();
    let p = t.start(request("sh", &["-c", "exit 7"])).await.unwrap();
    let info = ended(&t, p.pid).await;
    assert_eq!((info.status, info.exit_code, info.signal), (ProcessStatus::Exited, Some(7), None));
    assert!(info.ended_at.is_some());
    let s = t.start(request("sleep", &["100"])).await.unwrap();
    let info = t.wait(s.pid, Duration::ZERO).await.unwrap();
    assert_eq!((info.status, info.ended_at), (ProcessStatus::Running, None));
    let info = t.wait(s.pid, Duration::from_millis(50)).await.unwrap();
    assert_eq!(info.status, ProcessStatus::Running);
    t.kill(s.pid).unwrap();
    ended(&t, s.pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_read_wakes_when_a_line_arrives() {
    let t = table();
    let p = t.start(piped("sh", &["-c", "read x; echo got $x; read y"])).await.unwrap();
    let reader = {
        let t = t.clone();
        tokio::spawn(async move { t.read_output(p.pid, OutputSelector::Merged, 0, 10, BOUND).await })
    };
    // Nothing can be printed before this write, so the reader is woken by it.
    t.write_stdin(p.pid, b"hi\n".to_vec()).await.unwrap();
    let chunk = reader.await.unwrap().unwrap();
    assert_eq!(texts(&chunk.lines), ["got hi"]);
    assert!(!chunk.complete);
    assert_eq!(chunk.next_cursor, 1);
    // A short wait with nothing to read returns empty, cursor unchanged.
    let empty = t.read_output(p.pid, OutputSelector::Merged, 1, 10, Duration::from_millis(20)).await.unwrap();
    assert!(empty.lines.is_empty() && !empty.complete && empty.next_cursor == 1);
    t.close_stdin(p.pid).unwrap();
    let (lines, last) = read_all(&t, p.pid, OutputSelector::Merged).await;
    assert_eq!(texts(&lines), ["got hi"]);
    assert!(last.complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarded_streams_capture_nothing_and_complete() {
    let t = table();
    let mut req = request("sh", &["-c", "echo out; echo err >&2"]);
    req.stdout_mode = OutputMode::Discard;
    let p = t.start(req).await.unwrap();
    let (lines, _) = read_all(&t, p.pid, OutputSelector::Merged).await;
    assert_eq!(texts(&lines), ["err"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_gets_exactly_the_policy_and_request_environment() {
    let t = table();
    let mut req = request("env", &[]);
    req.env = vec![EnvVar { name: "FOO".into(), value: "bar baz".into() }];
    let p = t.start(req).await.unwrap();
    let (lines, _) = read_all(&t, p.pid, OutputSelector::Stdout).await;
    let env = texts(&lines);
    // The default base (the user's variables, PATH, LANG) and the request's.
    let mut names: Vec<&str> = env.iter().map(|v| v.split_once('=').unwrap().0).collect();
    names.sort();
    assert_eq!(names, ["FOO", "HOME", "LANG", "LOGNAME", "PATH", "SHELL", "USER"], "{env:?}");
    let path = format!("PATH={}", std::env::var("PATH").unwrap());
    for var in ["FOO=bar baz", "LANG=C.UTF-8", &path] {
        assert!(env.iter().any(|v| v == var), "{var} in {env:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argv0_is_the_requested_command() {
    let t = table();
    let p = t.start(request("cat", &["/proc/self/cmdline"])).await.unwrap();
    let (lines, _) = read_all(&t, p.pid, OutputSelector::Stdout).await;
    assert_eq!(texts(&lines), ["cat\0/proc/self/cmdline\0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_is_in_start_order_and_summary_counts() {
    let t = table();
    let a = t.start(request("sleep", &["100"])).await.unwrap();
    let b = t.start(request("true", &[])).await.unwrap();
    ended(&t, b.pid).await;
    let listed: Vec<u32> = t.list().iter().map(|p| p.pid).collect();
    assert_eq!(listed, [a.pid, b.pid]);
    let summary = t.summary();
    assert_eq!((summary.running_processes, summary.total_processes), (1, 2));
    assert_eq!(summary.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(t.live_count(), 1);
    t.kill(a.pid).unwrap();
    ended(&t, a.pid).await;
    assert_eq!(t.summary().running_processes, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn works_on_a_current_thread_runtime() {
    // `start` blocks briefly on the spawner thread, which must not need this
    // runtime's thread to make progress.
    let t = table();
    let p = t.start(piped("cat", &[])).await.unwrap();
    t.write_stdin(p.pid, b"a\nb\n".to_vec()).await.unwrap();
    t.close_stdin(p.pid).unwrap();
    let (lines, _) = read_all(&t, p.pid, OutputSelector::Merged).await;
    assert_eq!(texts(&lines), ["a", "b"]);
    assert_eq!(ended(&t, p.pid).await.exit_code, Some(0));
    t.shutdown().await;
}
