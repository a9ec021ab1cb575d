//! Security properties of the real server binary: with a token configured
//! no route answers anything but 401 without it; the token never reaches
//! the log, even at trace level; children start from a clean environment
//! unless the operator asks for the server's own (and never get the token).

use crate::server;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use serde_json::{Value, json};
use server::Server;

const TOKEN: &str = "s3cr3t-T0ken-9a7e4c";

/// Every route of the router (server/src/http/routes.rs), with the methods it
/// answers; `{ref}` is filled in by the test.
const ROUTES: &[(&str, &[&str])] = &[
    ("/api/v1/health", &["GET"]),
    ("/api/v1/info", &["GET"]),
    ("/api/v1/processes", &["GET", "POST"]),
    ("/api/v1/processes/run", &["POST"]),
    ("/api/v1/processes/{ref}", &["GET", "DELETE"]),
    ("/api/v1/processes/{ref}/signal", &["POST"]),
    ("/api/v1/processes/{ref}/stdin", &["POST"]),
    ("/api/v1/processes/{ref}/stdin/close", &["POST"]),
    ("/api/v1/processes/{ref}/stdout", &["GET"]),
    ("/api/v1/processes/{ref}/stderr", &["GET"]),
    ("/api/v1/processes/{ref}/output", &["GET"]),
    ("/api/v1/processes/{ref}/stdout/follow", &["GET"]),
    ("/api/v1/processes/{ref}/stderr/follow", &["GET"]),
    ("/api/v1/processes/{ref}/output/follow", &["GET"]),
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

/// The `Authorization` values that must not let a request in (`None`: the
/// header is left out).
fn wrong_credentials() -> Vec<Option<String>> {
    vec![
        None,
        Some(String::new()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Bearer x{TOKEN}")),
        Some(format!("Bearer  {TOKEN}")),
        Some(TOKEN.into()),
        Some(format!("Basic {TOKEN}")),
        Some(format!("Token {TOKEN}")),
        Some(format!("Bearer {}", TOKEN.to_uppercase())),
    ]
}

/// One raw request (so that paths, methods and header bytes arrive exactly
/// as written); returns the status and body.
fn raw(s: &Server, method: &str, path: &str, authorization: Option<&[u8]>, body: &[u8]) -> (u16, Vec<u8>) {
    exchange(s, method, path, authorization, body, false)
}

/// Like [`raw`], but reads only the response head (a follow stream of a
/// running process would not end).
fn raw_head(s: &Server, method: &str, path: &str, authorization: Option<&[u8]>, body: &[u8]) -> (u16, Vec<u8>) {
    exchange(s, method, path, authorization, body, true)
}

fn exchange(
    s: &Server,
    method: &str,
    path: &str,
    authorization: Option<&[u8]>,
    body: &[u8],
    head_only: bool,
) -> (u16, Vec<u8>) {
    let addr = s.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n", body.len())
            .into_bytes();
    if let Some(value) = authorization {
        request.extend_from_slice(b"Authorization: ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    stream.write_all(&request).unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
        if head_only && response.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response[end + 4..].to_vec())
}

/// A body that would do something if it were let in.
fn body_for(method: &str, path: &str, marker: &str) -> Vec<u8> {
    if method != "POST" {
        return Vec::new();
    }
    let body = if path.ends_with("/signal") {
        json!({"signal": 9})
    } else if path.ends_with("/stdin") {
        return b"data\n".to_vec();
    } else {
        json!({"command": "touch", "args": [marker]})
    };
    body.to_string().into_bytes()
}

#[tokio::test]
async fn no_route_is_reachable_without_the_token() {
    // The table above must name every route the router has.
    let routes_rs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/routes.rs")).unwrap();
    let declared: BTreeSet<&str> =
        routes_rs.split(".route(\"").skip(1).map(|rest| rest.split('"').next().unwrap()).collect();
    let covered: BTreeSet<&str> = ROUTES.iter().map(|(path, _)| *path).collect();
    assert_eq!(declared, covered, "ROUTES must list exactly the router's routes");

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("security-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("let-in");
    let marker_text = marker.to_str().unwrap();
    let s = Server::start(&[], Some(TOKEN));
    // A process of the server's own, so that `{ref}` names a real one.
    let pid = s.start_process(&json!({"command": "sleep", "args": ["300"], "stdin_mode": "pipe"})).await;

    let mut targets: Vec<(String, String)> = Vec::new();
    for (path, _) in ROUTES {
        let path = path.replace("{ref}", &pid.to_string());
        for method in METHODS {
            targets.push((method.to_string(), path.clone()));
        }
    }
    for path in
        ["/", "/api/v1/nowhere", "/api/v1/processes/x/y/z", "/api/v1/processes/-1", "/health", "/api/v1/health/"]
    {
        targets.push(("GET".into(), path.into()));
        targets.push(("POST".into(), path.into()));
    }
    let credentials = wrong_credentials();
    let mut sent = 0;
    for (method, path) in &targets {
        let body = body_for(method, path, marker_text);
        for credential in &credentials {
            let (status, response) = raw(&s, method, path, credential.as_deref().map(str::as_bytes), &body);
            let shown = format!("{method} {path} with {credential:?}");
            assert_eq!(status, 401, "{shown}: {}", String::from_utf8_lossy(&response));
            if method != "HEAD" {
                let error: Value = serde_json::from_slice(&response).unwrap_or_else(|e| panic!("{shown}: {e}"));
                assert_eq!(error["code"], "UNAUTHORIZED", "{shown}");
            }
            sent += 1;
        }
        // A header value that is not text is no token either.
        let (status, _) = raw(&s, method, path, Some(b"Bearer \xff\xfe"), &body);
        assert_eq!(status, 401, "{method} {path} with a non-UTF-8 token");
    }
    eprintln!("{sent} unauthenticated requests, every one 401");

    // The control: with the token, no target is a 401 (they reach the
    // router: success, 404, 405 or the API's own errors).
    let expected_auth = format!("Bearer {TOKEN}");
    for (method, path) in &targets {
        let ends_or_starts = method == "DELETE"
            || path.ends_with("/signal")
            || path.ends_with("/stdin/close")
            || method == "POST" && (path.ends_with("/processes") || path.ends_with("/run"));
        if ends_or_starts {
            continue;
        }
        let (status, _) =
            raw_head(&s, method, path, Some(expected_auth.as_bytes()), &body_for(method, path, marker_text));
        assert_ne!(status, 401, "{method} {path} with the token");
    }
    // Nothing the refused requests asked for happened.
    assert!(!marker.exists(), "an unauthenticated request ran a command");
    let list = s.get("/api/v1/processes").await.json();
    assert_eq!(list["processes"].as_array().unwrap().len(), 1, "only the test's own process: {list}");
    let info = s.get(&format!("/api/v1/processes/{pid}")).await.json();
    assert_eq!(info["status"], "running", "no unauthenticated signal or kill reached it");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends a spread of requests, good and bad, all carrying or near the token.
async fn exercise(s: &Server) {
    assert_eq!(s.get("/api/v1/health").await.status, 200);
    let pid = s.start_process(&json!({"command": "cat", "stdin_mode": "pipe"})).await;
    let base = format!("/api/v1/processes/{pid}");
    assert_eq!(s.post(&format!("{base}/stdin"), "line\n").await.status, 204);
    assert_eq!(s.get(&format!("{base}/output")).await.status, 200);
    s.post("/api/v1/processes", "{not json").await.assert_error(400, "INVALID_REQUEST");
    s.get("/api/v1/nowhere").await.assert_error(404, "NOT_FOUND");
    for credential in wrong_credentials().into_iter().flatten() {
        let (status, _) = raw(s, "GET", "/api/v1/info", Some(credential.as_bytes()), b"");
        assert_eq!(status, 401);
    }
    assert_eq!(s.delete(&base).await.status, 204);
    s.wait_ended(pid).await;
}

/// Waits (bounded) until the stopped server's last line was read.
async fn whole_log(s: &Server) -> Vec<String> {
    for _ in 0..1000 {
        if s.log.lock().unwrap().iter().any(|l| l.contains(" stopped")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.log.lock().unwrap().clone()
}

async fn assert_no_token_in(s: &Server, how: &str) {
    let log = whole_log(s).await;
    assert!(log.iter().any(|l| l.contains(" stopped")), "{how}: the server logged its stop");
    assert!(log.iter().any(|l| l.contains("TRACE")), "{how}: the log is at trace level");
    let refused = wrong_credentials().into_iter().flatten().count();
    assert!(log.iter().filter(|l| l.contains("status=401")).count() >= refused, "{how}: the refusals were logged");
    let leaks: Vec<&String> = log.iter().filter(|l| l.contains(TOKEN)).collect();
    assert!(leaks.is_empty(), "{how}: the token is in the log: {leaks:?}");
    eprintln!("{how}: {} log lines, none with the token", log.len());
}

#[tokio::test]
async fn the_token_never_reaches_the_log() {
    let trace = OsStr::new("trace");
    // Given on the command line...
    let mut s = Server::start_with_env(&[], Some(TOKEN), &[("RUST_LOG", trace)]);
    exercise(&s).await;
    assert!(s.terminate().success());
    assert_no_token_in(&s, "--token").await;
    // ...and in the environment.
    let mut s = Server::start_with_env(&[], None, &[("RUST_LOG", trace), ("SANDBOX_PROCESS_TOKEN", OsStr::new(TOKEN))]);
    s.token = Some(TOKEN.into());
    exercise(&s).await;
    assert!(s.terminate().success());
    assert_no_token_in(&s, "SANDBOX_PROCESS_TOKEN").await;
}

/// The environment of a child (`env`'s output), as a set of `KEY=VALUE`.
async fn child_env(s: &Server) -> BTreeSet<String> {
    let pid = s.start_process(&json!({"command": "env"})).await;
    assert_eq!(s.wait_ended(pid).await["exit_code"], 0);
    let path = format!("/api/v1/processes/{pid}/stdout");
    // The output is complete shortly after the exit; `env` prints PATH at least.
    for _ in 0..500 {
        let out = s.get(&path).await.json();
        if out["line_count"].as_u64() > Some(0) {
            return out["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no output from env");
}

#[tokio::test]
async fn children_get_a_clean_environment_and_never_the_token() {
    let marker = OsStr::new("server-side-value");
    let not_utf8 = OsStr::from_bytes(b"\xff\xfe");
    let env = [
        ("SECURITY_TEST_MARKER", marker),
        ("SANDBOX_PROCESS_TOKEN", OsStr::new(TOKEN)),
        ("SECURITY_TEST_NOT_UTF8", not_utf8),
        ("HOME", OsStr::new("/root-of-the-server")),
    ];
    let mut s = Server::start_with_env(&["--env", "GIVEN=by-the-operator"], None, &env);
    s.token = Some(TOKEN.into());
    let seen = child_env(&s).await;
    let names: BTreeSet<&str> = seen.iter().map(|v| v.split_once('=').unwrap().0).collect();
    let expected: BTreeSet<&str> = ["HOME", "USER", "LOGNAME", "SHELL", "PATH", "LANG", "GIVEN"].into();
    assert_eq!(names, expected, "only the defaults and what --env gives: {seen:?}");
    assert!(seen.contains("GIVEN=by-the-operator") && !seen.contains("HOME=/root-of-the-server"), "{seen:?}");

    // --inherit-env: the server's environment, but still not its token
    // (nor what is not text).
    let s = Server::start_with_env(&["--inherit-env", "--env", "GIVEN=by-the-operator"], Some(TOKEN), &env);
    let seen = child_env(&s).await;
    assert!(seen.contains("SECURITY_TEST_MARKER=server-side-value"), "{seen:?}");
    assert!(seen.contains("HOME=/root-of-the-server") && seen.contains("GIVEN=by-the-operator"), "{seen:?}");
    assert!(
        !seen.iter().any(|v| v.starts_with("SANDBOX_PROCESS_TOKEN=") || v.contains(TOKEN)),
        "the token leaked: {seen:?}"
    );
    assert!(!seen.iter().any(|v| v.starts_with("SECURITY_TEST_NOT_UTF8")), "{seen:?}");
}
