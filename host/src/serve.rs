//! `sandbox-process serve`: the HTTP server, its start-up checks and its
//! graceful shutdown.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use sandbox_process::{GuestRuntime, HttpConfig, ProcessTable, http};

use crate::cli::args::HostArgs;
use crate::cli::descriptors;

/// The open connections the descriptor budget sets aside (one descriptor
/// each) beside `--max-processes`. A constant until `serve` has a
/// connection limit of its own; then that limit takes its place.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// How long in-flight requests get to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

/// `sandbox-process serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The address to listen on. Anything but loopback needs --token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The bearer token every request must carry (`Authorization: Bearer
    /// TOKEN`). Without one the server only listens on loopback.
    #[arg(long, env = "SANDBOX_PROCESS_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The largest JSON request body, in bytes (413 past it).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// The largest body of one stdin write, in bytes (413 past it).
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    pub max_stdin_bytes: usize,
    /// Policy and limits.
    #[command(flatten)]
    pub host: HostArgs,
}

/// Serves until SIGINT or SIGTERM, then stops accepting, kills every process
/// group it started, ends the streams and exits 0.
pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    let token = args.token.clone().filter(|t| !t.is_empty());
    if token.is_none() && !args.listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {} without a token: anyone who can reach it could run commands. \
             Pass --token (or set SANDBOX_PROCESS_TOKEN), or listen on 127.0.0.1",
            args.listen
        );
    }
    let signal = shutdown_signal();
    let (policy, mut limits) = args.host.policy_and_limits(token.as_deref())?;
    descriptors::fit(&mut limits, args.host.max_processes.is_some(), DEFAULT_MAX_CONNECTIONS)?;
    let processes = ProcessTable::new(policy, limits);
    let runtime = Arc::new(GuestRuntime::new(processes.clone(), args.host.guest.guest_limits())?);
    let config =
        HttpConfig { token: token.clone(), max_json_body: args.max_body_bytes, max_stdin_body: args.max_stdin_bytes };
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    if token.is_none() {
        tracing::warn!("no token: every local user and program that can reach {local} can run commands");
    }
    tracing::info!(listen = %local, "serving the sandbox process API");

    let shutdown_processes = processes.clone();
    let (draining, drain_began) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, http::router(runtime, config)).with_graceful_shutdown(async move {
        let signal = signal.await;
        tracing::info!("{signal}: shutting down");
        // Killing every group first lets follow and run streams finish with
        // their final frames instead of hanging the drain.
        shutdown_processes.shutdown().await;
        let _ = draining.send(());
    });
    let mut server = tokio::spawn(async move { server.await });
    // The graceful drain waits for every open connection, and a client that
    // sent half a request head (or stopped mid-body) never finishes: bound
    // it, or such a client could keep the server from ever exiting.
    let drain_over = async {
        match drain_began.await {
            Ok(()) => tokio::time::sleep(DRAIN).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        joined = &mut server => match joined {
            Ok(result) => result.context("serving")?,
            Err(e) => bail!("the server task failed: {e}"),
        },
        () = drain_over => {
            tracing::warn!("connections still open {DRAIN:?} after the shutdown began: closing them");
            server.abort();
        }
    }
    // Anything started during the drain goes too.
    if tokio::time::timeout(DRAIN, processes.shutdown()).await.is_err() {
        tracing::warn!("some processes were not reaped within {DRAIN:?}");
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Installs the SIGTERM and SIGINT handlers now, and returns the future of
/// the first signal. Installed at the start of `run`, not when the server
/// first polls the future: a signal during start-up is then a graceful
/// shutdown right after it, not the default action's abrupt end.
fn shutdown_signal() -> impl Future<Output = &'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            // Without handlers the default actions still stop the process.
            std::future::pending::<()>().await;
            unreachable!();
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}
