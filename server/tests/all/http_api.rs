//! End-to-end: the real `sandbox-process serve` binary, over HTTP, with a
//! real client library. Every endpoint of docs/API.md, its errors and streams.

use crate::server;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use server::{PROCESS_INFO_KEYS, Server, sorted};

const TOKEN: &str = "test-token-1234";

fn server() -> Server {
    Server::start(&[], Some(TOKEN))
}

#[tokio::test]
async fn the_api_md_example_gets_201_with_exactly_the_documented_keys() {
    // docs/API.md's example names /workspace and runs python; the CI script
    // creates /workspace (this test is run as root there).
    assert!(
        std::path::Path::new("/workspace").is_dir(),
        "this test sends docs/API.md's example as is, which needs /workspace: mkdir /workspace"
    );
    // `python` may live outside the default PATH (pyenv): give the children
    // this test's PATH, as an operator would with --env.
    let path = format!("PATH={}", std::env::var("PATH").unwrap());
    let s = Server::start(&["--env", &path], Some(TOKEN));
    let body = r#"{
    "command": "python",
    "args": ["-m", "http.server", "8080"],
    "env": {"PORT": "8080"},
    "working_dir": "/workspace",
    "stdin_mode": "pipe",
    "stdout_mode": "capture",
    "stderr_mode": "capture"
  }"#;
    let answer = s.post("/api/v1/processes", body).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(answer.keys(), sorted(PROCESS_INFO_KEYS));
    let info = answer.json();
    assert_eq!(info["status"], "running");
    assert_eq!(info["stdin_writable"], true);
    assert_eq!(info["command"], "python");
    assert_eq!(info["args"], json!(["-m", "http.server", "8080"]));
    assert!(info["started_at"].as_u64().unwrap() > 1_600_000_000_000, "milliseconds since the epoch");
    assert_eq!(
        (info["exit_code"].clone(), info["signal"].clone(), info["ended_at"].clone()),
        (Value::Null, Value::Null, Value::Null)
    );
    let pid = info["pid"].as_u64().unwrap();
    s.delete(&format!("/api/v1/processes/{pid}")).await;
}

#[tokio::test]
async fn metadata_endpoints() {
    let s = server();
    let health = s.get("/api/v1/health").await;
    assert_eq!((health.status, health.json()), (200, json!({"healthy": true})));

    let pid = s.start_process(&json!({"command": "sleep", "args": ["30"]})).await;
    let info = s.get("/api/v1/info").await;
    assert_eq!(info.status, 200);
    assert_eq!(info.keys(), sorted(&["version", "uptime_secs", "running_processes", "total_processes"]));
    assert_eq!(info.json()["running_processes"], 1);
    assert_eq!(info.json()["total_processes"], 1);
    assert_eq!(info.json()["version"], env!("CARGO_PKG_VERSION"));

    let list = s.get("/api/v1/processes").await;
    assert_eq!((list.status, list.keys()), (200, sorted(&["processes"])));
    let processes = list.json()["processes"].as_array().unwrap().clone();
    assert_eq!(processes.len(), 1);
    assert_eq!(processes[0]["pid"], pid);

    let one = s.get(&format!("/api/v1/processes/{pid}")).await;
    assert_eq!((one.status, one.keys()), (200, sorted(PROCESS_INFO_KEYS)));
    assert_eq!(one.json()["status"], "running");

    let killed = s.delete(&format!("/api/v1/processes/{pid}")).await;
    assert_eq!((killed.status, killed.text.as_str()), (204, ""));
    let ended = s.wait_ended(pid).await;
    assert_eq!((ended["status"].clone(), ended["signal"].clone()), (json!("signaled"), json!(9)));
}

#[tokio::test]
async fn signal_stdin_and_output_endpoints() {
    let s = server();
    let pid = s.start_process(&json!({"command": "cat", "stdin_mode": "pipe"})).await;
    let base = format!("/api/v1/processes/{pid}");
    // Raw bytes, no Content-Type, as the official client sends them.
    let sent = s.post(&format!("{base}/stdin"), "one\ntwo\n").await;
    assert_eq!((sent.status, sent.text.as_str()), (204, ""));
    let closed = s.post(&format!("{base}/stdin/close"), "").await;
    assert_eq!((closed.status, closed.text.as_str()), (204, ""));
    let ended = s.wait_ended(pid).await;
    assert_eq!(ended["exit_code"], 0);
    let mut out = s.get(&format!("{base}/stdout")).await;
    for _ in 0..100 {
        if out.json()["line_count"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        out = s.get(&format!("{base}/stdout")).await;
    }
    assert_eq!((out.status, out.json()), (200, json!({"pid": pid, "lines": ["one", "two"], "line_count": 2})));
    let err = s.get(&format!("{base}/stderr")).await;
    assert_eq!(err.json(), json!({"pid": pid, "lines": [], "line_count": 0}));
    let merged = s.get(&format!("{base}/output")).await;
    assert_eq!(merged.json()["lines"], json!(["one", "two"]));

    let pid = s.start_process(&json!({"command": "sleep", "args": ["30"]})).await;
    let signaled = s.post_json(&format!("/api/v1/processes/{pid}/signal"), &json!({"signal": 15})).await;
    assert_eq!((signaled.status, signaled.json()), (200, json!({"success": true})));
    let ended = s.wait_ended(pid).await;
    assert_eq!((ended["status"].clone(), ended["signal"].clone()), (json!("signaled"), json!(15)));
}

#[tokio::test]
async fn every_error_of_the_table() {
    let s = server();
    s.post("/api/v1/processes", "{not json").await.assert_error(400, "INVALID_REQUEST");
    s.post_json("/api/v1/processes", &json!({"command": 5})).await.assert_error(400, "INVALID_REQUEST");
    s.post_json("/api/v1/processes", &json!({"command": ""})).await.assert_error(400, "INVALID_REQUEST");
    s.post_json("/api/v1/processes", &json!({"command": "ls", "user": "root"}))
        .await
        .assert_error(400, "INVALID_REQUEST");
    s.post_json("/api/v1/processes", &json!({"command": "no-such-command-xyz"}))
        .await
        .assert_error(400, "SPAWN_FAILED");
    s.get("/api/v1/processes/999999999").await.assert_error(404, "NOT_FOUND");
    s.get("/api/v1/processes/abc").await.assert_error(400, "INVALID_REQUEST");

    let pid = s.start_process(&json!({"command": "sleep", "args": ["30"]})).await;
    let base = format!("/api/v1/processes/{pid}");
    s.post(&format!("{base}/stdin"), "x").await.assert_error(400, "STDIN_NOT_WRITABLE");
    s.post(&format!("{base}/stdin/close"), "").await.assert_error(400, "STDIN_NOT_WRITABLE");
    s.post_json(&format!("{base}/signal"), &json!({"signal": 0})).await.assert_error(400, "INVALID_SIGNAL");
    s.post_json(&format!("{base}/signal"), &json!({"signal": 65})).await.assert_error(400, "INVALID_SIGNAL");
    s.post(&format!("{base}/signal"), "").await.assert_error(400, "INVALID_REQUEST");
    s.delete(&base).await;
    s.wait_ended(pid).await;
    s.post_json(&format!("{base}/signal"), &json!({"signal": 15})).await.assert_error(400, "NOT_RUNNING");

    // Transport-level refusals.
    // An oversize body is refused from its Content-Length, before it is
    // read; a raw request shows that without racing the client's upload.
    let answer = raw_request(&s, "POST /api/v1/processes HTTP/1.1\r\nContent-Length: 2097152\r\n");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"LIMIT_EXCEEDED""#), "{answer}");
    s.get("/api/v1/nowhere").await.assert_error(404, "NOT_FOUND");
    let wrong_method = Answer::from(s.request(Method::PUT, "/api/v1/processes").send().await.unwrap()).await;
    wrong_method.assert_error(405, "METHOD_NOT_ALLOWED");

    let limited = Server::start(&["--max-processes", "1"], Some(TOKEN));
    let pid = limited.start_process(&json!({"command": "sleep", "args": ["30"]})).await;
    limited
        .post_json("/api/v1/processes", &json!({"command": "sleep", "args": ["30"]}))
        .await
        .assert_error(429, "LIMIT_EXCEEDED");
    limited.delete(&format!("/api/v1/processes/{pid}")).await;
}

use server::Answer;

#[tokio::test]
async fn a_token_is_required_everywhere() {
    let s = server();
    let anonymous = reqwest::Client::new();
    for path in ["/api/v1/health", "/api/v1/info", "/api/v1/processes", "/api/v1/processes/1", "/api/v1/nowhere"] {
        let answer = Answer::from(anonymous.get(format!("{}{path}", s.base)).send().await.unwrap()).await;
        answer.assert_error(401, "UNAUTHORIZED");
        let wrong = anonymous.get(format!("{}{path}", s.base)).bearer_auth("wrong-token-1234");
        Answer::from(wrong.send().await.unwrap()).await.assert_error(401, "UNAUTHORIZED");
    }
    let start = anonymous.post(format!("{}/api/v1/processes", s.base)).body(r#"{"command":"touch","args":["/tmp/x"]}"#);
    Answer::from(start.send().await.unwrap()).await.assert_error(401, "UNAUTHORIZED");
    assert_eq!(s.get("/api/v1/processes").await.json(), json!({"processes": []}), "nothing started");
}

#[tokio::test]
async fn follow_streams_live_lines_then_closes_after_exit() {
    let s = server();
    let script = "for i in 1 2 3 4 5; do echo line$i; echo err$i >&2; sleep 0.1; done";
    let pid = s.start_process(&json!({"command": "sh", "args": ["-c", script]})).await;
    let response = s
        .request(Method::GET, &format!("/api/v1/processes/{pid}/output/follow"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut response = response;
    let mut text = String::new();
    let mut saw_line_while_running = false;
    while let Some(chunk) = response.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        if text.contains("line1") && !saw_line_while_running {
            let info = s.get(&format!("/api/v1/processes/{pid}")).await.json();
            saw_line_while_running = info["status"] == "running";
        }
    }
    assert!(saw_line_while_running, "a line arrived before the process ended");
    let frames = server::parse_sse(&text);
    let outputs: Vec<&Frame> = frames.iter().filter(|f| f.event.as_deref() == Some("output")).collect();
    let stdout: Vec<&str> =
        outputs.iter().filter(|f| f.data["stream"] == "stdout").map(|f| f.data["line"].as_str().unwrap()).collect();
    let stderr: Vec<&str> =
        outputs.iter().filter(|f| f.data["stream"] == "stderr").map(|f| f.data["line"].as_str().unwrap()).collect();
    assert_eq!(stdout, ["line1", "line2", "line3", "line4", "line5"]);
    assert_eq!(stderr, ["err1", "err2", "err3", "err4", "err5"]);
    assert!(outputs.iter().all(|f| f.data["timestamp"].is_u64()));
    assert_eq!(frames.last().unwrap(), &Frame { event: Some("eof".into()), data: json!({}) });
    assert_ne!(s.get(&format!("/api/v1/processes/{pid}")).await.json()["status"], "running");

    // One-stream follows of the ended process replay what was captured.
    for (stream, want) in [("stdout", "line"), ("stderr", "err")] {
        let response =
            s.request(Method::GET, &format!("/api/v1/processes/{pid}/{stream}/follow")).send().await.unwrap();
        let frames = s.sse(response).await;
        let lines: Vec<String> = frames
            .iter()
            .filter(|f| f.event.as_deref() == Some("output"))
            .map(|f| f.data["line"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(lines, (1..=5).map(|i| format!("{want}{i}")).collect::<Vec<_>>());
        assert_eq!(frames.last().unwrap().event.as_deref(), Some("eof"));
    }
    s.get("/api/v1/processes/424242/stdout/follow").await.assert_error(404, "NOT_FOUND");
}

use server::Frame;

#[tokio::test]
async fn run_streams_start_output_and_exit_frames() {
    let s = server();
    let body = json!({"command": "sh", "args": ["-c", "echo out; echo err >&2; exit 7"]});
    let response = s.request(Method::POST, "/api/v1/processes/run").body(body.to_string()).send().await.unwrap();
    let frames = s.sse(response).await;
    assert!(frames.iter().all(|f| f.event.is_none()), "run frames are data-only");
    assert_eq!(
        sorted(&frames[0].data.as_object().unwrap().keys().map(String::as_str).collect::<Vec<_>>()),
        sorted(&["pid", "started_at"])
    );
    let lines: Vec<(String, String)> = frames[1..frames.len() - 1]
        .iter()
        .map(|f| (f.data["stream"].as_str().unwrap().to_string(), f.data["line"].as_str().unwrap().to_string()))
        .collect();
    assert!(
        lines.contains(&("stdout".into(), "out".into())) && lines.contains(&("stderr".into(), "err".into())),
        "{lines:?}"
    );
    assert_eq!(frames.last().unwrap().data, json!({"exit_code": 7, "signal": null, "reason": "exited"}));

    let body = json!({"command": "sleep", "args": ["30"], "timeout": 0.3});
    let response = s.request(Method::POST, "/api/v1/processes/run").body(body.to_string()).send().await.unwrap();
    let frames = s.sse(response).await;
    assert_eq!(frames.last().unwrap().data, json!({"exit_code": null, "signal": 9, "reason": "timed_out"}));
    let pid = frames[0].data["pid"].as_u64().unwrap();
    assert_eq!(s.get(&format!("/api/v1/processes/{pid}")).await.json()["status"], "signaled");

    s.post_json("/api/v1/processes/run", &json!({"command": "ls", "timeout": -1}))
        .await
        .assert_error(400, "INVALID_REQUEST");
}

#[tokio::test]
async fn the_server_survives_100_malformed_requests() {
    let s = server();
    let bodies = [
        "",
        "{",
        "[]",
        "null",
        "\"str\"",
        "{\"command\":null}",
        "{\"command\":[1]}",
        "\u{0}",
        "{\"command\":\"ls\",\"args\":[null]}",
        "{\"env\":{\"\":\"x\"},\"command\":\"ls\"}",
    ];
    for i in 0..100 {
        let answer = s.post("/api/v1/processes", bodies[i % bodies.len()]).await;
        assert_eq!(answer.status, 400, "request {i}: {}", answer.text);
    }
    let invalid_utf8 = s.post("/api/v1/processes", vec![0xff, 0xfe, b'{']).await;
    invalid_utf8.assert_error(400, "INVALID_REQUEST");
    assert_eq!(s.get("/api/v1/health").await.json(), json!({"healthy": true}));
    assert_eq!(
        s.get("/api/v1/processes").await.json(),
        json!({"processes": []}),
        "no refused request started anything"
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_and_every_child() {
    let mut s = server();
    let pid = s.start_process(&json!({"command": "sh", "args": ["-c", "sleep 300 & sleep 300"]})).await;
    // A follow stream in flight must not hold the shutdown up.
    let follow = s.request(Method::GET, &format!("/api/v1/processes/{pid}/output/follow")).send().await.unwrap();
    let status = s.terminate();
    assert!(status.success(), "exit 0 on SIGTERM, got {status}");
    let _ = follow.text().await;
    // The process group is gone: kill(-pgid, 0) finds nobody.
    let mut alive = true;
    for _ in 0..100 {
        alive = std::path::Path::new(&format!("/proc/{pid}")).exists() && group_alive(pid);
        if !alive {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive, "the process group {pid} outlived the server");
}

fn group_alive(pgid: u64) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { return false };
        let Some((_, rest)) = stat.rsplit_once(')') else { return false };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z"
    })
}

#[test]
fn refuses_to_listen_beyond_loopback_without_a_token() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sandbox-process"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("SANDBOX_PROCESS_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without a token"), "{stderr}");
}

/// Sends a request head (with the token) and returns the whole response.
fn raw_request(s: &Server, head: &str) -> String {
    use std::io::{Read, Write};
    let addr = s.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let token = s.token.as_deref().unwrap_or("");
    write!(stream, "{head}Host: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}
