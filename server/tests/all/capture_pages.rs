//! Output replies of any size are sent in pages: all of the output, with
//! the server's memory flat while it goes out.

use crate::server;

use serde_json::{Value, json};
use server::Server;

/// A field of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Starts `script`, waits for its end, then GETs its stdout: the reply,
/// and the server's peak RSS (KiB) before and after the GET.
async fn big_stdout(server: &Server, script: &str) -> (Value, u64, u64) {
    let pid = server.start_process(&json!({"command": "sh", "args": ["-c", script]})).await;
    let info = server.wait_ended(pid).await;
    assert_eq!(info["exit_code"], 0, "{info}");
    let before = status_kib(server.child.id(), "VmHWM:");
    let answer = server.get(&format!("/api/v1/processes/{pid}/stdout")).await;
    assert_eq!(answer.status, 200, "{}", &answer.text[..answer.text.len().min(300)]);
    assert_eq!(answer.headers["content-type"], "application/json");
    (answer.json(), before, status_kib(server.child.id(), "VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_of_a_million_lines_is_whole_with_the_default_settings() {
    let server = Server::start(&[], Some("t"));
    let (reply, before, after) = big_stdout(&server, "seq 1 1000000").await;
    eprintln!("GET stdout of seq 1 1000000: server peak RSS {before} -> {after} KiB");
    assert!(reply.get("dropped_lines").is_none(), "dropped {}", reply["dropped_lines"]);
    assert_eq!(reply["line_count"], 1_000_000);
    let lines = reply["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1_000_000);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line.as_str().unwrap(), (i + 1).to_string(), "line {i}");
    }
    // 6.9 MB of output, 8.9 MB of JSON: sent a page at a time.
    assert!(after - before < 24 << 10, "the server's peak grew by {} KiB for the reply", after - before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_of_64_mib_goes_out_in_pages_with_the_servers_memory_flat() {
    let server = Server::start(&["--capture-disk-bytes", &(128u64 << 20).to_string()], Some("t"));
    // 838,860 lines of 80 bytes and a last one of 64: 64 MiB.
    let line = "0123456789".repeat(8)[..79].to_owned();
    let script = format!("yes {line} | head -c {}", 64 << 20);
    let (reply, before, after) = big_stdout(&server, &script).await;
    eprintln!("GET stdout of 64 MiB: server peak RSS {before} -> {after} KiB");
    assert!(reply.get("dropped_lines").is_none());
    assert_eq!(reply["line_count"], 838_861);
    let lines = reply["lines"].as_array().unwrap();
    assert!(lines[..838_860].iter().all(|l| l.as_str() == Some(line.as_str())));
    assert_eq!(lines[838_860].as_str().unwrap(), &line[..64]);
    // Past the guest's 64 MiB of memory, and four times the memory cap of a
    // stream: built whole, it could not be answered at all.
    assert!(after - before < 24 << 10, "the server's peak grew by {} KiB for the reply", after - before);
}
