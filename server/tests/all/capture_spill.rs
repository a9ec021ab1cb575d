//! Captured output spilled to disk: replies and follows read back what
//! memory let go; past the disk caps the oldest output is dropped and
//! counted; the files are private, and gone once their process is
//! forgotten and once the server stops.

use crate::capability_common;
use crate::server;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use capability_common::*;
use sandbox_process::capability::{Limits, ProcessTable};
use sandbox_process::types::OutputSelector;
use serde_json::json;
use server::Server;

/// A fresh directory for a server's spill directory, under the system's
/// temporary directory.
fn parent(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("capture-spill-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The spill directories in `parent`.
fn spill_dirs(parent: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("sandbox-process-capture-"))
        .collect()
}

/// The sizes of the files `pid` has open in `dir`.
fn open_files(pid: u32, dir: &Path) -> Vec<u64> {
    let mut sizes = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else { continue };
        if target.starts_with(dir) {
            sizes.push(std::fs::metadata(fd.path()).map_or(0, |m| m.len()));
        }
    }
    sizes
}

async fn stdout_of(server: &Server, pid: u64, which: &str) -> serde_json::Value {
    let answer = server.get(&format!("/api/v1/processes/{pid}/{which}")).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_and_follows_read_back_from_disk_what_memory_let_go() {
    // 64 KiB in memory per stream: 8,000 of the 200,000 lines.
    let server = Server::start(&["--capture-bytes", "65536"], Some("t"));
    let script = "seq 1 200000; seq 1 100000 >&2";
    let pid = server.start_process(&json!({"command": "sh", "args": ["-c", script]})).await;
    server.wait_ended(pid).await;
    let want = |n: u64| -> Vec<String> { (1..=n).map(|i| i.to_string()).collect() };
    let out = stdout_of(&server, pid, "stdout").await;
    assert!(out.get("dropped_lines").is_none(), "dropped: {}", out["dropped_lines"]);
    assert_eq!(out["lines"], json!(want(200_000)));
    assert_eq!(stdout_of(&server, pid, "stderr").await["lines"], json!(want(100_000)));
    let merged = stdout_of(&server, pid, "output").await;
    assert_eq!((merged["line_count"].as_u64(), merged.get("dropped_lines")), (Some(300_000), None));
    let response =
        server.request(reqwest::Method::GET, &format!("/api/v1/processes/{pid}/stdout/follow")).send().await.unwrap();
    let text = response.text().await.unwrap();
    assert!(!text.contains(": dropped"), "the follow replay missed lines");
    let lines: Vec<String> = server::parse_sse(&text)
        .iter()
        .filter(|f| f.event.as_deref() == Some("output"))
        .map(|f| f.data["line"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(lines, want(200_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_disk_cap_the_oldest_output_goes_and_the_files_go_with_their_process() {
    let parent = parent("cap");
    let cap = 1u64 << 20;
    let args = [
        "--capture-dir",
        parent.to_str().unwrap(),
        "--capture-bytes",
        "65536",
        "--capture-disk-bytes",
        &cap.to_string(),
        "--max-retained-exited",
        "1",
    ];
    let mut server = Server::start(&args, Some("t"));
    let server_pid = server.child.id();
    let dirs = spill_dirs(&parent);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let dir = dirs[0].clone();
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);

    // 3.4 MB of lines: over the 1 MiB of its file.
    let pid = server.start_process(&json!({"command": "seq", "args": ["1", "500000"]})).await;
    server.wait_ended(pid).await;
    // Reaped is not drained: the pipe may still hold the last lines, whose
    // arrival drops the oldest (and ends a reply that was reading them:
    // lapped). Settled within a moment.
    let mut out = stdout_of(&server, pid, "stdout").await;
    for _ in 0..100 {
        let total = out["line_count"].as_u64().unwrap() + out["dropped_lines"].as_u64().unwrap_or(0);
        if total == 500_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        out = stdout_of(&server, pid, "stdout").await;
    }
    let kept = out["line_count"].as_u64().unwrap();
    let dropped = out["dropped_lines"].as_u64().expect("the drop is reported");
    assert_eq!(kept + dropped, 500_000);
    let want: Vec<String> = (dropped + 1..=500_000).map(|i| i.to_string()).collect();
    assert_eq!(out["lines"], json!(want), "the newest are kept, in order");
    // About the file's worth: 1 MiB of lines of 7 bytes (and records).
    assert!(kept > 100_000, "only {kept} lines kept in 1 MiB");
    let files = open_files(server_pid, &dir);
    assert_eq!(files.len(), 1, "one file, for stdout (stderr wrote nothing)");
    assert!(files.iter().all(|&len| len <= cap), "a spill file of {files:?} bytes, over {cap}");
    // Unnamed and private: nothing to see in the directory.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

    // Another process ends: the first is forgotten, and its file with it.
    let other = server.start_process(&json!({"command": "true"})).await;
    server.wait_ended(other).await;
    assert_eq!(server.get(&format!("/api/v1/processes/{pid}")).await.status, 404);
    assert!(eventually(|| open_files(server_pid, &dir).is_empty()).await, "the file outlived its process");

    // Stopped, the server leaves nothing behind.
    assert!(server.terminate().success());
    assert!(spill_dirs(&parent).is_empty(), "{:?}", spill_dirs(&parent));
    std::fs::remove_dir_all(&parent).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_budget_reclaims_ended_files_first_then_the_largest_running_ones() {
    let parent = parent("budget");
    let limits = Limits {
        capture_bytes: 16 << 10,
        capture_dir: Some(parent.clone()),
        capture_disk_total_bytes: 1 << 20,
        ..Limits::default()
    };
    let t = ProcessTable::new(policy(), limits);
    let read = |pid| t.read_output(pid, OutputSelector::Stdout, 0, u32::MAX, Duration::ZERO);
    // A ends with 600 KB on disk: all of it readable.
    let a = t.start(request("seq", &["1", "100000"])).await.unwrap().pid;
    ended(&t, a).await;
    read_all(&t, a, OutputSelector::Stdout).await;
    assert_eq!(read(a).await.unwrap().dropped, 0);
    // B writes as much while running: A's file is reclaimed, B's kept.
    let seq_then_sleep = ["-c", "seq 1 100000; exec sleep 100"];
    let b = t.start(request("sh", &seq_then_sleep)).await.unwrap().pid;
    let last = t.read_output(b, OutputSelector::Stdout, 99_999, 1, BOUND).await.unwrap();
    assert_eq!(texts(&last.lines), ["100000"]);
    let a_now = read(a).await.unwrap();
    assert!(a_now.dropped > 90_000, "only {} of A's lines dropped: its file was not reclaimed", a_now.dropped);
    assert_eq!(a_now.dropped + a_now.lines.len() as u64, 100_000, "memory's newest lines stay");
    assert_eq!(read(b).await.unwrap().dropped, 0);
    // C too: then the largest running file (B's) loses its oldest lines.
    let c = t.start(request("sh", &seq_then_sleep)).await.unwrap().pid;
    let last = t.read_output(c, OutputSelector::Stdout, 99_999, 1, BOUND).await.unwrap();
    assert_eq!(texts(&last.lines), ["100000"]);
    let b_now = read(b).await.unwrap();
    assert!(b_now.dropped > 0, "the largest running file was not cut");
    assert_eq!(b_now.dropped + b_now.lines.len() as u64, 100_000);
    // Over by one read at most, for as long as the pump that read it takes
    // to reclaim.
    let (_, limit) = t.capture_disk();
    assert!(eventually(|| t.capture_disk().0 <= limit).await, "{:?} on disk, over the budget", t.capture_disk());
    for pid in [b, c] {
        t.kill(pid).unwrap();
        ended(&t, pid).await;
    }
    t.shutdown().await;
    drop(t);
    assert!(spill_dirs(&parent).is_empty());
    std::fs::remove_dir_all(&parent).unwrap();
}
