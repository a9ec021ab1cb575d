//! Start-up: raise the open-file limit, and make `--max-processes` fit in
//! it (see `sandbox_process::capability::fd_budget`).

use anyhow::{Context, Result, bail};
use sandbox_process::Limits;
use sandbox_process::capability::fd_budget::{
    self, FdBudget, OpenFileLimit, PER_CONNECTION, PER_PROCESS, PER_SPAWN, RESERVE,
};

/// Raises the soft open-file limit to the hard one, logging the change.
pub fn raise() -> Result<OpenFileLimit> {
    let limit = fd_budget::raise_open_file_limit().context("raising the open-file limit (RLIMIT_NOFILE)")?;
    if limit.soft > limit.before {
        tracing::info!(from = limit.before, to = limit.soft, "raised the open-file limit to the hard limit");
    }
    Ok(limit)
}

/// Raises the open-file limit and checks that `limits.max_processes`
/// processes and `max_connections` connections fit in it. An explicit
/// `--max-processes` that does not fit is an error naming the numbers and
/// the fix; the default is lowered to what fits, with a warning.
pub fn fit(limits: &mut Limits, explicit: bool, max_connections: usize) -> Result<()> {
    let limit = raise()?;
    let budget = FdBudget::new(limits.max_processes, max_connections, limit.soft);
    if budget.fits() {
        return Ok(());
    }
    let wanted = limits.max_processes;
    let needs = format!(
        "{wanted} processes need {} open files ({PER_PROCESS} each, {} for {max_connections} connections, {} in \
         reserve), but this server may open {} (hard limit {})",
        budget.needed,
        PER_CONNECTION * max_connections as u64,
        RESERVE + PER_SPAWN,
        limit.soft,
        limit.hard,
    );
    let raise = format!(
        "raise the limit (`ulimit -n {0}` in the shell that starts the server, LimitNOFILE={0} in its systemd \
         unit, `--ulimit nofile={0}` for a container)",
        budget.needed
    );
    let fit = budget.max_processes;
    if explicit {
        let or_fewer = if fit > 0 { format!(", or pass --max-processes {fit} or less") } else { String::new() };
        bail!("--max-processes {wanted} does not fit in the open-file limit: {needs}. {raise}{or_fewer}");
    }
    if fit == 0 {
        bail!("not even one process fits in the open-file limit: {needs}. To run {wanted}, {raise}");
    }
    tracing::warn!("lowering --max-processes from its default {wanted} to {fit}: {needs}. To run {wanted}, {raise}");
    limits.max_processes = fit;
    Ok(())
}
