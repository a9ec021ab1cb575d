//! Load and soak, bounded, on loopback, against the real server binary:
//! many short processes at a fixed concurrency (no error, no zombie, the
//! server's resident memory back to where it was), and many concurrent
//! follow streams on one chatty process (each gets every line, in order).
//!
//! Sizes: `SOAK=1` runs the full soak (10,000 processes after a warm-up of
//! 2,000); without it a CI-sized one (1,000 after 1,100). `SOAK_PROCESSES=N`
//! sets the measured count directly.

use crate::server;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use server::Server;

/// Concurrent clients of the soak.
const CONCURRENCY: usize = 32;
/// Every wait is bounded by this; none is part of an assertion.
const BOUND: Duration = Duration::from_secs(120);

/// (warm-up, measured) process counts.
fn soak_size() -> (usize, usize) {
    if let Some(n) = std::env::var("SOAK_PROCESSES").ok().and_then(|v| v.parse().ok()) {
        return (2_000, n);
    }
    if std::env::var_os("SOAK").is_some_and(|v| v != "0") { (2_000, 10_000) } else { (1_100, 1_000) }
}

/// `count` starts of `true`, `CONCURRENCY` at a time. Returns the statuses
/// other than 201, with how often each came.
async fn start_many(s: &Arc<Server>, count: usize) -> BTreeMap<String, usize> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (s, next) = (s.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut errors = BTreeMap::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let sent = s.request(Method::POST, "/api/v1/processes").body(r#"{"command":"true"}"#).send().await;
                let outcome = match sent {
                    Ok(response) if response.status() == 201 => {
                        // The reply describes the process as started, even
                        // one that has already exited by the time it is sent.
                        let info: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
                        if info["status"] == "running" && info["exit_code"].is_null() {
                            continue;
                        }
                        format!("201 with status {}", info["status"])
                    }
                    Ok(response) => format!("{} {}", response.status(), response.text().await.unwrap_or_default()),
                    Err(e) => format!("transport: {e}"),
                };
                *errors.entry(outcome).or_insert(0) += 1;
            }
            errors
        }));
    }
    let mut errors = BTreeMap::new();
    for worker in workers {
        for (error, n) in worker.await.unwrap() {
            *errors.entry(error).or_insert(0) += n;
        }
    }
    errors
}

/// Waits until the server reports no running process.
async fn all_reaped(s: &Server) {
    let deadline = Instant::now() + BOUND;
    loop {
        let info = s.get("/api/v1/info").await.json();
        if info["running_processes"] == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "processes still running after {BOUND:?}: {info}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// VmRSS of `pid`, in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// How many file descriptors `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// The children of `parent` that are zombies.
fn zombie_children(parent: u32) -> Vec<u32> {
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 1 && fields[0] == "Z" && fields[1] == parent.to_string() {
            zombies.push(pid);
        }
    }
    zombies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_short_processes_leave_no_error_no_zombie_and_no_memory_behind() {
    let (warmup, count) = soak_size();
    let s = Arc::new(Server::start(&[], None));
    let server_pid = s.child.id();

    // Warm-up: the allocator's and the retained list's steady state (the
    // server keeps the last 1024 ended processes) become the baseline.
    let started = Instant::now();
    let errors = start_many(&s, warmup).await;
    assert!(errors.is_empty(), "warm-up errors: {errors:?}");
    all_reaped(&s).await;
    let warmup_time = started.elapsed();
    let baseline = rss_kb(server_pid);
    let baseline_fds = open_fds(server_pid);

    let started = Instant::now();
    let errors = start_many(&s, count).await;
    let start_time = started.elapsed();
    assert!(errors.is_empty(), "errors among {count} starts: {errors:?}");
    all_reaped(&s).await;
    let total_time = started.elapsed();
    let after = rss_kb(server_pid);
    let after_fds = open_fds(server_pid);

    let info = s.get("/api/v1/info").await.json();
    assert_eq!(info["total_processes"], (warmup + count) as u64);
    let listed = s.get("/api/v1/processes").await.json()["processes"].as_array().unwrap().len();
    assert_eq!(listed, 1024, "the server retains the last 1024 ended processes");
    let zombies = zombie_children(server_pid);
    assert!(zombies.is_empty(), "zombie children of the server: {zombies:?}");
    let rate = count as f64 / start_time.as_secs_f64();
    eprintln!(
        "soak: warm-up {warmup} in {warmup_time:.1?}; {count} processes started in {start_time:.1?} ({rate:.0}/s), all reaped after {total_time:.1?}; server VmRSS {baseline} kB -> {after} kB ({:+.1}%), open fds {baseline_fds} -> {after_fds}",
        (after as f64 - baseline as f64) * 100.0 / baseline as f64
    );
    assert!(after * 10 <= baseline * 11, "server RSS grew from {baseline} kB to {after} kB (more than 10%)");
    // Pipes of ended processes are closed. (The client's keep-alive
    // connections, at most one per worker, are counted both times.)
    assert!(after_fds <= baseline_fds + CONCURRENCY, "the server's open fds grew from {baseline_fds} to {after_fds}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_followers_of_one_chatty_process_each_get_every_line_in_order() {
    const FOLLOWERS: usize = 100;
    const LINES: usize = 5_000;
    let s = Arc::new(Server::start(&[], None));
    // The process waits for a go on stdin, so that every follower is
    // attached before the first line and receives the lines live.
    let script = format!("read go; i=0; while [ $i -lt {LINES} ]; do echo \"line $i\"; i=$((i+1)); done");
    let pid = s.start_process(&json!({"command": "sh", "args": ["-c", script], "stdin_mode": "pipe"})).await;
    let mut streams = Vec::new();
    for i in 0..FOLLOWERS {
        // Both kinds of follow: the merged one names the stream.
        let path = if i % 2 == 0 { "output" } else { "stdout" };
        let response = s.request(Method::GET, &format!("/api/v1/processes/{pid}/{path}/follow")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        streams.push(tokio::spawn(async move { response.text().await }));
    }
    let go = s.post(&format!("/api/v1/processes/{pid}/stdin"), "go\n").await;
    assert_eq!(go.status, 204);
    let expected: Vec<String> = (0..LINES).map(|i| format!("line {i}")).collect();
    for (i, stream) in streams.into_iter().enumerate() {
        let text = tokio::time::timeout(BOUND, stream).await.expect("the stream ended").unwrap().unwrap();
        assert!(!text.contains(": dropped"), "follower {i} missed lines");
        let frames = server::parse_sse(&text);
        let (last, outputs) = frames.split_last().expect("frames");
        assert_eq!((last.event.as_deref(), &last.data), (Some("eof"), &json!({})), "follower {i} ends with eof");
        let lines: Vec<&str> = outputs.iter().map(|f| f.data["line"].as_str().unwrap()).collect();
        assert!(outputs.iter().all(|f| f.event.as_deref() == Some("output")));
        assert_eq!(lines.len(), LINES, "follower {i} got every line");
        assert!(lines.iter().zip(&expected).all(|(a, b)| a == b), "follower {i} got the lines in order");
    }
    assert_eq!(s.wait_ended(pid).await["exit_code"], 0);
}
