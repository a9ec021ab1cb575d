//! Output held for one consumer (`ProcessTable::start_held`, the `run`
//! stream): every line arrives, in order, with memory bounded, because the
//! child waits for its reader; and it goes on as any process once the
//! reader goes.

use crate::capability_common;
use crate::server;

use std::time::{Duration, Instant};

use capability_common::*;
use sandbox_process::capability::{Limits, ProcessTable};
use sandbox_process::types::{OutputLine, OutputSelector, OutputStream};
use serde_json::json;
use server::Server;

/// Both streams, 100,000 lines of 80 bytes each: 16 MB.
const BOTH_STREAMS: &str = "seq -f '%079g' 1 100000; seq -f '%079g' 1 100000 >&2";

fn padded(i: u64) -> String {
    format!("{i:079}")
}

/// Bytes `pid` has written so far (`wchar` of `/proc/PID/io`).
fn written(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines().find_map(|l| l.strip_prefix("wchar: ")).unwrap().parse().unwrap()
}

/// The kernel's state letter of `pid` (`S`: sleeping, here in a write).
fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
}

/// Checks that `lines` of one stream are 1..=100000, padded, in order.
fn whole(lines: &[String]) {
    assert_eq!(lines.len(), 100_000);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, padded(i as u64 + 1), "line {i}");
    }
}

fn by_stream(lines: &[OutputLine], stream: OutputStream) -> Vec<String> {
    lines.iter().filter(|l| l.stream == stream).map(|l| l.line.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_process_loses_no_line_under_a_small_cap() {
    // 64 KiB per stream: without the hold, all but the last 800 lines of
    // each stream would be dropped before a reader got to them.
    let t = ProcessTable::new(policy(), Limits { capture_bytes: 64 << 10, ..Limits::default() });
    let (info, hold) = t.start_held(request("sh", &["-c", BOTH_STREAMS])).await.unwrap();
    let mut lines = Vec::new();
    let mut cursor = 0;
    loop {
        let chunk = t.read_output(info.pid, OutputSelector::Merged, cursor, 1000, BOUND).await.unwrap();
        // Lines it read may be dropped since (the cap applies to them
        // again); none it has not read: no gap in its cursor.
        assert_eq!(chunk.next_cursor, cursor + chunk.lines.len() as u64, "a line was dropped before it was read");
        lines.extend(chunk.lines);
        cursor = chunk.next_cursor;
        hold.advance(cursor);
        let (used, _) = t.capture_memory();
        assert!(used < 2 << 20, "{used} bytes held for one consumer with a 64 KiB window");
        if chunk.complete {
            break;
        }
    }
    whole(&by_stream(&lines, OutputStream::Stdout));
    whole(&by_stream(&lines, OutputStream::Stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_process_blocks_while_its_consumer_reads_nothing_and_goes_on_once_it_goes() {
    // In memory only, so that once released it drops lines within seconds
    // (a spill file would keep 64 MiB first).
    let t = ProcessTable::new(policy(), Limits { capture_dir: None, ..Limits::default() });
    let (info, hold) = t.start_held(request("seq", &["1", "100000000"])).await.unwrap();
    let pid = info.pid;
    // Nobody reads: the child writes the window (1 MiB) and a pipe's worth,
    // then blocks on its full pipe.
    let blocked = eventually(|| {
        let before = written(pid);
        std::thread::sleep(Duration::from_millis(200));
        written(pid) == before && state(pid) == 'S'
    })
    .await;
    assert!(blocked, "the child kept writing with nobody reading: {} bytes", written(pid));
    let stalled_at = written(pid);
    assert!(stalled_at < 4 << 20, "{stalled_at} bytes written before blocking, for a 1 MiB window");
    let (used, _) = t.capture_memory();
    assert!(used < 2 << 20, "{used} bytes held while the child is blocked");
    // Reading moves the window: the child writes on as much, and blocks
    // again. (30,000 lines of `seq` are 250 KB: more than the pumps read
    // past the window before they stopped.)
    let mut cursor = 0;
    while cursor < 30_000 {
        let chunk = t.read_output(pid, OutputSelector::Merged, cursor, 1000, BOUND).await.unwrap();
        assert_eq!(chunk.lines[0].line, (cursor + 1).to_string());
        cursor = chunk.next_cursor;
        hold.advance(cursor);
    }
    assert!(eventually(|| written(pid) > stalled_at).await, "the child did not resume");
    let resumed = eventually(|| {
        let before = written(pid);
        std::thread::sleep(Duration::from_millis(200));
        written(pid) == before
    })
    .await;
    assert!(resumed && written(pid) < stalled_at + (1 << 20), "the child wrote far more than was read");
    // The consumer goes: the process runs on as any other, dropping its
    // oldest lines past the cap.
    drop(hold);
    let released_at = written(pid);
    assert!(eventually(|| written(pid) > released_at + (16 << 20)).await, "the child did not run on");
    let chunk = t.read_output(pid, OutputSelector::Stdout, 0, 1, Duration::ZERO).await.unwrap();
    assert!(chunk.dropped > 0);
    t.kill(pid).unwrap();
    ended(&t, pid).await;
}

/// Reads a `run` response to its end; returns the output lines per stream
/// and the exit frame.
async fn run_lines(response: reqwest::Response) -> (Vec<String>, Vec<String>, serde_json::Value, String) {
    let text = response.text().await.unwrap();
    let frames = server::parse_sse(&text);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for frame in &frames[1..frames.len() - 1] {
        let line = frame.data["line"].as_str().unwrap().to_owned();
        match frame.data["stream"].as_str().unwrap() {
            "stdout" => out.push(line),
            _ => err.push(line),
        }
    }
    (out, err, frames.last().unwrap().data.clone(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_returns_both_streams_whole() {
    let server = Server::start(&[], Some("t"));
    let response = server
        .request(reqwest::Method::POST, "/api/v1/processes/run")
        .body(json!({"command": "sh", "args": ["-c", BOTH_STREAMS]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (out, err, exit, text) = run_lines(response).await;
    assert_eq!(exit, json!({"exit_code": 0, "signal": null, "reason": "exited"}));
    assert!(!text.contains(": dropped"), "a run stream reported drops");
    whole(&out);
    whole(&err);
}

/// The server's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_client_stops_reading_blocks_its_child_not_the_servers_memory() {
    let server = Server::start(&[], Some("t"));
    let mut response = server
        .request(reqwest::Method::POST, "/api/v1/processes/run")
        .body(json!({"command": "seq", "args": ["1", "100000000"]}).to_string())
        .send()
        .await
        .unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    let start = server::parse_sse(std::str::from_utf8(&first).unwrap());
    let pid = start[0].data["pid"].as_u64().unwrap() as u32;
    let server_rss = rss(server.child.id());
    // The client reads nothing more: once the socket's buffers and the
    // window are full, the child blocks.
    let started = Instant::now();
    let blocked = eventually(|| {
        let before = written(pid);
        std::thread::sleep(Duration::from_millis(300));
        written(pid) == before && state(pid) == 'S'
    })
    .await;
    assert!(blocked, "the child kept writing with its client not reading: {} bytes", written(pid));
    let stalled_at = written(pid);
    eprintln!(
        "blocked after {:.1?} and {} KiB written; server RSS {} -> {} KiB",
        started.elapsed(),
        stalled_at >> 10,
        server_rss >> 10,
        rss(server.child.id()) >> 10
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(written(pid), stalled_at, "the child wrote on");
    assert!(rss(server.child.id()) < server_rss + (16 << 20), "the server's memory grew while its client stalled");
    // Reading one frame a second moves it on by about that much.
    for _ in 0..2 {
        response.chunk().await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(written(pid) - stalled_at < 8 << 20, "the child wrote far more than was read");
    // The client goes: the process runs on, no longer held.
    drop(response);
    let gone_at = written(pid);
    assert!(eventually(|| written(pid) > gone_at + (32 << 20)).await, "the child did not run on");
    assert_eq!(server.delete(&format!("/api/v1/processes/{pid}")).await.status, 204);
}
