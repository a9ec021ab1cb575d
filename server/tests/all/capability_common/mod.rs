//! Helpers shared by the `capability_*` integration tests: requests, a
//! table with a scratch default directory, reading output to the end, and
//! looking at process groups through `/proc`.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::time::Duration;

use sandbox_process::capability::{Limits, Policy, ProcessTable};
use sandbox_process::types::{
    OutputChunk, OutputLine, OutputMode, OutputSelector, ProcessInfo, ProcessStatus, StartRequest, StdinMode,
};

/// The bound on every wait in the tests: generous, since a loaded machine
/// is slow, and never part of an assertion.
pub const BOUND: Duration = Duration::from_secs(30);

/// A request with the API's defaults: stdin closed, both streams captured.
pub fn request(command: &str, args: &[&str]) -> StartRequest {
    StartRequest {
        command: command.to_owned(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![],
        working_dir: None,
        stdin_mode: StdinMode::Closed,
        stdout_mode: OutputMode::Capture,
        stderr_mode: OutputMode::Capture,
    }
}

/// `request` with stdin a pipe.
pub fn piped(command: &str, args: &[&str]) -> StartRequest {
    StartRequest { stdin_mode: StdinMode::Pipe, ..request(command, args) }
}

/// The default policy, starting in the system's temporary directory.
pub fn policy() -> Policy {
    Policy { default_working_dir: std::env::temp_dir(), ..Policy::default() }
}

/// A table with the default policy and limits.
pub fn table() -> ProcessTable {
    let table = ProcessTable::new(policy(), Limits::default());
    expect_containment(&table);
    table
}

/// Whether this run must have cgroup containment: `.ci/run` sets
/// `SANDBOX_PROCESS_EXPECT_CGROUPS=1` where the machine has a writable
/// cgroup v2, so that a test fails there instead of quietly taking its
/// process-group branch (which would leave the cgroup code untested).
pub fn cgroups_expected() -> bool {
    std::env::var_os("SANDBOX_PROCESS_EXPECT_CGROUPS").is_some_and(|v| v == "1")
}

/// Fails when cgroups are expected and `table` fell back to process groups.
pub fn expect_containment(table: &ProcessTable) {
    if cgroups_expected() {
        assert_eq!(
            table.containment(),
            sandbox_process::capability::Containment::Cgroup,
            "SANDBOX_PROCESS_EXPECT_CGROUPS=1 but the table fell back to process groups ({table:?})"
        );
    }
}

/// Waits (bounded) for `pid` to end and returns its info.
pub async fn ended(table: &ProcessTable, pid: u32) -> ProcessInfo {
    let info = table.wait(pid, BOUND).await.unwrap();
    assert_ne!(info.status, ProcessStatus::Running, "pid {pid} did not end within {BOUND:?}");
    info
}

/// Every line of `selector` until the output is complete, and the last
/// chunk read.
pub async fn read_all(table: &ProcessTable, pid: u32, selector: OutputSelector) -> (Vec<OutputLine>, OutputChunk) {
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut lines = Vec::new();
    let mut cursor = 0;
    loop {
        let chunk = table.read_output(pid, selector, cursor, 1000, BOUND).await.unwrap();
        lines.extend(chunk.lines.iter().cloned());
        cursor = chunk.next_cursor;
        if chunk.complete {
            return (lines, chunk);
        }
        assert!(tokio::time::Instant::now() < deadline, "output of {pid} not complete within {BOUND:?}");
    }
}

/// The text of each line.
pub fn texts(lines: &[OutputLine]) -> Vec<String> {
    lines.iter().map(|l| l.line.clone()).collect()
}

/// One process as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone)]
pub struct Stat {
    pub pid: u32,
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
}

/// Every process on the machine (those that vanish while we look are skipped).
pub fn processes() -> Vec<Stat> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(PathBuf::from("/proc").join(pid.to_string()).join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parens.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let (Some(state), Some(ppid), Some(pgrp)) = (rest.first(), rest.get(1), rest.get(2)) else {
            continue;
        };
        out.push(Stat {
            pid,
            comm,
            state: state.chars().next().unwrap_or('?'),
            ppid: ppid.parse().unwrap_or(0),
            pgrp: pgrp.parse().unwrap_or(0),
        });
    }
    out
}

/// The members of process group `pgid` that are not zombies (a zombie has
/// run its course; reaping it is its parent's job).
pub fn live_members(pgid: u32) -> Vec<Stat> {
    processes().into_iter().filter(|p| p.pgrp == pgid && p.state != 'Z').collect()
}

/// Polls `check` (every 20 ms, at most `BOUND`) until it holds; false if it
/// never did. For conditions only the OS knows, with no event to wait on.
pub async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + BOUND;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}
