//! Authentication is never off by accident, and what a browser sends
//! cross-site is refused: the real server binary, in each auth mode.

use crate::server;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use server::Server;

/// A scratch directory of this test binary.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cross-site-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One raw request with exactly these header lines; the status and the
/// JSON body (`Null` when empty).
fn send(s: &Server, method: &str, path: &str, headers: &[String], body: &str) -> (u16, Value) {
    let addr = s.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if body.is_empty() { Value::Null } else { serde_json::from_str(body).unwrap() };
    (status, body)
}

/// What a web page can send without a preflight: a `text/plain` POST.
fn touch_from_a_page(s: &Server, marker: &Path, headers: &[String]) -> (u16, Value) {
    let mut headers = headers.to_vec();
    headers.push("Content-Type: text/plain;charset=UTF-8".into());
    let body = json!({"command": "touch", "args": [marker]}).to_string();
    send(s, "POST", "/api/v1/processes", &headers, &body)
}

fn port(s: &Server) -> &str {
    s.base.rsplit(':').next().unwrap()
}

fn assert_refused(answer: (u16, Value), code: &str) {
    assert_eq!(answer.0, 403, "{:?}", answer.1);
    assert_eq!(answer.1["code"], code, "{:?}", answer.1);
    assert!(answer.1["error"].as_str().is_some_and(|e| !e.is_empty()), "{:?}", answer.1);
}

async fn total_processes(s: &Server) -> u64 {
    s.get("/api/v1/info").await.json()["total_processes"].as_u64().unwrap()
}

#[tokio::test]
async fn a_server_without_authentication_refuses_foreign_hosts_and_origins_and_does_nothing() {
    let dir = scratch("no-auth");
    let s = Server::start(
        &["--insecure-no-auth", "--allow-host", "mybox.local", "--allow-origin", "http://localhost:3000"],
        None,
    );
    assert!(s.token.is_none() && s.token_file.is_none());
    assert!(s.log.lock().unwrap().iter().any(|l| l.contains("NO AUTHENTICATION")), "a loud warning");
    let port = port(&s).to_owned();

    // DNS rebinding: the page's own name, pointed at loopback.
    let refused = [
        (format!("Host: evil.example:{port}"), vec![], "FORBIDDEN_HOST"),
        ("Host: evil.example".into(), vec![], "FORBIDDEN_HOST"),
        (format!("Host: localhost.evil.example:{port}"), vec![], "FORBIDDEN_HOST"),
        // A page on another site, by address.
        (format!("Host: 127.0.0.1:{port}"), vec!["Origin: http://evil.example".to_owned()], "FORBIDDEN_ORIGIN"),
        (format!("Host: 127.0.0.1:{port}"), vec!["Origin: null".to_owned()], "FORBIDDEN_ORIGIN"),
        (format!("Host: localhost:{port}"), vec![format!("Origin: http://127.0.0.1:{port}")], "FORBIDDEN_ORIGIN"),
    ];
    for (i, (host, extra, code)) in refused.iter().enumerate() {
        let marker = dir.join(format!("refused-{i}"));
        let mut headers = vec![host.clone()];
        headers.extend(extra.iter().cloned());
        assert_refused(touch_from_a_page(&s, &marker, &headers), code);
        // Refused on every route, not only this one.
        assert_refused(send(&s, "GET", "/api/v1/health", &headers, ""), code);
    }
    // Nothing was started, so nothing was created.
    assert_eq!(total_processes(&s).await, 0);
    for i in 0..refused.len() {
        assert!(!dir.join(format!("refused-{i}")).exists(), "refused request {i} created its file");
    }

    // What a local client sends still works: its own address, localhost,
    // a name given with --allow-host, an allowed origin.
    let allowed = [
        vec![format!("Host: 127.0.0.1:{port}")],
        vec![format!("Host: localhost:{port}")],
        vec!["Host: LOCALHOST".to_owned()],
        vec![format!("Host: [::1]:{port}")],
        vec![format!("Host: mybox.local:{port}")],
        vec![format!("Host: 127.0.0.1:{port}"), "Origin: http://localhost:3000".to_owned()],
    ];
    for (i, headers) in allowed.iter().enumerate() {
        let marker = dir.join(format!("allowed-{i}"));
        let (status, body) = touch_from_a_page(&s, &marker, headers);
        assert_eq!(status, 201, "{headers:?}: {body}");
        s.wait_ended(body["pid"].as_u64().unwrap()).await;
        assert!(marker.exists(), "{headers:?}: the allowed request ran");
    }
    // reqwest, like curl, names the address it connects to.
    assert_eq!(s.get("/api/v1/health").await.status, 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_generated_token_is_required_and_foreign_origins_are_refused_even_with_it() {
    let dir = scratch("auto-token");
    let s = Server::start(&[], None);
    let token = s.token.clone().expect("the harness read the generated token");
    let bearer = format!("Authorization: Bearer {token}");

    // The token, but from a page of another site: refused, nothing done.
    let marker = dir.join("cross-site");
    let headers = [bearer.clone(), "Host: x".into(), "Origin: http://evil.example".into()];
    assert_refused(touch_from_a_page(&s, &marker, &headers), "FORBIDDEN_ORIGIN");
    // Without the token: 401 (and with a foreign Origin, 403 first).
    let (status, body) = touch_from_a_page(&s, &marker, &["Host: x".into()]);
    assert_eq!((status, body["code"].as_str()), (401, Some("UNAUTHORIZED")));
    assert_eq!(total_processes(&s).await, 0);
    assert!(!marker.exists());

    // With the token any Host goes: the official client, given a proxy URL,
    // sends `Host: <sandbox-id>.local`.
    let marker = dir.join("official-client");
    let (status, body) = touch_from_a_page(&s, &marker, &[bearer.clone(), "Host: mybox.local".into()]);
    assert_eq!(status, 201, "{body}");
    s.wait_ended(body["pid"].as_u64().unwrap()).await;
    assert!(marker.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_generated_token_file_is_private_and_gone_after_sigterm() {
    let mut s = Server::start(&[], None);
    let path = s.token_file.clone().expect("the server names its token file");
    let expected = s.runtime_dir.join("sandbox-process").join(format!("127.0.0.1:{}.token", port(&s)));
    assert_eq!(path, expected, "in $XDG_RUNTIME_DIR/sandbox-process, named by the address");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let token = s.token.clone().unwrap();
    assert!(token.len() >= 43 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    // It works, and a wrong one does not.
    assert_eq!(s.get("/api/v1/health").await.status, 200);
    let wrong = s.client.get(format!("{}/api/v1/health", s.base)).bearer_auth("guess").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    // Said where it is, never what it is.
    let log = s.log.lock().unwrap().clone();
    assert!(log.iter().any(|l| l.contains(path.to_str().unwrap())), "the log names the file");
    assert!(!log.iter().any(|l| l.contains(&token)), "the token is not logged");

    assert!(s.terminate().success());
    assert!(!path.exists(), "the token file is removed at shutdown");
}

fn serve_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandbox-process"));
    cmd.arg("serve").args(args);
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    cmd.env_remove("SANDBOX_PROCESS_TOKEN").env("XDG_CACHE_HOME", env!("CARGO_TARGET_TMPDIR"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: Output = cmd.stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "serve {args:?} should refuse to start: {stderr}");
    stderr
}

#[tokio::test]
async fn token_file_gives_the_token_and_its_errors_are_clear() {
    let dir = scratch("token-file");
    let file = dir.join("token");
    std::fs::write(&file, "from-a-file-0123\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut s = Server::start(&["--token-file", file.to_str().unwrap()], None);
    assert!(s.token_file.is_none(), "a given token is not written anywhere");
    assert!(!s.runtime_dir.join("sandbox-process").exists());
    let bare = s.client.get(format!("{}/api/v1/health", s.base)).send().await.unwrap();
    assert_eq!(bare.status(), 401, "the file's token is required");
    s.token = Some("from-a-file-0123".into());
    assert_eq!(s.get("/api/v1/health").await.status, 200, "the trailing newline is not part of the token");
    drop(s);

    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let missing = serve_fails(&["--token-file", &path(&dir.join("missing"))], &[]);
    assert!(missing.contains("--token-file") && missing.contains("No such file"), "{missing}");
    std::fs::write(dir.join("empty"), "\n").unwrap();
    let empty = serve_fails(&["--token-file", &path(&dir.join("empty"))], &[]);
    assert!(empty.contains("is empty"), "{empty}");
    // A directory can't be read as a file, whoever runs the test.
    let unreadable = serve_fails(&["--token-file", &path(&dir)], &[]);
    assert!(unreadable.contains("--token-file") && unreadable.contains("directory"), "{unreadable}");
    std::fs::write(dir.join("two"), "one\ntwo\n").unwrap();
    let two = serve_fails(&["--token-file", &path(&dir.join("two"))], &[]);
    assert!(two.contains("more than one line"), "{two}");

    // Every way of leaving authentication ambiguous or off by accident.
    let both = serve_fails(&["--token", "a", "--token-file", &path(&file)], &[]);
    assert!(both.contains("give one"), "{both}");
    let both_env = serve_fails(&["--token-file", &path(&file)], &[("SANDBOX_PROCESS_TOKEN", "a")]);
    assert!(both_env.contains("give one"), "{both_env}");
    let empty_token = serve_fails(&[], &[("SANDBOX_PROCESS_TOKEN", "")]);
    assert!(empty_token.contains("is empty"), "{empty_token}");
    let open_and_token = serve_fails(&["--insecure-no-auth", "--token", "a"], &[]);
    assert!(open_and_token.contains("--insecure-no-auth"), "{open_and_token}");
    let open_wide = serve_fails(&["--insecure-no-auth", "--listen", "0.0.0.0:0"], &[]);
    assert!(open_wide.contains("without authentication"), "{open_wide}");
    // A generated token is for local clients: beyond loopback, give one.
    let generated_wide = serve_fails(&["--listen", "0.0.0.0:0"], &[]);
    assert!(generated_wide.contains("without a token given"), "{generated_wide}");
    let host_with_token = serve_fails(&["--allow-host", "x.local"], &[]);
    assert!(host_with_token.contains("--insecure-no-auth"), "{host_with_token}");
    let bad_origin = serve_fails(&["--allow-origin", "localhost:3000"], &[]);
    assert!(bad_origin.contains("not an origin"), "{bad_origin}");
    let nowhere = serve_fails(&[], &[("XDG_RUNTIME_DIR", ""), ("HOME", "")]);
    assert!(nowhere.contains("--token-file"), "{nowhere}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serve_help_explains_the_new_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_sandbox-process")).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--token-file",
        "--insecure-no-auth",
        "--allow-origin",
        "--allow-host",
        "--header-timeout",
        "--body-timeout",
        "--idle-timeout",
        "--max-connections",
        "XDG_RUNTIME_DIR",
    ] {
        assert!(help.contains(flag), "serve --help mentions {flag}");
    }
    for default in ["[default: 10s]", "[default: 30s]", "[default: 60s]", "[default: 512]"] {
        assert!(help.contains(default), "serve --help shows {default}");
    }
}
