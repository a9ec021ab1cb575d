//! Faults: a guest that traps, loops or runs out of memory fails only its
//! own request; children that misbehave (close stdout early, ignore SIGTERM,
//! leave a grandchild behind, write megabytes without a newline) end in the
//! right state with their output complete and nothing left running; and
//! what a SIGTERM or a SIGKILL of the server leaves behind.
//!
//! The faulty guest is the guest built with its test-only `fault-injection`
//! feature (`sandbox_process_artifacts::FAULTY_GUEST_WASM`, built by artifacts/build.rs):
//! a start or run body with command `__trap__`, `__loop__` or `__oom__`
//! traps, spins or allocates without end.

use crate::capability_common;
use crate::server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use capability_common::live_members;
use reqwest::Method;
use sandbox_process::{GUEST_WASM, GuestLimits, GuestRuntime, Limits, Policy, ProcessTable, Reply};
use sandbox_process_server::HttpConfig;
use serde_json::{Value, json};
use server::{Answer, Server};

/// Every wait of these tests is bounded by this; none is an assertion.
const BOUND: Duration = Duration::from_secs(30);

fn faulty_wasm() -> Vec<u8> {
    sandbox_process_artifacts::FAULTY_GUEST_WASM.to_vec()
}

/// The faulty guest with a short time budget and a small memory cap.
fn faulty_runtime() -> Arc<GuestRuntime> {
    let processes =
        ProcessTable::new(Policy { default_working_dir: std::env::temp_dir(), ..Policy::default() }, Limits::default());
    let limits = GuestLimits {
        memory_bytes: 16 << 20,
        call_budget: Duration::from_millis(300),
        cache_dir: Some(env!("CARGO_TARGET_TMPDIR").into()),
        ..GuestLimits::default()
    };
    Arc::new(GuestRuntime::with_component(processes, limits, &faulty_wasm()).expect("the faulty guest loads"))
}

fn json_of(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {:?}", reply.body))
}

/// A guest call, run as its own task and awaited with a bound: a call the
/// time budget failed to stop would hang the test instead of failing it.
async fn bounded<T: Send + 'static>(call: impl Future<Output = T> + Send + 'static) -> T {
    tokio::time::timeout(BOUND, tokio::spawn(call))
        .await
        .expect("the guest call was not stopped by its time budget")
        .expect("the call's task panicked")
}

/// After a fault the runtime still starts a process and answers health.
async fn still_serves(rt: &Arc<GuestRuntime>) {
    let reply = rt.start(br#"{"command":"echo","args":["after the fault"]}"#).await.unwrap();
    assert_eq!(reply.status, 201, "{}", reply.body);
    let health = rt.health().await.unwrap();
    assert_eq!((health.status, json_of(&health)), (200, json!({"healthy": true})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_guest_call_fails_alone() {
    let rt = faulty_runtime();
    let r = rt.clone();
    let error = bounded(async move { r.start(br#"{"command":"__trap__"}"#).await }).await.unwrap_err();
    assert!(format!("{error:#}").contains("start"), "the error names the call: {error:#}");
    let r = rt.clone();
    let error = bounded(async move { r.run_open(br#"{"command":"__trap__"}"#).await }).await.unwrap_err();
    assert!(format!("{error:#}").contains("run_open"), "{error:#}");
    still_serves(&rt).await;
    // Only the start after the faults made a process.
    assert_eq!(rt.processes().list().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_guest_call_is_stopped_by_its_time_budget() {
    let rt = faulty_runtime();
    let r = rt.clone();
    let looping = tokio::spawn(async move { r.start(br#"{"command":"__loop__"}"#).await });
    // While one call spins, others are served (it holds one worker thread).
    still_serves(&rt).await;
    let outcome = tokio::time::timeout(BOUND, looping).await.expect("the epoch deadline stops the loop").unwrap();
    let error = outcome.unwrap_err();
    assert!(format!("{error:#}").contains("start"), "{error:#}");
    let r = rt.clone();
    assert!(bounded(async move { r.run_open(br#"{"command":"__loop__"}"#).await }).await.is_err());
    still_serves(&rt).await;
    assert_eq!(rt.processes().list().len(), 2, "only the two good starts made processes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_exhausts_its_memory_fails_alone() {
    let rt = faulty_runtime();
    for _ in 0..3 {
        let r = rt.clone();
        assert!(bounded(async move { r.start(br#"{"command":"__oom__"}"#).await }).await.is_err());
    }
    still_serves(&rt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_guest_has_no_fault_switch() {
    assert_ne!(GUEST_WASM, faulty_wasm().as_slice(), "the binary embeds the faulty guest");
    let processes = ProcessTable::new(Policy::default(), Limits::default());
    let limits = GuestLimits { cache_dir: Some(env!("CARGO_TARGET_TMPDIR").into()), ..GuestLimits::default() };
    let rt = GuestRuntime::new(processes, limits).unwrap();
    for command in ["__trap__", "__loop__", "__oom__"] {
        let reply = rt.start(json!({ "command": command }).to_string().as_bytes()).await.unwrap();
        assert_eq!((reply.status, json_of(&reply)["code"].clone()), (400, json!("SPAWN_FAILED")), "{}", reply.body);
    }
}

/// The HTTP router in-process, on a free loopback port, over the faulty guest.
async fn faulty_http() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = sandbox_process_server::http::router(faulty_runtime(), HttpConfig::default());
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_a_faulty_guest_call_is_a_500_and_the_next_request_succeeds() {
    let base = faulty_http().await;
    let client = reqwest::Client::builder().timeout(BOUND).build().unwrap();
    for (path, command) in [
        ("/api/v1/processes", "__trap__"),
        ("/api/v1/processes", "__loop__"),
        ("/api/v1/processes", "__oom__"),
        ("/api/v1/processes/run", "__trap__"),
        ("/api/v1/processes/run", "__loop__"),
    ] {
        let body = json!({ "command": command }).to_string();
        let answer = Answer::from(client.post(format!("{base}{path}")).body(body).send().await.unwrap()).await;
        answer.assert_error(500, "INTERNAL");
        let ok = client.post(format!("{base}/api/v1/processes")).body(r#"{"command":"true"}"#).send().await.unwrap();
        assert_eq!(ok.status(), 201, "after {command} on {path}");
        let health = client.get(format!("{base}/api/v1/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    }
    let list = Answer::from(client.get(format!("{base}/api/v1/processes")).send().await.unwrap()).await.json();
    let commands: Vec<&str> =
        list["processes"].as_array().unwrap().iter().map(|p| p["command"].as_str().unwrap()).collect();
    assert_eq!(commands, ["true"; 5], "no faulty request started anything");
}

// ---- Children that misbehave, through the real server binary ----

/// Polls until `check` holds (every 20 ms, at most [`BOUND`]).
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// Reads a follow stream to its end; returns (stream, line) pairs and
/// whether it ended with `eof`.
async fn follow(s: &Server, pid: u64) -> (Vec<(String, String)>, bool) {
    let response = s.request(Method::GET, &format!("/api/v1/processes/{pid}/output/follow")).send().await.unwrap();
    let frames = s.sse(response).await;
    let lines = frames
        .iter()
        .filter(|f| f.event.as_deref() == Some("output"))
        .map(|f| (f.data["stream"].as_str().unwrap().to_owned(), f.data["line"].as_str().unwrap().to_owned()))
        .collect();
    (lines, frames.last().is_some_and(|f| f.event.as_deref() == Some("eof")))
}

/// Asserts that nothing of the process group `pgid` is alive (bounded wait:
/// a SIGKILLed member may take a moment to go).
async fn assert_group_gone(pgid: u64) {
    let gone = eventually(|| live_members(pgid as u32).is_empty()).await;
    assert!(gone, "members of group {pgid} still alive: {:?}", live_members(pgid as u32));
}

#[tokio::test]
async fn a_child_that_closes_its_stdout_early() {
    let s = Server::start(&[], None);
    let script = "exec 1>&-; echo first >&2; sleep 0.2; echo second >&2; exit 3";
    let pid = s.start_process(&json!({"command": "sh", "args": ["-c", script]})).await;
    let (lines, eof) = follow(&s, pid).await;
    assert!(eof, "the stream ends with eof");
    assert_eq!(lines, [("stderr".to_owned(), "first".to_owned()), ("stderr".to_owned(), "second".to_owned())]);
    let info = s.wait_ended(pid).await;
    assert_eq!((info["status"].clone(), info["exit_code"].clone()), (json!("exited"), json!(3)));

    // Both streams closed, then still running for a while: the stream waits
    // for the exit, then ends.
    let pid = s.start_process(&json!({"command": "sh", "args": ["-c", "exec >&- 2>&-; sleep 0.3; exit 4"]})).await;
    let (lines, eof) = follow(&s, pid).await;
    assert!(eof && lines.is_empty(), "{lines:?}");
    assert_eq!(s.wait_ended(pid).await["exit_code"], 4);
    assert_group_gone(pid).await;
}

#[tokio::test]
async fn a_child_that_ignores_sigterm_is_killed() {
    let s = Server::start(&[], None);
    let script = "trap '' TERM; echo ready; exec sleep 300";
    let pid = s.start_process(&json!({"command": "sh", "args": ["-c", script]})).await;
    let base = format!("/api/v1/processes/{pid}");
    // Once the child ignores SIGTERM (the kernel says so), send it.
    let ignoring = eventually(|| sig_ignored(pid, libc::SIGTERM) && proc_comm(pid).as_deref() == Some("sleep")).await;
    assert!(ignoring, "the child came to ignore SIGTERM");
    let answer = s.post_json(&format!("{base}/signal"), &json!({"signal": 15})).await;
    assert_eq!((answer.status, answer.json()), (200, json!({"success": true})));
    // It ignored it: still running a while later (it can never end by itself).
    for _ in 0..25 {
        assert_eq!(s.get(&base).await.json()["status"], "running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = s.delete(&base).await;
    assert_eq!(killed.status, 204);
    let info = s.wait_ended(pid).await;
    assert_eq!((info["status"].clone(), info["signal"].clone()), (json!("signaled"), json!(9)));
    let (lines, eof) = follow(&s, pid).await;
    assert_eq!((lines, eof), (vec![("stdout".to_owned(), "ready".to_owned())], true));
    assert_group_gone(pid).await;
}

#[tokio::test]
async fn a_child_that_forks_a_grandchild_and_exits() {
    let s = Server::start(&[], None);
    // The grandchild lets go of the pipes: the output completes at the
    // leader's exit while the grandchild still runs in the group.
    let script = "sleep 300 >/dev/null 2>&1 & echo $!; exit 0";
    let pid = s.start_process(&json!({"command": "sh", "args": ["-c", script]})).await;
    let (lines, eof) = follow(&s, pid).await;
    assert!(eof);
    let grandchild: u32 = lines[0].1.parse().expect("the grandchild's pid");
    let info = s.wait_ended(pid).await;
    assert_eq!((info["status"].clone(), info["exit_code"].clone()), (json!("exited"), json!(0)));
    let members: Vec<u32> = live_members(pid as u32).iter().map(|p| p.pid).collect();
    assert_eq!(members, [grandchild], "the grandchild outlives the leader, in its group");
    // A kill of the ended process still ends what it left behind.
    assert_eq!(s.delete(&format!("/api/v1/processes/{pid}")).await.status, 204);
    assert_group_gone(pid).await;

    // A grandchild that keeps the stdout pipe: the output is not complete
    // until it goes, and the kill makes it go, which ends the stream.
    let pid = s.start_process(&json!({"command": "sh", "args": ["-c", "sleep 300 & echo started; exit 0"]})).await;
    let info = s.wait_ended(pid).await;
    assert_eq!(info["exit_code"], 0);
    let stream = s.request(Method::GET, &format!("/api/v1/processes/{pid}/output/follow")).send().await.unwrap();
    assert_eq!(s.delete(&format!("/api/v1/processes/{pid}")).await.status, 204);
    let frames = s.sse(stream).await;
    assert_eq!(frames.first().unwrap().data["line"], "started");
    assert_eq!(frames.last().unwrap().event.as_deref(), Some("eof"));
    assert_group_gone(pid).await;
}

#[tokio::test]
async fn a_child_that_writes_megabytes_without_a_newline() {
    const MIB: usize = 1 << 20;
    const WRITTEN: usize = 64 * MIB;
    const LINE: usize = 64 << 10; // --max-line-bytes, the default
    // In memory only: this is about the memory cap (what a spill file keeps
    // is capture_spill.rs's).
    let s = Server::start(&["--capture-bytes", &MIB.to_string(), "--capture-disk-bytes", "0"], None);
    let server_pid = s.child.id();
    let before = vm_kb(server_pid, "VmHWM");
    let script = format!("head -c {WRITTEN} /dev/zero | tr '\\0' a; exit 5");
    let pid = s.start_process(&json!({"command": "sh", "args": ["-c", script]})).await;
    let (lines, eof) = follow(&s, pid).await;
    assert!(eof);
    // The follower may have missed dropped pieces, but every piece it got
    // is a whole one.
    assert!(!lines.is_empty() && lines.iter().all(|(_, l)| l.len() == LINE && l.bytes().all(|b| b == b'a')));
    let info = s.wait_ended(pid).await;
    assert_eq!(info["exit_code"], 5);
    let out = s.get(&format!("/api/v1/processes/{pid}/stdout")).await.json();
    let kept = out["line_count"].as_u64().unwrap() as usize;
    let dropped = out["dropped_lines"].as_u64().unwrap() as usize;
    assert_eq!(kept + dropped, WRITTEN / LINE, "every piece is kept or counted as dropped");
    assert!(kept >= 1 && kept * LINE <= MIB, "at most the capture cap is kept: {kept} pieces");
    assert!(out["lines"].as_array().unwrap().iter().all(|l| l.as_str().unwrap().len() == LINE));
    // Memory stayed bounded: the server's peak resident size grew by far
    // less than what went through it.
    let after = vm_kb(server_pid, "VmHWM");
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!("server VmHWM {before} kB -> {after} kB after {} MiB of output", WRITTEN / MIB);
    assert!(grown_mib < 32, "the server's peak RSS grew by {grown_mib} MiB for 64 MiB of output");
    assert_group_gone(pid).await;
}

/// True if `pid` ignores `signal` (`SigIgn` of /proc/PID/status).
fn sig_ignored(pid: u64, signal: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

fn proc_comm(pid: u64) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|c| c.trim().to_owned())
}

/// A `Vm*` field of /proc/PID/status, in kB.
fn vm_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

// ---- What the server's death leaves behind ----

/// Live processes whose environment holds `marker` (every request of these
/// tests sets it, and descendants inherit it, setsid or not).
fn marked(marker: &str) -> Vec<u32> {
    let needle = format!("FAULTS_TEST_MARKER={marker}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|&b| b == 0).any(|var| var == needle.as_bytes()) && !is_zombie(pid) {
            found.push(pid);
        }
    }
    found
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

fn unique_marker(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    )
}

/// SIGKILL to each of `pids` (they are this test's own leftovers).
fn clean_up(pids: &[u32]) {
    for &pid in pids {
        // SAFETY: kill takes plain integers and touches no memory of ours.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

/// Starts `script` under `sh -c` with the marker in its environment.
async fn start_marked(s: &Server, marker: &str, script: &str, stdin_pipe: bool) -> u64 {
    let mut body = json!({"command": "sh", "args": ["-c", script], "env": {"FAULTS_TEST_MARKER": marker}});
    if stdin_pipe {
        body["stdin_mode"] = json!("pipe");
    }
    s.start_process(&body).await
}

#[tokio::test]
async fn sigterm_of_the_server_ends_every_process_group_it_started() {
    let marker = unique_marker("sigterm");
    let mut s = Server::start(&[], None);
    let mut pids = Vec::new();
    pids.push(start_marked(&s, &marker, "sleep 300 & sleep 300", false).await);
    pids.push(start_marked(&s, &marker, "trap '' TERM; exec sleep 300", false).await);
    pids.push(start_marked(&s, &marker, "exec cat", true).await);
    // Ended, with a grandchild left in its group.
    let ended = start_marked(&s, &marker, "sleep 300 >/dev/null 2>&1 & exit 0", false).await;
    s.wait_ended(ended).await;
    pids.push(ended);
    // Detached into a session (and group) of its own: out of reach of a
    // group kill, not of a cgroup (--containment auto, where available).
    start_marked(&s, &marker, "setsid sleep 301 >/dev/null 2>&1 & exec sleep 300", false).await;
    let started = eventually(|| marked(&marker).len() >= 8).await;
    assert!(started, "all children and grandchildren run: {:?}", marked(&marker));
    let follow = s.request(Method::GET, &format!("/api/v1/processes/{}/output/follow", pids[0])).send().await.unwrap();

    let status = s.terminate();
    assert!(status.success(), "exit 0 on SIGTERM, got {status}");
    let _ = follow.text().await;
    for &pid in &pids {
        assert_group_gone(pid).await;
    }
    // Whatever survives is only what left the groups (the setsid sleep).
    let survivors = marked(&marker);
    let detached: Vec<u32> = survivors.iter().copied().filter(|&p| proc_cmdline(p) == "sleep 301").collect();
    eprintln!("after SIGTERM of the server: {} setsid-detached survivor(s) {detached:?}", detached.len());
    clean_up(&survivors);
    assert_eq!(survivors, detached, "only setsid-detached descendants may survive a SIGTERM of the server");
    let cgroups = s.log.lock().unwrap().iter().any(|l| l.contains("a cgroup per process"));
    if cgroups {
        assert_eq!(survivors, Vec::<u32>::new(), "with a cgroup per process not even a setsid'd descendant survives");
    }
}

#[tokio::test]
async fn sigkill_of_the_server_kills_its_children_by_parent_death_signal() {
    let marker = unique_marker("sigkill");
    // Process groups only: with a cgroup per process, the next server that
    // starts (another test's) kills what a dead one left in its cgroups,
    // which would hide what the parent-death signal alone does.
    let mut s = Server::start(&["--containment", "process-group"], None);
    let sleeper = start_marked(&s, &marker, "exec sleep 300", false).await;
    let reader = start_marked(&s, &marker, "exec cat", true).await;
    let parent = start_marked(&s, &marker, "sleep 302 & wait", false).await;
    let ready = eventually(|| marked(&marker).len() >= 4).await;
    assert!(ready, "{:?}", marked(&marker));

    // SAFETY: kill takes plain integers and touches no memory of ours.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGKILL) };
    s.child.wait().unwrap();
    // Every direct child dies with the server (PR_SET_PDEATHSIG).
    for pid in [sleeper, reader, parent] {
        let died = eventually(|| !marked(&marker).contains(&(pid as u32))).await;
        assert!(died, "the direct child {pid} outlived the SIGKILLed server");
    }
    // The parent-death signal is not inherited: a grandchild survives,
    // orphaned (under cgroup containment, until the next server starts).
    // Documented in SECURITY.md.
    let survivors = marked(&marker);
    let grandchildren: Vec<u32> = survivors.iter().copied().filter(|&p| proc_cmdline(p) == "sleep 302").collect();
    eprintln!("after SIGKILL of the server: grandchildren {grandchildren:?} survive, orphaned");
    clean_up(&survivors);
    assert_eq!(survivors, grandchildren, "only grandchildren may survive a SIGKILL of the server");
}

#[tokio::test]
async fn without_the_parent_death_signal_children_outlive_a_sigkilled_server() {
    // The control for the test above: what --no-kill-on-exit gives up.
    let marker = unique_marker("no-pdeathsig");
    let mut s = Server::start(&["--no-kill-on-exit", "--containment", "process-group"], None);
    let sleeper = start_marked(&s, &marker, "exec sleep 300", false).await as u32;
    assert!(eventually(|| proc_cmdline(sleeper) == "sleep 300").await);
    // SAFETY: kill takes plain integers and touches no memory of ours.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGKILL) };
    s.child.wait().unwrap();
    // Any grace period would do: without the death signal nothing kills it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let survivors = marked(&marker);
    clean_up(&survivors);
    assert_eq!(survivors, [sleeper]);
}

fn proc_cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Whether `child` exits within [`BOUND`] (polled; the bound only keeps a
/// hang from hanging the test).
fn exits_within_bound(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[tokio::test]
async fn sigterm_is_not_held_up_by_clients_that_never_finish_a_request() {
    use std::io::Write;
    let mut s = Server::start(&[], Some("drain-token-1234"));
    let pid = s.start_process(&json!({"command": "sleep", "args": ["300"]})).await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    // Half a request head; a whole head with half its body; an idle
    // connection. The first two hold hyper's graceful drain open.
    let mut half_head = std::net::TcpStream::connect(&addr).unwrap();
    half_head.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut half_body = std::net::TcpStream::connect(&addr).unwrap();
    half_body
        .write_all(b"POST /api/v1/processes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer drain-token-1234\r\nContent-Length: 100\r\n\r\n{\"comm")
        .unwrap();
    let _idle = std::net::TcpStream::connect(&addr).unwrap();
    // The server has read what was sent (a request after them is answered).
    assert_eq!(s.get("/api/v1/health").await.status, 200);

    // SAFETY: kill takes plain integers and touches no memory of ours.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let status = exits_within_bound(&mut s.child);
    assert!(status.is_some_and(|st| st.success()), "the server did not exit 0 after SIGTERM: {status:?}");
    assert_group_gone(pid).await;
}

#[test]
fn sigterm_as_soon_as_the_server_listens_is_a_graceful_stop() {
    // The handlers are installed before the server says where it listens,
    // so a SIGTERM at once is a clean stop (exit 0), never the default
    // action's abrupt end (killed by SIGTERM).
    for _ in 0..5 {
        let mut s = Server::start(&[], None);
        let status = s.terminate();
        assert!(status.success(), "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_exits_at_once_is_still_reported_as_started() {
    // The start reply is the process as started: running, its stdin pipe
    // open. A child that exits before the reply is built (`true`) must not
    // make it read `exited` with a closed stdin, a race the reaper, running
    // on another thread, used to win now and then.
    use sandbox_process::types::{OutputMode, ProcessStatus, StartRequest, StdinMode};
    let table =
        ProcessTable::new(Policy { default_working_dir: std::env::temp_dir(), ..Policy::default() }, Limits::default());
    let mut wrong = Vec::new();
    for _ in 0..300 {
        let request = StartRequest {
            command: "true".into(),
            args: vec![],
            env: vec![],
            working_dir: None,
            stdin_mode: StdinMode::Pipe,
            stdout_mode: OutputMode::Capture,
            stderr_mode: OutputMode::Capture,
        };
        let info = table.start(request).await.unwrap();
        let pid = info.pid;
        if info.status != ProcessStatus::Running || !info.stdin_writable || info.exit_code.is_some() {
            wrong.push(info);
        }
        table.wait(pid, BOUND).await.unwrap();
    }
    assert!(wrong.is_empty(), "{} of 300 start replies described an ended process: {:?}", wrong.len(), wrong.first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_waiting_in_the_capability_is_not_charged_to_the_guest() {
    // A stdin write the child takes a second to read, under a guest budget
    // of 300 ms: the guest itself runs for microseconds, so the write is a
    // 204, not a 500 for a budget the wait used up (the data was written).
    let rt = faulty_runtime();
    let started = rt
        .start(br#"{"command":"sh","args":["-c","sleep 1; exec cat >/dev/null"],"stdin_mode":"pipe"}"#)
        .await
        .unwrap();
    assert_eq!(started.status, 201, "{}", started.body);
    let pid = json_of(&started)["pid"].to_string();
    let data = vec![b'x'; 1 << 20]; // more than a pipe holds: the write waits for the reader
    let r = rt.clone();
    let written = bounded(async move { r.write_stdin(&pid, &data).await }).await;
    let reply = written.expect("the write is not a guest failure");
    assert_eq!((reply.status, reply.body.as_str()), (204, ""));
    // The budget still stops a guest that runs too long by itself.
    let r = rt.clone();
    assert!(bounded(async move { r.start(br#"{"command":"__loop__"}"#).await }).await.is_err());
}
