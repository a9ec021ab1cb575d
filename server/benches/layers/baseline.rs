//! The native baseline server: the same HTTP stack as `sandbox-process
//! serve` (its accept loop and connection deadlines, axum on a
//! multi-threaded tokio runtime, the server's own admission and log
//! layers), the same capability (`ProcessTable`),
//! and the guest's own request parsing and JSON rendering compiled natively
//! (`sandbox_process_guest::api`). What it lacks is exactly the wasm: no
//! store, no instance, no component boundary.
//!
//! It serves what the benchmark sends: `POST /api/v1/processes`,
//! `GET /api/v1/processes` and `GET /api/v1/processes/{ref}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use sandbox_process::{Limits, Policy, ProcessTable, types as host};
use sandbox_process_guest::api;
use sandbox_process_guest::model::{self as guest, Capability, Pid};

/// `layers __baseline-server TOKEN MAX_PROCESSES`: serves until SIGTERM.
pub fn main(token: String, max_processes: usize) {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let limits = Limits { max_processes, ..Limits::default() };
        let table = ProcessTable::new(Policy::default(), limits);
        let state = Arc::new(App { table: table.clone(), max_json_body: 1 << 20 });
        let routes = Router::new()
            .route("/api/v1/processes", get(list).post(start))
            .route("/api/v1/processes/{ref}", get(get_one));
        let config = sandbox_process_server::HttpConfig { token: Some(token), ..Default::default() };
        let router = sandbox_process_server::http::with_auth_and_logging(routes, &config).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        tracing::info!(listen = %listener.local_addr().unwrap(), "serving the native baseline");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        let limits = sandbox_process_server::http::ConnectionLimits::default();
        sandbox_process_server::http::serve(listener, router, limits, async move {
            term.recv().await;
        })
        .await
        .unwrap();
        table.shutdown().await;
    });
}

struct App {
    table: ProcessTable,
    max_json_body: usize,
}

type AppState = State<Arc<App>>;

async fn start(State(app): AppState, body: Body) -> Response {
    match axum::body::to_bytes(body, app.max_json_body).await {
        Ok(body) => reply(api::start(&Native(&app.table), &body)),
        Err(_) => json(413, r#"{"error":"too large","code":"LIMIT_EXCEEDED"}"#.into()),
    }
}

async fn list(State(app): AppState) -> Response {
    reply(api::list(&Native(&app.table)))
}

async fn get_one(State(app): AppState, uri: OriginalUri) -> Response {
    let process_ref = uri.path().split('/').nth(4).unwrap_or("");
    reply(api::get(&Native(&app.table), process_ref))
}

fn reply(reply: guest::Reply) -> Response {
    json(reply.status, reply.body)
}

fn json(status: u16, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The guest's `Capability` over the table, natively: the conversions the
/// component boundary does, done in Rust.
struct Native<'a>(&'a ProcessTable);

impl Capability for Native<'_> {
    fn start(&self, r: &guest::StartRequest) -> Result<guest::ProcessInfo, guest::ProcessError> {
        let request = host::StartRequest {
            command: r.command.clone(),
            args: r.args.clone(),
            env: r.env.iter().map(|v| host::EnvVar { name: v.name.clone(), value: v.value.clone() }).collect(),
            working_dir: r.working_dir.clone(),
            stdin_mode: match r.stdin_mode {
                guest::StdinMode::Closed => host::StdinMode::Closed,
                guest::StdinMode::Pipe => host::StdinMode::Pipe,
            },
            stdout_mode: output_mode(r.stdout_mode),
            stderr_mode: output_mode(r.stderr_mode),
        };
        // The guest's capability is synchronous and the table's start is
        // not: wait for it in place, as the worker waited before the start
        // became async (a multi-threaded runtime lends the thread).
        let started = tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(self.0.start(request)));
        started.map(info).map_err(error)
    }

    fn get(&self, pid: Pid) -> Result<guest::ProcessInfo, guest::ProcessError> {
        self.0.get(pid).map(info).map_err(error)
    }

    fn list(&self) -> Vec<guest::ProcessInfo> {
        self.0.list().into_iter().map(info).collect()
    }

    fn signal(&self, pid: Pid, signal: i32) -> Result<(), guest::ProcessError> {
        self.0.signal(pid, signal).map_err(error)
    }

    fn kill(&self, pid: Pid) -> Result<(), guest::ProcessError> {
        self.0.kill(pid).map_err(error)
    }

    fn write_stdin(&self, _: Pid, _: &[u8]) -> Result<(), guest::ProcessError> {
        Err(guest::ProcessError::Internal("not in the baseline".into()))
    }

    fn close_stdin(&self, pid: Pid) -> Result<(), guest::ProcessError> {
        self.0.close_stdin(pid).map_err(error)
    }

    fn read_output(
        &self,
        _: Pid,
        _: guest::OutputSelector,
        _: u64,
        _: u32,
        _: u32,
    ) -> Result<guest::OutputChunk, guest::ProcessError> {
        Err(guest::ProcessError::Internal("not in the baseline".into()))
    }

    fn wait(&self, _: Pid, _: u32) -> Result<guest::ProcessInfo, guest::ProcessError> {
        Err(guest::ProcessError::Internal("not in the baseline".into()))
    }

    fn summary(&self) -> guest::HostSummary {
        let s = self.0.summary();
        guest::HostSummary {
            version: s.version,
            uptime_secs: s.uptime_secs,
            running_processes: s.running_processes,
            total_processes: s.total_processes,
        }
    }

    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
    }
}

fn output_mode(mode: guest::OutputMode) -> host::OutputMode {
    match mode {
        guest::OutputMode::Capture => host::OutputMode::Capture,
        guest::OutputMode::Discard => host::OutputMode::Discard,
    }
}

fn info(i: host::ProcessInfo) -> guest::ProcessInfo {
    guest::ProcessInfo {
        pid: i.pid,
        status: match i.status {
            host::ProcessStatus::Running => guest::ProcessStatus::Running,
            host::ProcessStatus::Exited => guest::ProcessStatus::Exited,
            host::ProcessStatus::Signaled => guest::ProcessStatus::Signaled,
        },
        stdin_writable: i.stdin_writable,
        command: i.command,
        args: i.args,
        started_at: i.started_at,
        exit_code: i.exit_code,
        signal: i.signal,
        ended_at: i.ended_at,
    }
}

fn error(e: host::ProcessError) -> guest::ProcessError {
    use guest::ProcessError as G;
    use host::ProcessError as H;
    match e {
        H::InvalidRequest(m) => G::InvalidRequest(m),
        H::NotFound(p) => G::NotFound(p),
        H::SpawnFailed(m) => G::SpawnFailed(m),
        H::StdinNotWritable(r) => G::StdinNotWritable(
            r.pid,
            match r.state {
                host::StdinState::NotAPipe => guest::StdinState::NotAPipe,
                host::StdinState::Closed => guest::StdinState::Closed,
            },
        ),
        H::NotRunning(p) => G::NotRunning(p),
        H::InvalidSignal(s) => G::InvalidSignal(s),
        H::Denied(m) => G::Denied(m),
        H::LimitExceeded(m) => G::LimitExceeded(m),
        H::Internal(m) => G::Internal(m),
    }
}
