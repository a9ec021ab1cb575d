//! `sandbox-process exec` and `sandbox-process validate`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sandbox_process::capability::OutputHold;
use sandbox_process::types::{OutputSelector, OutputStream, ProcessStatus};
use sandbox_process::{GuestLimits, GuestRuntime, ProcessTable, Reply};
use tokio::io::AsyncReadExt;

use super::args::{ExecArgs, ValidateArgs, read_request};

/// The exit code for a request the guest refused.
const REFUSED: u8 = 2;

/// Validates through the guest; prints the normalized request or the error.
pub async fn validate(args: ValidateArgs) -> Result<ExitCode> {
    let body = read_request(&args.request)?;
    let runtime = GuestRuntime::new(
        ProcessTable::new(sandbox_process::Policy::default(), sandbox_process::Limits::default()),
        one_shot(args.guest.guest_limits()),
    )?;
    let reply = runtime.validate(&body).await?;
    Ok(print_reply(&reply, 200))
}

/// Starts the process through the guest, streams its output, passes stdin
/// through when it is a pipe, and exits as the child did.
pub async fn exec(args: ExecArgs) -> Result<ExitCode> {
    let body = read_request(&args.request)?;
    let (policy, limits) = args.host.policy_and_limits(None)?;
    // As `serve` does (the child gets the original limit back, see
    // `fd_budget`); one process needs so few descriptors that a failure
    // here is only worth a warning.
    if let Err(e) = super::descriptors::raise() {
        tracing::warn!("{e:#}");
    }
    let processes = ProcessTable::new(policy, limits);
    let runtime = GuestRuntime::new(processes.clone(), one_shot(args.host.guest.guest_limits()))?;
    // Held: this command prints every line, at the pace its own stdout
    // takes them, and the child waits for it rather than lose any.
    let (reply, hold) = runtime.start_held(&body).await?;
    if reply.status != 201 {
        return Ok(print_reply(&reply, 201));
    }
    let info: serde_json::Value = serde_json::from_str(&reply.body).context("the guest's start reply")?;
    let Some(pid) = info["pid"].as_u64().and_then(|p| u32::try_from(p).ok()) else {
        bail!("the guest's start reply has no pid: {}", reply.body);
    };
    if info["stdin_writable"] == true {
        tokio::spawn(forward_stdin(processes.clone(), pid));
    }
    let code = stream_until_exit(&processes, pid, hold.as_ref()).await?;
    processes.shutdown().await;
    Ok(ExitCode::from(code))
}

/// A command that makes one guest call needs one instance: a bigger pool
/// only costs start-up time (mappings to reserve and release).
fn one_shot(limits: GuestLimits) -> GuestLimits {
    GuestLimits { max_instances: 1, ..limits }
}

/// Prints a reply: the body on stdout when its status is `ok`, else on
/// stderr with the refused exit code.
fn print_reply(reply: &Reply, ok: u16) -> ExitCode {
    if reply.status == ok {
        println!("{}", reply.body);
        ExitCode::SUCCESS
    } else {
        eprintln!("{}", reply.body);
        ExitCode::from(REFUSED)
    }
}

async fn forward_stdin(processes: ProcessTable, pid: u32) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if processes.write_stdin(pid, buf[..n].to_vec()).await.is_err() {
                    // The child closed its stdin or ended: nothing more to pass.
                    return;
                }
            }
        }
    }
    let _ = processes.close_stdin(pid);
}

async fn stream_until_exit(processes: &ProcessTable, pid: u32, hold: Option<&OutputHold>) -> Result<u8> {
    let mut cursor = 0;
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    loop {
        let chunk = processes
            .read_output(pid, OutputSelector::Merged, cursor, 4096, Duration::from_secs(1))
            .await
            .map_err(|e| anyhow::anyhow!("reading the child's output: {e:?}"))?;
        for line in &chunk.lines {
            let sink: &mut dyn Write = match line.stream {
                OutputStream::Stdout => &mut out,
                OutputStream::Stderr => &mut err,
            };
            // A closed terminal pipe is no reason to stop reaping the child.
            let _ = writeln!(sink, "{}", line.line);
        }
        let _ = out.flush();
        cursor = chunk.next_cursor;
        if let Some(hold) = hold {
            hold.advance(cursor);
        }
        if chunk.complete {
            break;
        }
    }
    let info = processes
        .wait(pid, Duration::from_secs(u32::MAX.into()))
        .await
        .map_err(|e| anyhow::anyhow!("waiting for the child: {e:?}"))?;
    Ok(match info.status {
        ProcessStatus::Exited => info.exit_code.unwrap_or(1) as u8,
        ProcessStatus::Signaled => 128u8.wrapping_add(info.signal.unwrap_or(0) as u8),
        ProcessStatus::Running => bail!("process {pid} still running after its output ended"),
    })
}
