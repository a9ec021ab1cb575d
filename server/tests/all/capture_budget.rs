//! The server's memory under a flood of output from many processes: the
//! capture budget (`--capture-total-bytes`) bounds it, and every output
//! endpoint reports what was dropped to stay under it.

use crate::server;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server::Server;

/// Processes, each writing `LINES` lines of 80 bytes (8 MB) to stdout and
/// as many to stderr, at the same time.
const PROCESSES: usize = 150;
const LINES: u64 = 100_000;
/// The budget the server gets: far below the 2.4 GB written.
const BUDGET: u64 = 64 << 20;
/// What the server takes besides captured output: its own start (30 MiB
/// in a debug build once it answered a request: the engine, the compiled
/// guest, the tokio runtime), the pipes and tasks of 150 processes, the
/// allocator's slack; the output replies, sent in pages, add a page's worth.
/// Measured: peaks of 98 to 105 MiB after the flood, 34 to 41 MiB over the
/// budget, and 1 MiB more after the replies.
const OVERHEAD: u64 = 64 << 20;

/// Line `i` of a stream: the number, zero-padded to 79 characters.
fn line(i: u64) -> String {
    format!("{i:079}")
}

/// A field of `/proc/PID/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The lines a follow stream delivered, and those it was told it missed
/// (the `: dropped N lines` comments).
fn follow_counts(text: &str) -> (u64, u64) {
    let frames = server::parse_sse(text).iter().filter(|f| f.event.as_deref() == Some("output")).count() as u64;
    let missed =
        text.lines().filter_map(|l| l.strip_prefix(": dropped ")?.strip_suffix(" lines")?.parse::<u64>().ok()).sum();
    (frames, missed)
}

/// `GET .../{which}`: the lines kept are the newest of the stream, and
/// with `dropped_lines` they are every line written.
async fn check_output(server: &Server, pid: u64, which: &str, total: u64) -> u64 {
    let answer = server.get(&format!("/api/v1/processes/{pid}/{which}")).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let body = answer.json();
    let kept = body["line_count"].as_u64().unwrap();
    let dropped = body["dropped_lines"].as_u64().unwrap_or(0);
    assert_eq!(kept + dropped, total, "{which} of {pid}: {kept} kept + {dropped} dropped");
    assert!(dropped > 0, "{which} of {pid}: nothing reported dropped");
    if which != "output" {
        let lines: Vec<&str> = body["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        let want: Vec<String> = (dropped + 1..=total).map(line).collect();
        assert!(lines == want, "{which} of {pid}: the kept lines are not the newest");
    }
    dropped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_many_processes_stays_within_the_budget_and_every_endpoint_reports_the_drops() {
    // In memory only: this is about the memory budget (spilling to disk
    // would keep all 2.4 GB but for the disk budget: capture_spill.rs).
    let server = Server::start(&["--capture-total-bytes", &BUDGET.to_string(), "--capture-disk-bytes", "0"], Some("t"));
    let server_pid = server.child.id();
    let started = Instant::now();
    let script = format!("seq -f '%079g' 1 {LINES} & seq -f '%079g' 1 {LINES} >&2; wait");
    let mut pids = Vec::new();
    for _ in 0..PROCESSES {
        pids.push(server.start_process(&json!({"command": "sh", "args": ["-c", script]})).await);
    }
    for &pid in &pids {
        let info = server.wait_ended_within(pid, Duration::from_secs(600)).await;
        assert_eq!(info["exit_code"], 0, "{info}");
    }
    let flood = started.elapsed();
    let flood_peak = status_bytes(server_pid, "VmHWM:");

    let mut dropped = 0;
    for &pid in &pids {
        dropped += check_output(&server, pid, "stdout", LINES).await;
        dropped += check_output(&server, pid, "stderr", LINES).await;
        check_output(&server, pid, "output", 2 * LINES).await;
        for (which, total) in [("stdout", LINES), ("output", 2 * LINES)] {
            let response = server
                .request(reqwest::Method::GET, &format!("/api/v1/processes/{pid}/{which}/follow"))
                .send()
                .await
                .unwrap();
            let text = response.text().await.unwrap();
            let (frames, missed) = follow_counts(&text);
            assert_eq!(frames + missed, total, "{which}/follow of {pid}: {frames} lines + {missed} missed");
            assert!(missed > 0, "{which}/follow of {pid}: no drop reported");
        }
    }
    let peak = status_bytes(server_pid, "VmHWM:");
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    eprintln!(
        "{PROCESSES} processes wrote {} MB in {flood:.1?}; the server's peak RSS was {:.1} MiB after the flood \
         (budget {} MiB + overhead {} MiB), {:.1} MiB after the replies; {dropped} of {} lines dropped",
        PROCESSES as u64 * 2 * LINES * 80 / 1_000_000,
        mib(flood_peak),
        BUDGET >> 20,
        OVERHEAD >> 20,
        mib(peak),
        PROCESSES as u64 * 2 * LINES,
    );
    assert!(flood_peak <= BUDGET + OVERHEAD, "peak RSS {flood_peak} bytes, over the budget plus overhead");
    assert!(peak <= BUDGET + OVERHEAD, "peak RSS {peak} bytes with the replies, over the budget plus overhead");
}

impl Server {
    /// Polls `GET /processes/{pid}` until the process has ended.
    async fn wait_ended_within(&self, pid: u64, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let info = self.get(&format!("/api/v1/processes/{pid}")).await.json();
            if info["status"] != "running" {
                return info;
            }
            assert!(Instant::now() < deadline, "process {pid} did not end within {limit:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
