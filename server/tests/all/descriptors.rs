//! File descriptors against the limits, end to end: a server started under
//! the usual soft limit of 1,024 open files raises it and runs hundreds of
//! stdin-piped processes; under a low hard limit it refuses an explicit
//! `--max-processes` that can't fit and lowers the default with a warning;
//! and a start that finds no descriptor free is `429 LIMIT_EXCEEDED`, not a
//! `400` that blames the request.

use crate::server;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server::Server;

/// The soft limit most services start with.
const USUAL_SOFT: u64 = 1024;

/// This process's hard open-file limit (the server's, unless lowered).
fn hard_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct it is given.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    limit.rlim_max
}

/// Makes `cmd` start with an open-file limit of `soft`:`hard`.
fn limit_open_files(cmd: &mut Command, soft: u64, hard: u64) {
    // SAFETY: only setrlimit, which is async-signal-safe, runs between fork
    // and exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn server_under(soft: u64, hard: u64, args: &[&str]) -> Server {
    Server::start_configured(args, None, &[], |cmd| limit_open_files(cmd, soft, hard))
}

/// Runs `serve` with `args` under an open-file limit of `soft`:`hard`,
/// expecting it to refuse to start: returns its log once it has exited. A
/// server that starts serving instead fails the test.
fn refused_serve(soft: u64, hard: u64, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandbox-process"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("SANDBOX_PROCESS_TOKEN")
        .env("RUST_LOG", "info")
        .env("XDG_CACHE_HOME", env!("CARGO_TARGET_TMPDIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    limit_open_files(&mut cmd, soft, hard);
    let mut child = cmd.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    // Refusing is immediate; a minute only ever runs out if it serves.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the server did not refuse to start: {}", reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = reader.join().unwrap();
    assert!(!status.success(), "exited {status}: {log}");
    assert!(!log.contains("listen="), "it listened: {log}");
    log
}

async fn start(s: &Server, body: &Value) -> server::Answer {
    s.post_json("/api/v1/processes", body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_stdin_pipes_start_under_a_soft_limit_of_1024() {
    let hard = hard_limit();
    // 600 processes of 4 descriptors, the connections and the reserve.
    assert!(hard >= 4_000, "this test needs a hard open-file limit of at least 4,000 (`ulimit -Hn` is {hard})");
    let s = server_under(USUAL_SOFT, hard, &[]);
    let log = s.log.lock().unwrap().clone();
    assert!(log.iter().any(|l| l.contains("raised the open-file limit") && l.contains("from=1024")), "{log:?}");
    let began = Instant::now();
    let mut pids = Vec::new();
    for i in 0..600 {
        let answer = start(&s, &json!({"command": "sleep", "args": ["60"], "stdin_mode": "pipe"})).await;
        assert_eq!(answer.status, 201, "start {i}: {}", answer.text);
        assert_eq!(answer.json()["stdin_writable"], true);
        pids.push(answer.json()["pid"].as_u64().unwrap());
    }
    eprintln!("600 starts with stdin pipes: {:?}", began.elapsed());
    // Every pipe works, the last as well as the first.
    for pid in [pids[0], pids[599]] {
        assert_eq!(s.post(&format!("/api/v1/processes/{pid}/stdin"), "x\n").await.status, 204);
    }
    assert_eq!(s.get("/api/v1/info").await.json()["running_processes"], 600);

    // Children get the limit the server was started with, not the raised one.
    let pid = s.start_process(&json!({"command": "sh", "args": ["-c", "ulimit -Sn; ulimit -Hn"]})).await;
    s.wait_ended(pid).await;
    let out = s.get(&format!("/api/v1/processes/{pid}/stdout")).await.json();
    assert_eq!(out["lines"], json!([USUAL_SOFT.to_string(), hard.to_string()]));

    for pid in &pids {
        assert_eq!(s.delete(&format!("/api/v1/processes/{pid}")).await.status, 204);
    }
    for pid in &pids {
        assert_eq!(s.wait_ended(*pid).await["status"], "signaled");
    }
    // Every one reaped: the live count only drops at the reap.
    assert_eq!(s.get("/api/v1/info").await.json()["running_processes"], 0);
}

#[test]
fn an_explicit_max_processes_that_does_not_fit_is_refused() {
    let log = refused_serve(256, 256, &["--max-processes", "1024"]);
    for part in [
        "--max-processes 1024 does not fit in the open-file limit",
        "1024 processes need 4679 open files",
        "may open 256 (hard limit 256)",
        "ulimit -n 4679",
        "LimitNOFILE=4679",
    ] {
        assert!(log.contains(part), "no `{part}` in: {log}");
    }
}

#[test]
fn an_explicit_max_processes_that_fits_beside_the_connections_only_is_refused_too() {
    // Room for some processes, not for the 64 asked: the error says how many.
    let log = refused_serve(700, 700, &["--max-processes", "64"]);
    assert!(log.contains("--max-processes 64 does not fit in the open-file limit"), "{log}");
    assert!(log.contains("or pass --max-processes ") && log.contains(" or less"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_max_processes_is_lowered_to_what_fits_with_a_warning() {
    let s = server_under(700, 700, &[]);
    let log = s.log.lock().unwrap().clone();
    let warning = log
        .iter()
        .find(|l| l.contains("WARN") && l.contains("lowering --max-processes from its default 1024 to "))
        .unwrap_or_else(|| panic!("no warning: {log:?}"));
    assert!(warning.contains("but this server may open 700 (hard limit 700)"), "{warning}");
    let lowered: usize = warning
        .split("lowering --max-processes from its default 1024 to ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in: {warning}"));
    assert!((1..1024).contains(&lowered), "{warning}");

    let mut pids = Vec::new();
    for _ in 0..lowered {
        pids.push(s.start_process(&json!({"command": "sleep", "args": ["60"], "stdin_mode": "pipe"})).await);
    }
    let over = start(&s, &json!({"command": "sleep", "args": ["60"]})).await;
    over.assert_error(429, "LIMIT_EXCEEDED");
    assert!(over.text.contains(&format!("the host's limit is {lowered}")), "{}", over.text);
    for pid in &pids {
        s.delete(&format!("/api/v1/processes/{pid}")).await;
    }
    for pid in &pids {
        s.wait_ended(*pid).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_is_429_and_the_server_recovers() {
    // Each start leaves a `sleep` that holds the ended shell's stdout and
    // stderr, so two of the server's descriptors stay open per start while
    // no process counts against --max-processes: the descriptors run out
    // long before the process limit does.
    let s = server_under(USUAL_SOFT, USUAL_SOFT, &[]);
    let leaver = json!({"command": "sh", "args": ["-c", "sleep 60 & exit 0"]});
    let mut leavers = Vec::new();
    let refused = loop {
        assert!(leavers.len() < 1000, "1,000 starts and the descriptors never ran out");
        let answer = start(&s, &leaver).await;
        if answer.status != 201 {
            break answer;
        }
        let pid = answer.json()["pid"].as_u64().unwrap();
        s.wait_ended(pid).await;
        leavers.push(pid);
    };
    eprintln!("descriptors ran out after {} starts", leavers.len());
    refused.assert_error(429, "LIMIT_EXCEEDED");
    let message = refused.json()["error"].as_str().unwrap().to_owned();
    assert!(message.contains("out of file descriptors") && message.contains("RLIMIT_NOFILE"), "{message}");
    // Acted on nothing: no process was added by the refused start.
    let listed = s.get("/api/v1/processes").await.json()["processes"].as_array().unwrap().len();
    assert_eq!(listed, leavers.len());

    // Killing what the shells left frees their pipes: starts work again.
    for pid in &leavers {
        assert_eq!(s.delete(&format!("/api/v1/processes/{pid}")).await.status, 204);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = start(&s, &json!({"command": "true", "stdin_mode": "pipe"})).await;
        if answer.status == 201 {
            break;
        }
        assert_eq!(answer.status, 429, "{}", answer.text);
        assert!(Instant::now() < deadline, "still out of descriptors 30 s after the kills: {}", answer.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
