//! Starting the two servers (the real binary and the native baseline) as
//! child processes, talking to them, and reading their memory.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const TOKEN: &str = "bench-token-0123456789";

/// A server child process; SIGTERM and reaped on drop.
pub struct Server {
    pub name: &'static str,
    child: Child,
    pub base: String,
    pub client: reqwest::Client,
}

impl Server {
    /// `sandbox-process serve` from this build.
    pub fn sandbox(max_processes: usize, cache_home: &std::path::Path) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandbox-process"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--token", TOKEN])
            .args(["--max-processes", &max_processes.to_string()])
            .env("XDG_CACHE_HOME", cache_home);
        Server::spawn("sandbox", cmd)
    }

    /// This benchmark binary as the native baseline server.
    pub fn baseline(max_processes: usize) -> Server {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["__baseline-server", TOKEN, &max_processes.to_string()]);
        Server::spawn("baseline", cmd)
    }

    fn spawn(name: &'static str, mut cmd: Command) -> Server {
        // The same log level for both: each logs one line per request.
        cmd.env("RUST_LOG", "info")
            .env_remove("SANDBOX_PROCESS_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting the {name} server: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Drains the log so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("listen=")) {
                    let _ = tx.send(addr.to_owned());
                }
                if std::env::var_os("BENCH_SERVER_LOG").is_some() {
                    eprintln!("[{name}] {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("the {name} server reports its address"));
        let client =
            reqwest::Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(64).build().unwrap();
        Server { name, child, base: format!("http://{addr}"), client }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN)
    }

    /// `POST /api/v1/processes` with `body`; the status and the reply.
    pub async fn start(&self, body: &'static str) -> (u16, String) {
        let response = self
            .request(reqwest::Method::POST, "/api/v1/processes")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST /processes");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// Starts a process, panicking unless 201; its pid.
    pub async fn start_ok(&self, body: &'static str) -> u32 {
        let (status, text) = self.start(body).await;
        assert_eq!(status, 201, "{}: {text}", self.name);
        pid_of(&text)
    }

    /// A GET whose body is read whole; panics unless 200.
    pub async fn get(&self, path: &str) -> usize {
        let response = self.request(reqwest::Method::GET, path).send().await.expect("GET");
        assert_eq!(response.status().as_u16(), 200, "{}: GET {path}", self.name);
        response.bytes().await.unwrap().len()
    }

    /// The server's resident set size in bytes.
    pub fn rss(&self) -> u64 {
        rss_of(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill takes plain integers and touches no memory of ours.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The `"pid"` of a process-info reply.
pub fn pid_of(reply: &str) -> u32 {
    let v: serde_json::Value = serde_json::from_str(reply).unwrap_or_else(|e| panic!("{e}: {reply}"));
    v["pid"].as_u64().unwrap_or_else(|| panic!("no pid: {reply}")) as u32
}

/// VmRSS of `pid`, in bytes.
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}
