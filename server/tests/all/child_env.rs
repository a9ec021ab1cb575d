//! The environment children get, end to end through the real binary: what
//! everyday tools need by default (git, `cd ~`, UTF-8 text), the same for
//! `serve` and `exec`, and nothing of the server's own environment, its
//! token least of all.

use crate::server;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use server::Server;

const TOKEN: &str = "child-env-T0ken-51f0";
const SECRET: &str = "server-only-secret-8d2e";

/// The environment a child should get by default, in order, found without
/// the server's code: the user database through `getent`, this test's PATH
/// (which the server inherits).
fn expected_defaults() -> Vec<String> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let out = Command::new("getent").args(["passwd", &uid.to_string()]).output().expect("getent runs");
    assert!(out.status.success(), "these tests need the user running them (uid {uid}) in the user database: {out:?}");
    let line = String::from_utf8(out.stdout).unwrap();
    let f: Vec<&str> = line.trim_end().split(':').collect();
    let path = std::env::var("PATH").expect("tests run with a PATH");
    [("HOME", f[5]), ("USER", f[0]), ("LOGNAME", f[0]), ("SHELL", f[6]), ("PATH", &path), ("LANG", "C.UTF-8")]
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// A scratch directory under the target directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("child-env-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `sandbox-process exec FLAGS... REQUEST`, with the token variable set in
/// its environment (which `exec` must not pass on either).
fn exec(flags: &[&str], request: &Value) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sandbox-process"))
        .arg("exec")
        .args(flags)
        .arg(request.to_string())
        .env("XDG_CACHE_HOME", env!("CARGO_TARGET_TMPDIR"))
        .env("SANDBOX_PROCESS_TOKEN", TOKEN)
        .output()
        .expect("the binary runs")
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes).lines().map(str::to_owned).collect()
}

/// Runs `body` on the server and follows its output to the end: the exit
/// code, its stdout lines, its stderr lines.
async fn run(s: &Server, body: Value) -> (i64, Vec<String>, Vec<String>) {
    let pid = s.start_process(&body).await;
    let follow = s.request(Method::GET, &format!("/api/v1/processes/{pid}/output/follow")).send().await.unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for frame in s.sse(follow).await {
        if frame.event.as_deref() == Some("output") {
            let line = frame.data["line"].as_str().unwrap().to_owned();
            if frame.data["stream"] == "stdout" { &mut out } else { &mut err }.push(line);
        }
    }
    let info = s.wait_ended(pid).await;
    (info["exit_code"].as_i64().unwrap_or(-1), out, err)
}

#[tokio::test]
async fn serve_and_exec_give_children_the_same_default_environment() {
    let expected = expected_defaults();
    let s = Server::start(&[], Some(TOKEN));
    let (code, served, err) = run(&s, json!({"command": "env"})).await;
    assert_eq!((code, &served), (0, &expected), "serve: {err:?}");

    let out = exec(&[], &json!({"command": "env"}));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lines(&out.stdout), expected, "exec");
}

#[tokio::test]
async fn git_keeps_its_global_configuration_in_home() {
    // By default HOME is set, so git gets as far as reading the (maybe
    // absent: status 1) global configuration instead of dying (128).
    let s = Server::start(&[], Some(TOKEN));
    let (code, _, err) = run(&s, json!({"command": "git", "args": ["config", "--global", "--get", "user.name"]})).await;
    assert!(code == 0 || code == 1, "git config --global failed ({code}): {err:?}");

    // Written through `exec --env HOME=...`, read back through a server
    // given the same HOME: the file is in that home, nowhere else.
    let home = Scratch::new("git-home");
    let home_flag = format!("HOME={}", home.path());
    let set =
        exec(&["--env", &home_flag], &json!({"command": "git", "args": ["config", "--global", "user.name", "x"]}));
    assert!(set.status.success(), "{set:?}");
    let gitconfig = std::fs::read_to_string(home.0.join(".gitconfig")).expect("git wrote $HOME/.gitconfig");
    assert!(gitconfig.contains("name = x"), "{gitconfig}");
    let s = Server::start(&["--env", &home_flag], Some(TOKEN));
    let (code, out, err) = run(&s, json!({"command": "git", "args": ["config", "--global", "user.name"]})).await;
    assert_eq!((code, out), (0, vec!["x".to_owned()]), "{err:?}");
}

#[tokio::test]
async fn tilde_leads_home() {
    let home = expected_defaults()[0].strip_prefix("HOME=").unwrap().to_owned();
    let s = Server::start(&[], Some(TOKEN));
    let (code, out, err) = run(&s, json!({"command": "sh", "args": ["-c", "cd ~ && pwd"]})).await;
    assert_eq!((code, out), (0, vec![home]), "{err:?}");
}

#[test]
fn text_is_utf8_unless_the_operator_chooses_another_locale() {
    let count = json!({"command": "sh", "args": ["-c", "printf 'é' | wc -m"]});
    let chars = |flags: &[&str]| {
        let out = exec(flags, &count);
        assert!(out.status.success(), "{flags:?}: {out:?}");
        lines(&out.stdout)
    };
    assert_eq!(chars(&[]), ["1"], "one character under the default C.UTF-8");
    // The C locale counts bytes: what children got before they had a LANG.
    assert_eq!(chars(&["--locale", "C"]), ["2"]);
    assert_eq!(chars(&["--env", "LANG=C"]), ["2"]);
    assert_eq!(chars(&["--locale", "C", "--env", "LANG=C.UTF-8"]), ["1"], "--env wins over --locale");
}

#[tokio::test]
async fn a_child_sees_neither_the_servers_secrets_nor_its_token() {
    let copy = format!("Bearer {TOKEN}");
    let server_env: [(&str, &OsStr); 4] = [
        ("SERVER_SECRET", OsStr::new(SECRET)),
        ("SANDBOX_PROCESS_TOKEN", OsStr::new(TOKEN)),
        ("COPY_OF_THE_TOKEN", OsStr::new(&copy)),
        ("HOME", OsStr::new("/home/of-the-server")),
    ];
    let env = json!({"command": "env"});
    let leaks = |seen: &[String]| {
        seen.iter().filter(|v| v.contains(TOKEN) || v.contains(SECRET) || v.contains("of-the-server")).count()
    };

    // Exactly the defaults (and what --env adds): no secret, no token, and
    // the user database's HOME, not the server's.
    let s = Server::start_with_env(&[], Some(TOKEN), &server_env);
    let (_, seen, _) = run(&s, env.clone()).await;
    assert_eq!(seen, expected_defaults());
    let s = Server::start_with_env(&["--env", "GIVEN=by-the-operator"], Some(TOKEN), &server_env);
    let (_, seen, _) = run(&s, env.clone()).await;
    assert_eq!(seen, [expected_defaults(), vec!["GIVEN=by-the-operator".to_owned()]].concat());

    // --inherit-env: the secret and the server's HOME, never the token,
    // neither by its name nor in another variable.
    let s = Server::start_with_env(&["--inherit-env"], Some(TOKEN), &server_env);
    let (_, seen, _) = run(&s, env.clone()).await;
    assert!(seen.contains(&format!("SERVER_SECRET={SECRET}")), "{seen:?}");
    assert!(seen.contains(&"HOME=/home/of-the-server".to_owned()), "{seen:?}");
    assert_eq!(leaks(&seen), 2, "only the secret and HOME, not the token: {seen:?}");
    assert!(s.log.lock().unwrap().iter().any(|l| l.contains("COPY_OF_THE_TOKEN")), "the left-out variable is logged");

    // The operator can't hand it over by mistake either: the server
    // refuses to start (a server that starts is killed after 30 s).
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandbox-process"))
        .args(["serve", "--listen", "127.0.0.1:0", "--token", TOKEN, "--env", &format!("AUTH=Bearer {TOKEN}")])
        .env("XDG_CACHE_HOME", env!("CARGO_TARGET_TMPDIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--env AUTH: the value holds the server's token"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "the error repeats the token: {stderr}");
}
