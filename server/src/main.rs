//! `sandbox-process`: the command line of the sandbox process host.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod serve;

use cli::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log_level(&cli.command))),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sandbox-process: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Exec(args) => cli::exec::exec(args).await,
            Command::Validate(args) => cli::exec::validate(args).await,
            Command::ExportWasm(args) => cli::export::export(args),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sandbox-process: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The server logs each request; the one-shot commands only say what failed.
fn default_log_level(command: &Command) -> &'static str {
    match command {
        Command::Serve(_) => "info",
        _ => "warn",
    }
}
