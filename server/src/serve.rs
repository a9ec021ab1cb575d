//! `sandbox-process serve`: the HTTP server, its start-up checks and its
//! graceful shutdown.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sandbox_process::{GuestRuntime, ProcessTable};
use sandbox_process_server::http::CrossSite;
use sandbox_process_server::{HttpConfig, http};

use crate::cli::descriptors;
use crate::cli::serve_args::{ServeArgs, TokenSource};

/// How long in-flight requests get to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves until SIGINT or SIGTERM, then stops accepting, kills every process
/// group it started, ends the streams and exits 0.
pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    let token_source = args.auth.token_source()?;
    let no_auth = matches!(token_source, TokenSource::None);
    if no_auth && !args.listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {} without authentication: anyone who can reach it could run commands. \
             Drop --insecure-no-auth, or listen on 127.0.0.1",
            args.listen
        );
    }
    // A generated token lives in a file on this machine: fine for local
    // clients; a server others reach gets a token the operator chose.
    if matches!(token_source, TokenSource::Generate(_)) && !args.listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {} without a token given: pass --token-file (or SANDBOX_PROCESS_TOKEN, \
             or --token), or listen on 127.0.0.1 to have one generated",
            args.listen
        );
    }
    let signal = shutdown_signal();
    // Known before anything starts: the policy keeps it out of children's
    // environments whatever its source.
    let token = token_source.token()?;
    let (policy, mut limits) = args.host.policy_and_limits(token.as_deref())?;
    descriptors::fit(&mut limits, args.host.max_processes.is_some(), args.connections.max_connections as usize)?;
    let processes = ProcessTable::new(policy, limits);
    let runtime = Arc::new(GuestRuntime::new(processes.clone(), args.host.guest.guest_limits())?);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    // Removed when this function returns, however it does.
    let token_file = token_source.write_file(local, token.as_deref())?;
    if let Some(file) = &token_file {
        tracing::info!(
            token_file = %file.path().display(),
            "no --token or --token-file: generated a token; clients send `Authorization: Bearer <the file's text>`"
        );
    }
    let cross_site = CrossSite {
        allowed_origins: args.auth.allow_origins.clone(),
        allowed_hosts: no_auth.then(|| CrossSite::local_hosts(local.ip(), &args.auth.allow_hosts)),
    };
    if no_auth {
        tracing::warn!(
            "--insecure-no-auth: NO AUTHENTICATION. Every local user and program that can connect to {local} \
             can run commands as this user"
        );
    }
    let config = HttpConfig {
        token,
        max_json_body: args.max_body_bytes,
        max_stdin_body: args.max_stdin_bytes,
        body_timeout: args.connections.body_timeout,
        cross_site,
    };
    tracing::info!(listen = %local, "serving the sandbox process API");

    let shutdown_processes = processes.clone();
    let (draining, drain_began) = tokio::sync::oneshot::channel::<()>();
    let router = http::router(runtime, config);
    let server = http::serve(listener, router, args.connections.limits(), async move {
        let signal = signal.await;
        tracing::info!("{signal}: shutting down");
        // Killing every group first lets follow and run streams finish with
        // their final frames instead of hanging the drain.
        shutdown_processes.shutdown().await;
        let _ = draining.send(());
    });
    let mut server = tokio::spawn(server);
    // The drain closes waiting connections at once but lets busy ones finish
    // their response, and a client that stopped mid-body (until
    // --body-timeout) or stopped reading its response never does: bound it,
    // or such a client could keep the server from exiting for long.
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
    drop(token_file);
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
