//! The budget of all captured output together (`Limits::capture_total_bytes`):
//! what is reclaimed first, and memory given back.

use crate::capability_common;

use std::time::Duration;

use capability_common::*;
use sandbox_process::capability::{Limits, ProcessTable};
use sandbox_process::types::{OutputChunk, OutputSelector};

/// 100,000 lines of `seq`: 588,895 bytes of text and line ends, about
/// 614 KB charged with their blocks.
const LINES: u64 = 100_000;

/// Everything kept of `pid`'s stdout, without waiting.
async fn stdout(t: &ProcessTable, pid: u32) -> OutputChunk {
    t.read_output(pid, OutputSelector::Stdout, 0, u32::MAX, Duration::ZERO).await.unwrap()
}

/// Waits until `pid` has written its last line of `seq 1 100000`.
async fn wrote_all(t: &ProcessTable, pid: u32) {
    let chunk = t.read_output(pid, OutputSelector::Stdout, LINES - 1, 1, BOUND).await.unwrap();
    assert_eq!(texts(&chunk.lines), ["100000"], "pid {pid} did not write its last line within {BOUND:?}");
}

/// The kept lines of a `seq 1 100000` are its newest, and with the dropped
/// ones they are all of them.
fn newest_and_counted(chunk: &OutputChunk) {
    let kept = chunk.lines.len() as u64;
    assert_eq!(kept + chunk.dropped, LINES);
    let want: Vec<String> = (chunk.dropped + 1..=LINES).map(|i| i.to_string()).collect();
    assert_eq!(texts(&chunk.lines), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_output_is_reclaimed_first_then_the_largest_running_streams() {
    let limit = 1 << 20;
    // In memory only: with a spill file, what memory gives back stays
    // readable from disk (capture_spill.rs).
    let t = ProcessTable::new(policy(), Limits { capture_total_bytes: limit, capture_dir: None, ..Limits::default() });
    let seq_then_sleep = ["-c", "seq 1 100000; exec sleep 100"];

    // A ends with about 614 KB kept: under the budget, nothing dropped.
    let a = t.start(request("seq", &["1", "100000"])).await.unwrap().pid;
    ended(&t, a).await;
    let (lines, _) = read_all(&t, a, OutputSelector::Stdout).await;
    assert_eq!(lines.len() as u64, LINES);
    let small = t.start(request("sh", &["-c", "echo small; exec sleep 100"])).await.unwrap().pid;

    // B writes as much while running: together over 1 MiB. A's output goes,
    // all of it, and B keeps every line.
    let b = t.start(request("sh", &seq_then_sleep)).await.unwrap().pid;
    wrote_all(&t, b).await;
    let a_now = stdout(&t, a).await;
    assert!(a_now.lines.is_empty() && a_now.complete, "the ended process's output is reclaimed first");
    assert_eq!(a_now.dropped, LINES);
    assert_eq!(stdout(&t, b).await.dropped, 0, "nothing of a running process while ended output remains");

    // C too: no ended output is left, so the largest running stream (B's,
    // as C starts) loses its oldest lines; the small one none.
    let c = t.start(request("sh", &seq_then_sleep)).await.unwrap().pid;
    wrote_all(&t, c).await;
    let b_now = stdout(&t, b).await;
    assert!(b_now.dropped > 0, "the largest running stream was not cut");
    newest_and_counted(&b_now);
    newest_and_counted(&stdout(&t, c).await);
    let small_now = stdout(&t, small).await;
    assert_eq!((texts(&small_now.lines), small_now.dropped), (vec!["small".to_owned()], 0));
    // Over by one read at most, for as long as the pump that read it takes
    // to reclaim.
    assert_eq!(t.capture_memory().1, limit);
    assert!(eventually(|| t.capture_memory().0 <= limit).await, "{:?} held, over the budget", t.capture_memory());

    for pid in [small, b, c] {
        t.kill(pid).unwrap();
        ended(&t, pid).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_process_gives_its_output_memory_back() {
    let t = ProcessTable::new(policy(), Limits { max_retained_exited: 1, ..Limits::default() });
    let a = t.start(request("seq", &["1", "10000"])).await.unwrap().pid;
    ended(&t, a).await;
    read_all(&t, a, OutputSelector::Stdout).await;
    let held = t.capture_memory().0;
    assert!(held >= 48_894, "10,000 lines of seq take 48,894 bytes, {held} charged");
    // Another ends: A is forgotten, and what it held with it.
    let b = t.start(request("true", &[])).await.unwrap().pid;
    ended(&t, b).await;
    assert!(eventually(|| t.capture_memory().0 == 0).await, "{} bytes still charged", t.capture_memory().0);
}
