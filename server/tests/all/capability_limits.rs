//! Limits and the end of the table: bounded capture under a flood, the
//! live-process limit, retention of ended processes, shutdown and drop.

use crate::capability_common;

use std::time::Duration;

use capability_common::*;
use sandbox_process::capability::{BLOCK_COST_BYTES, LINE_COST_BYTES};
use sandbox_process::capability::{Limits, ProcessTable};
use sandbox_process::types::{OutputSelector, ProcessError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_stays_under_the_cap_and_keeps_the_newest_lines() {
    let cap = 64 << 10;
    // In memory only: with a spill file the lines memory lets go stay
    // readable (capture_spill.rs).
    let t = ProcessTable::new(policy(), Limits { capture_bytes: cap, capture_dir: None, ..Limits::default() });
    let p = t.start(request("yes", &[])).await.unwrap();
    // Read until the cap has overflowed (a full cap holds ~1000 lines of `y`).
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut cursor = 0;
    loop {
        let chunk = t.read_output(p.pid, OutputSelector::Stdout, cursor, 100, BOUND).await.unwrap();
        cursor = chunk.next_cursor;
        if chunk.dropped > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing dropped within {BOUND:?}");
    }
    t.kill(p.pid).unwrap();
    ended(&t, p.pid).await;
    // Once the output is complete nothing changes any more: one read from
    // the start then sees everything that is retained.
    read_all(&t, p.pid, OutputSelector::Stdout).await;
    let last = t.read_output(p.pid, OutputSelector::Stdout, 0, u32::MAX, Duration::ZERO).await.unwrap();
    assert!(last.complete);
    let lines = &last.lines;
    assert!(last.dropped > 0);
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l.line == "y"));
    let retained: usize = lines.iter().map(|l| l.line.len() + LINE_COST_BYTES).sum::<usize>() + BLOCK_COST_BYTES;
    assert!(retained <= cap, "{retained} bytes retained, cap {cap}");
    // The cap holds text, not bookkeeping: most of it is lines of `y`.
    assert!(retained > cap / 2, "only {retained} bytes of lines retained under a cap of {cap}");
    // Every line is numbered: the retained ones are exactly the newest.
    assert_eq!(last.next_cursor, last.dropped + lines.len() as u64);
    // The old cursor, long overtaken, resumes at the oldest retained line.
    let resumed = t.read_output(p.pid, OutputSelector::Stdout, 0, 1, Duration::ZERO).await.unwrap();
    assert_eq!(resumed.next_cursor, last.dropped + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_process_limit_is_enforced_and_freed_by_exit() {
    let t = ProcessTable::new(policy(), Limits { max_processes: 2, ..Limits::default() });
    let a = t.start(request("sleep", &["100"])).await.unwrap();
    let b = t.start(request("sleep", &["100"])).await.unwrap();
    match t.start(request("true", &[])).await {
        Err(ProcessError::LimitExceeded(msg)) => {
            assert_eq!(msg, "2 processes are running: the host's limit is 2")
        }
        other => panic!("{other:?}"),
    }
    t.kill(a.pid).unwrap();
    ended(&t, a.pid).await;
    let c = t.start(request("true", &[])).await.unwrap();
    ended(&t, c.pid).await;
    t.kill(b.pid).unwrap();
    ended(&t, b.pid).await;
    assert_eq!(t.live_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_processes_are_retained_up_to_the_limit_oldest_forgotten_first() {
    let t = ProcessTable::new(policy(), Limits { max_retained_exited: 2, ..Limits::default() });
    let running = t.start(request("sleep", &["100"])).await.unwrap();
    let mut ended_pids = Vec::new();
    for _ in 0..3 {
        let p = t.start(request("true", &[])).await.unwrap();
        ended(&t, p.pid).await;
        ended_pids.push(p.pid);
    }
    assert!(matches!(t.get(ended_pids[0]), Err(ProcessError::NotFound(_))));
    let listed: Vec<u32> = t.list().iter().map(|p| p.pid).collect();
    assert_eq!(listed, [running.pid, ended_pids[1], ended_pids[2]], "running ones are never evicted");
    t.kill(running.pid).unwrap();
    ended(&t, running.pid).await;
    assert_eq!(t.list().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_every_group_and_refuses_new_starts() {
    let t = table();
    let a = t.start(request("sh", &["-c", "sleep 100 & sleep 100"])).await.unwrap();
    let b = t.start(piped("cat", &[])).await.unwrap();
    assert!(eventually(|| live_members(a.pid).len() >= 2).await);
    t.shutdown().await;
    assert_eq!(t.live_count(), 0, "shutdown waits for the reaping");
    for pid in [a.pid, b.pid] {
        assert_eq!(t.get(pid).unwrap().signal, Some(libc::SIGKILL));
        assert!(eventually(|| live_members(pid).is_empty()).await, "left alive: {:?}", live_members(pid));
    }
    assert!(matches!(t.start(request("true", &[])).await, Err(ProcessError::Internal(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_table_kills_every_group() {
    let t = table();
    let a = t.start(request("sh", &["-c", "sleep 100 & sleep 100"])).await.unwrap();
    let clone = t.clone();
    assert!(eventually(|| live_members(a.pid).len() >= 2).await);
    drop(t);
    // A clone keeps the table, and its processes, alive.
    assert_eq!(clone.get(a.pid).unwrap().status, sandbox_process::types::ProcessStatus::Running);
    drop(clone);
    assert!(eventually(|| live_members(a.pid).is_empty()).await, "left alive: {:?}", live_members(a.pid));
}

#[test]
fn start_outside_a_runtime_is_an_internal_error() {
    let t = table();
    // Polled once, without a runtime: it must answer at once, not wait.
    let start = std::pin::pin!(t.start(request("true", &[])));
    let polled = start.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
    assert!(matches!(polled, std::task::Poll::Ready(Err(ProcessError::Internal(m))) if m.contains("tokio runtime")));
}

/// The live processes whose command line holds `marker`.
fn running_with(marker: &str) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter(|p| {
            std::fs::read(format!("/proc/{}/cmdline", p.pid))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == marker.as_bytes()))
        })
        .map(|p| p.pid)
        .collect()
}

/// A caller that stops waiting while the spawner thread starts its child
/// (a dropped request, a timeout) must not leak the live slot, nor leave
/// the child running unseen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_given_up_while_spawning_gives_its_slot_back_and_ends_its_child() {
    let t = ProcessTable::new(policy(), Limits { max_processes: 1, ..Limits::default() });
    // A sleep no other test starts: 100.<our pid> seconds.
    let marker = format!("100.{}", std::process::id());
    let mut given_up = 0;
    // The first poll hands the spawn over and is almost always still
    // waiting for it when the zero timeout fires; a start that won the race
    // is ended and tried again.
    for _ in 0..20 {
        match tokio::time::timeout(Duration::ZERO, t.start(request("sleep", &[&marker]))).await {
            Err(_) => given_up += 1,
            Ok(started) => {
                let p = started.unwrap();
                t.kill(p.pid).unwrap();
                ended(&t, p.pid).await;
            }
        }
        if given_up == 3 {
            break;
        }
    }
    assert!(given_up > 0, "no start was still spawning at its first poll");
    assert_eq!(t.live_count(), 0, "a given-up start keeps no slot");
    assert!(eventually(|| running_with(&marker).is_empty()).await, "left running: {:?}", running_with(&marker));
    // The slot is really free: the one process the limit allows starts.
    let p = t.start(request("true", &[])).await.unwrap();
    assert_eq!(ended(&t, p.pid).await.exit_code, Some(0));
}
