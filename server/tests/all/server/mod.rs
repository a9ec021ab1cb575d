//! Starts the real `sandbox-process serve` binary on a free loopback port
//! and talks to it over HTTP, for the end-to-end tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::Value;

/// A running server; stopped (SIGTERM, then reaped) on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub token: Option<String>,
    /// The token file the server generated (no token given), if any.
    pub token_file: Option<PathBuf>,
    /// The server's `XDG_RUNTIME_DIR`, its own (removed on drop).
    pub runtime_dir: PathBuf,
    pub client: reqwest::Client,
    /// Every line the server has logged so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `serve --listen 127.0.0.1:0` with `args`, and `token` if any.
    /// Without one (and without `--insecure-no-auth` or a token in `env`)
    /// the server generates a token; it is read from the file the server
    /// names in its log, so requests carry it as with a given one.
    pub fn start(args: &[&str], token: Option<&str>) -> Server {
        Server::start_with_env(args, token, &[])
    }

    /// Like [`Server::start`], with `env` added to (or overriding, e.g.
    /// `RUST_LOG`) the server's environment.
    pub fn start_with_env(args: &[&str], token: Option<&str>, env: &[(&str, &std::ffi::OsStr)]) -> Server {
        Server::start_configured(args, token, env, |_| {})
    }

    /// Like [`Server::start_with_env`], with `configure` applied to the
    /// command last (e.g. a `pre_exec` that lowers a resource limit).
    pub fn start_configured(
        args: &[&str],
        token: Option<&str>,
        env: &[(&str, &std::ffi::OsStr)],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let runtime_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "runtime-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&runtime_dir);
        std::fs::create_dir_all(&runtime_dir).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandbox-process"));
        cmd.arg("serve").args(["--listen", "127.0.0.1:0"]).args(args);
        if let Some(token) = token {
            cmd.args(["--token", token]);
        }
        cmd.env_remove("SANDBOX_PROCESS_TOKEN")
            .env("RUST_LOG", "info")
            .env("XDG_CACHE_HOME", env!("CARGO_TARGET_TMPDIR"))
            .env("XDG_RUNTIME_DIR", &runtime_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            cmd.env(key, value);
        }
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("the server binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut token_file = None;
            // Split on bytes: a line that is not UTF-8 must not stop the drain.
            for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line).into_owned();
                kept.lock().unwrap().push(line.clone());
                // Logged before the address.
                if let Some(path) = line.split_whitespace().find_map(|w| w.strip_prefix("token_file=")) {
                    token_file = Some(PathBuf::from(path));
                }
                if let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("listen=")) {
                    let _ = tx.send((addr.to_string(), token_file.clone()));
                }
                if std::env::var_os("SERVER_LOG").is_some() {
                    eprintln!("[server] {line}");
                }
            }
        });
        let (addr, token_file) = rx.recv_timeout(Duration::from_secs(60)).expect("the server reports its address");
        let generated = token_file.as_ref().map(|path| {
            let text = std::fs::read_to_string(path).expect("the generated token file is readable");
            text.strip_suffix('\n').expect("one line").to_owned()
        });
        Server {
            child,
            base: format!("http://{addr}"),
            token: token.map(str::to_string).or(generated),
            token_file,
            runtime_dir,
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
            log,
        }
    }

    /// A request to `path` (under the server), with the token when set.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        Answer::from(self.request(reqwest::Method::GET, path).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> Answer {
        Answer::from(self.request(reqwest::Method::POST, path).body(body).send().await.unwrap()).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Answer {
        let request = self.request(reqwest::Method::POST, path).header("content-type", "application/json");
        Answer::from(request.body(body.to_string()).send().await.unwrap()).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        Answer::from(self.request(reqwest::Method::DELETE, path).send().await.unwrap()).await
    }

    /// Starts a process; panics unless 201. Returns its pid.
    pub async fn start_process(&self, body: &Value) -> u64 {
        let answer = self.post_json("/api/v1/processes", body).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        answer.json()["pid"].as_u64().unwrap()
    }

    /// Polls `GET /processes/{pid}` until the process has ended.
    pub async fn wait_ended(&self, pid: u64) -> Value {
        for _ in 0..1000 {
            let info = self.get(&format!("/api/v1/processes/{pid}")).await.json();
            if info["status"] != "running" {
                return info;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("process {pid} did not end within 10 s");
    }

    /// Reads a whole SSE response (it must end by itself).
    pub async fn sse(&self, response: reqwest::Response) -> Vec<Frame> {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        parse_sse(&response.text().await.unwrap())
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill takes plain integers and touches no memory of ours.
        unsafe { libc_kill(self.child.id() as i32, 15) };
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill takes plain integers and touches no memory of ours.
            unsafe { libc_kill(self.child.id() as i32, 15) };
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A whole response: status, headers, text.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub async fn from(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Answer { status, headers, text }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// Sorted top-level keys of the JSON body.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.json().as_object().expect("an object").keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Asserts an API error: status, code, and exactly `error` and `code`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.headers["content-type"], "application/json");
        let body = self.json();
        assert_eq!(body["code"], code, "{}", self.text);
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", self.text);
        assert_eq!(self.keys(), ["code", "error"]);
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub event: Option<String>,
    pub data: Value,
}

/// Parses SSE text into frames (comments skipped).
pub fn parse_sse(text: &str) -> Vec<Frame> {
    let mut frames = Vec::new();
    for block in text.split("\n\n") {
        let mut event = None;
        let mut data = None;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(v).unwrap_or_else(|e| panic!("data not JSON ({e}): {v}")));
            }
        }
        if let Some(data) = data {
            frames.push(Frame { event, data });
        }
    }
    frames
}

/// Sorted strings, for comparing key sets.
pub fn sorted(keys: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    keys.sort();
    keys
}

pub const PROCESS_INFO_KEYS: &[&str] =
    &["pid", "status", "stdin_writable", "command", "args", "started_at", "exit_code", "signal", "ended_at"];
