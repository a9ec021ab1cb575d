//! Slow and idle clients cost nothing: stalled connections neither block
//! real requests nor stay open, idle keep-alive connections are closed,
//! bodies have a deadline, streams are never cut for being quiet, and the
//! accept loop survives running out of file descriptors.

use crate::server;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use server::Server;

/// More than any deadline configured here: only a real failure reaches it.
const BOUND: Duration = Duration::from_secs(20);
const STALLED: usize = 1100;
/// Shells that leave two pipes each open in the server (see below).
const LEAKING_SHELLS: usize = 100;

/// Starts the server with its open-file limit, soft and hard, at `nofile`.
fn start_with_nofile(args: &[&str], nofile: u64) -> Server {
    Server::start_configured(args, None, &[], |cmd: &mut Command| {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs here.
        unsafe {
            cmd.pre_exec(move || {
                let limit = libc::rlimit { rlim_cur: nofile, rlim_max: nofile };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

/// This test process needs a descriptor per stalled connection: its soft
/// limit goes up to its hard one.
fn raise_own_nofile(needed: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes only the rlimit it is given.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    assert!(limit.rlim_max >= needed, "the test needs {needed} open files; the hard limit is {}", limit.rlim_max);
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads only the rlimit it is given.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// Opens `n` connections that each send half a request line and stall;
/// each with the time it was opened.
fn stall(s: &Server, n: usize) -> Vec<(TcpStream, Instant)> {
    let addr = s.base.trim_start_matches("http://");
    (0..n)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(b"GET /api/v1/hea").unwrap();
            (stream, Instant::now())
        })
        .collect()
}

/// Whether the server closed `stream` by `deadline` (end of file, or a
/// reset when it closed before reading what was sent).
fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    }
}

/// Checks every stalled connection is closed within `header` (plus
/// scheduling slack) of its opening; returns the longest time it took.
fn assert_all_closed(stalled: Vec<(TcpStream, Instant)>, header: Duration) -> Duration {
    // Time a connection waits in the listen backlog before the server
    // accepts it (and its deadline starts) is part of what is measured.
    let slack = Duration::from_secs(10);
    let mut longest = Duration::ZERO;
    let mut open = 0;
    for (mut stream, opened) in stalled {
        if closed_by(&mut stream, opened + header + slack) {
            longest = longest.max(opened.elapsed());
        } else {
            open += 1;
        }
    }
    assert_eq!(open, 0, "stalled connections still open {:?} after the header deadline", slack);
    longest
}

/// Seconds of CPU the process has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf takes an integer and touches no memory of ours.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_neither_block_requests_nor_stay_open() {
    raise_own_nofile(STALLED as u64 + 200);
    let header = Duration::from_secs(4);
    let s = start_with_nofile(&["--header-timeout", "4s"], 1024);
    let stalled = stall(&s, STALLED);

    let started = Instant::now();
    assert_eq!(s.get("/api/v1/health").await.status, 200);
    let health = started.elapsed();
    let started = Instant::now();
    let pid = s.start_process(&json!({"command": "true"})).await;
    let start = started.elapsed();
    eprintln!("with {STALLED} stalled connections: health answered in {health:?}, a start in {start:?}");
    // Well under the header deadline: the stalled connections made room,
    // they did not have to time out first.
    assert!(health < Duration::from_secs(3) && start < Duration::from_secs(3), "{health:?} {start:?}");
    s.wait_ended(pid).await;

    let longest = assert_all_closed(stalled, header);
    eprintln!("every stalled connection closed, the last {longest:?} after it opened (header deadline {header:?})");
    assert_eq!(s.get("/api/v1/health").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_in_accept_neither_stops_nor_spins_the_server() {
    raise_own_nofile(STALLED as u64 + 200);
    // The server refuses a connection limit its descriptors can't meet, so
    // what runs them out here is what that budget can't count: ended
    // shells whose background `sleep` keeps their output pipes open (two
    // of the server's descriptors each). Then accept fails before the
    // connection limit is reached. A header deadline long enough for the
    // flood to get there.
    let header = Duration::from_secs(10);
    let s = start_with_nofile(&["--header-timeout", "10s", "--max-connections", "900", "--max-processes", "10"], 1024);
    for _ in 0..LEAKING_SHELLS {
        let pid = s.start_process(&json!({"command": "sh", "args": ["-c", "sleep 300 & exit 0"]})).await;
        s.wait_ended(pid).await;
    }
    let cpu_before = cpu_seconds(s.child.id());
    let flood = Instant::now();
    let stalled = stall(&s, STALLED);
    // The server reaches its limit once it has accepted what fits.
    let hit_emfile =
        || s.log.lock().unwrap().iter().any(|l| l.contains("accept:") && l.contains("Too many open files"));
    let waited = Instant::now();
    while !hit_emfile() && waited.elapsed() < header / 2 {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(hit_emfile(), "accept failed with EMFILE (the server logs it)");

    let started = Instant::now();
    assert_eq!(s.get("/api/v1/health").await.status, 200);
    let health = started.elapsed();
    eprintln!("out of descriptors, {STALLED} stalled connections: health answered in {health:?}");
    assert!(health < Duration::from_secs(3), "{health:?}");

    let longest = assert_all_closed(stalled, header);
    let cpu = cpu_seconds(s.child.id()) - cpu_before;
    let wall = flood.elapsed().as_secs_f64();
    eprintln!("stalled connections all closed (last after {longest:?}); server CPU {cpu:.2} s in {wall:.1} s");
    // A loop that retried at once would use a core for the whole time.
    assert!(cpu < wall / 2.0, "the server used {cpu:.2} s of CPU in {wall:.1} s");
    let log = s.log.lock().unwrap().clone();
    let warnings = log.iter().filter(|l| l.contains("accept:")).count();
    assert!(warnings <= 2, "warned once per burst, not per failure: {warnings} warnings");
    assert_eq!(s.get("/api/v1/health").await.status, 200);
}

/// One keep-alive request on `stream`, reading exactly its response.
fn keep_alive_request(s: &Server, stream: &mut TcpStream, path: &str) -> u16 {
    let token = s.token.as_deref().unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the response");
        response.extend_from_slice(&buf[..n]);
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length: ")).map_or(0, |v| v.trim().parse().unwrap());
            if response.len() >= end + 4 + length {
                return head.split(' ').nth(1).unwrap().parse().unwrap();
            }
        }
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // A header deadline longer than the bound: only the idle timeout can
    // close the connection in time.
    let s = Server::start(&["--idle-timeout", "2s", "--header-timeout", "60s"], None);
    let addr = s.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    assert_eq!(keep_alive_request(&s, &mut stream, "/api/v1/health"), 200);
    // Kept alive across a pause shorter than the idle timeout.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(keep_alive_request(&s, &mut stream, "/api/v1/info"), 200);
    let idle_since = Instant::now();
    assert!(closed_by(&mut stream, idle_since + BOUND), "the idle connection is still open after {BOUND:?}");
    eprintln!(
        "idle keep-alive connection closed {:?} after its last response (idle timeout 2 s)",
        idle_since.elapsed()
    );
}

#[tokio::test]
async fn quiet_streams_outlive_the_idle_and_header_timeouts() {
    let s = Server::start(&["--idle-timeout", "1s", "--header-timeout", "1s"], None);
    let script = "sleep 3; echo late";
    let pid = s.start_process(&json!({"command": "sh", "args": ["-c", script]})).await;
    let follow = s.request(reqwest::Method::GET, &format!("/api/v1/processes/{pid}/stdout/follow")).send();
    let run = s
        .request(reqwest::Method::POST, "/api/v1/processes/run")
        .body(json!({"command": "sh", "args": ["-c", script]}).to_string())
        .send();
    let (follow, run) = tokio::join!(follow, run);
    let (follow, run) = tokio::join!(s.sse(follow.unwrap()), s.sse(run.unwrap()));
    // Three quiet seconds, then the line and the stream's own end.
    assert_eq!(follow.iter().map(|f| f.data["line"].clone()).next(), Some(json!("late")), "{follow:?}");
    assert_eq!(follow.last().unwrap().event.as_deref(), Some("eof"), "{follow:?}");
    assert!(run.iter().any(|f| f.data["line"] == "late"), "{run:?}");
    assert_eq!(run.last().unwrap().data["reason"], "exited", "{run:?}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_is_a_408_and_nothing_runs() {
    let s = Server::start(&["--body-timeout", "1s"], None);
    let addr = s.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    let token = s.token.as_deref().unwrap();
    let head = format!(
        "POST /api/v1/processes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 100\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(br#"{"command":"touch","args":["#).unwrap();
    let sent = Instant::now();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("the server answers and closes");
    eprintln!("a stalled body answered after {:?} (body timeout 1 s)", sent.elapsed());
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains(r#""code":"REQUEST_TIMEOUT""#), "{response}");
    assert_eq!(s.get("/api/v1/info").await.json()["total_processes"], 0);
}

#[tokio::test]
async fn past_the_limit_with_every_connection_busy_new_ones_are_closed_at_once() {
    let s = Server::start(&["--max-connections", "2"], None);
    let pid = s.start_process(&json!({"command": "sleep", "args": ["300"]})).await;
    // Two streams hold the two connections, busy for as long as they last.
    let path = format!("/api/v1/processes/{pid}/output/follow");
    let first = s.request(reqwest::Method::GET, &path).send().await.unwrap();
    let second = s.client.get(format!("{}{path}", s.base)).bearer_auth(s.token.as_deref().unwrap()).send();
    let second = second.await.unwrap();
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));

    let addr = s.base.trim_start_matches("http://");
    let mut third = TcpStream::connect(addr).unwrap();
    assert!(closed_by(&mut third, Instant::now() + BOUND), "a third connection is closed, not queued");
    let refused = reqwest::Client::new().get(format!("{}/api/v1/health", s.base)).send().await;
    assert!(refused.is_err(), "{refused:?}");

    // A stream ends: its connection is free again.
    drop(first);
    let mut answered = false;
    for _ in 0..200 {
        let client = reqwest::Client::new();
        let request = client.get(format!("{}/api/v1/health", s.base)).bearer_auth(s.token.as_deref().unwrap());
        if request.send().await.is_ok_and(|r| r.status() == 200) {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered, "a connection freed by a stream's end is usable");
    drop(second);
    assert_eq!(s.delete(&format!("/api/v1/processes/{pid}")).await.status, 204);
}
