//! Gives any wasmtime component the `sandbox:process/process` capability.

use std::time::Duration;

use wasmtime::component::{HasData, Linker};

use crate::bindings::sandbox::process::{process, types};
use crate::capability::ProcessTable;
use crate::types::{HostSummary, OutputChunk, OutputSelector, ProcessError, ProcessInfo, StartRequest};

/// The [`HasData`] marker that links the capability's imports to a
/// [`ProcessTable`] held in the store's data.
pub struct ProcessCapability;

impl HasData for ProcessCapability {
    type Data<'a> = &'a ProcessTable;
}

/// Adds the `sandbox:process/types` and `sandbox:process/process` imports
/// to `linker`, served by the [`ProcessTable`] that `get` finds in the store.
///
/// The imports are async: waiting ones (`read-output`, `wait`,
/// `write-stdin`) yield to the executor instead of blocking a thread, so
/// instantiate and call the component with the `_async` methods.
///
/// ```no_run
/// use sandbox_process::{Limits, Policy, ProcessTable, add_to_linker};
/// use wasmtime::component::Linker;
/// use wasmtime::{Config, Engine};
///
/// struct MyState {
///     processes: ProcessTable,
/// }
///
/// # fn main() -> anyhow::Result<()> {
/// let engine = Engine::new(&Config::new())?;
/// let mut linker = Linker::<MyState>::new(&engine);
/// add_to_linker(&mut linker, |state: &mut MyState| &state.processes)?;
/// // ... then `linker.instantiate_async(&mut store, &component)` with a
/// // `Store<MyState>` whose `processes` is
/// // `ProcessTable::new(Policy::default(), Limits::default())`.
/// # Ok(())
/// # }
/// ```
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &ProcessTable,
) -> anyhow::Result<()> {
    types::add_to_linker::<T, ProcessCapability>(linker, get).map_err(anyhow::Error::from)?;
    process::add_to_linker::<T, ProcessCapability>(linker, get).map_err(anyhow::Error::from)?;
    Ok(())
}

impl types::Host for &ProcessTable {}

impl process::Host for &ProcessTable {
    async fn start(&mut self, request: StartRequest) -> Result<ProcessInfo, ProcessError> {
        ProcessTable::start(self, request)
    }

    async fn get(&mut self, pid: u32) -> Result<ProcessInfo, ProcessError> {
        ProcessTable::get(self, pid)
    }

    async fn list(&mut self) -> Vec<ProcessInfo> {
        ProcessTable::list(self)
    }

    async fn signal(&mut self, pid: u32, signal: i32) -> Result<(), ProcessError> {
        ProcessTable::signal(self, pid, signal)
    }

    async fn kill(&mut self, pid: u32) -> Result<(), ProcessError> {
        ProcessTable::kill(self, pid)
    }

    async fn write_stdin(&mut self, pid: u32, data: Vec<u8>) -> Result<(), ProcessError> {
        ProcessTable::write_stdin(self, pid, data).await
    }

    async fn close_stdin(&mut self, pid: u32) -> Result<(), ProcessError> {
        ProcessTable::close_stdin(self, pid)
    }

    async fn read_output(
        &mut self,
        pid: u32,
        selector: OutputSelector,
        cursor: u64,
        max_lines: u32,
        wait_ms: u32,
    ) -> Result<OutputChunk, ProcessError> {
        let wait = Duration::from_millis(wait_ms.into());
        ProcessTable::read_output(self, pid, selector, cursor, max_lines, wait).await
    }

    async fn wait(&mut self, pid: u32, timeout_ms: u32) -> Result<ProcessInfo, ProcessError> {
        ProcessTable::wait(self, pid, Duration::from_millis(timeout_ms.into())).await
    }

    async fn summary(&mut self) -> HostSummary {
        ProcessTable::summary(self)
    }

    async fn now_ms(&mut self) -> u64 {
        now_ms()
    }
}

/// The wall clock in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Time a guest call has spent waiting in the capability (spawning,
/// writing stdin, waiting for output or an exit), so that the guest's time
/// budget can count only the guest's own execution (see `runtime`).
#[derive(Debug, Default)]
pub(crate) struct HostClock {
    /// The total since it was last reset.
    pub(crate) in_host: Duration,
}

/// The capability over a [`ProcessTable`], timing each call into a
/// [`HostClock`].
pub(crate) struct TimedCapability;

impl HasData for TimedCapability {
    type Data<'a> = Timed<'a>;
}

/// What [`TimedCapability`] finds in the store: the table and the clock.
pub(crate) struct Timed<'a> {
    pub(crate) table: &'a ProcessTable,
    pub(crate) clock: &'a mut HostClock,
}

/// Like [`add_to_linker`], charging the time of every capability call to
/// the [`HostClock`] that `get` finds next to the table.
pub(crate) fn add_timed_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> Timed<'_>,
) -> anyhow::Result<()> {
    types::add_to_linker::<T, TimedCapability>(linker, get).map_err(anyhow::Error::from)?;
    process::add_to_linker::<T, TimedCapability>(linker, get).map_err(anyhow::Error::from)?;
    Ok(())
}

impl Timed<'_> {
    async fn time<R>(&mut self, call: impl Future<Output = R>) -> R {
        let started = std::time::Instant::now();
        let result = call.await;
        self.clock.in_host += started.elapsed();
        result
    }
}

impl types::Host for Timed<'_> {}

impl process::Host for Timed<'_> {
    async fn start(&mut self, request: StartRequest) -> Result<ProcessInfo, ProcessError> {
        let table = self.table;
        self.time(async { ProcessTable::start(table, request) }).await
    }

    async fn get(&mut self, pid: u32) -> Result<ProcessInfo, ProcessError> {
        ProcessTable::get(self.table, pid)
    }

    async fn list(&mut self) -> Vec<ProcessInfo> {
        ProcessTable::list(self.table)
    }

    async fn signal(&mut self, pid: u32, signal: i32) -> Result<(), ProcessError> {
        ProcessTable::signal(self.table, pid, signal)
    }

    async fn kill(&mut self, pid: u32) -> Result<(), ProcessError> {
        ProcessTable::kill(self.table, pid)
    }

    async fn write_stdin(&mut self, pid: u32, data: Vec<u8>) -> Result<(), ProcessError> {
        let table = self.table;
        self.time(ProcessTable::write_stdin(table, pid, data)).await
    }

    async fn close_stdin(&mut self, pid: u32) -> Result<(), ProcessError> {
        ProcessTable::close_stdin(self.table, pid)
    }

    async fn read_output(
        &mut self,
        pid: u32,
        selector: OutputSelector,
        cursor: u64,
        max_lines: u32,
        wait_ms: u32,
    ) -> Result<OutputChunk, ProcessError> {
        let (table, wait) = (self.table, Duration::from_millis(wait_ms.into()));
        self.time(ProcessTable::read_output(table, pid, selector, cursor, max_lines, wait)).await
    }

    async fn wait(&mut self, pid: u32, timeout_ms: u32) -> Result<ProcessInfo, ProcessError> {
        let table = self.table;
        self.time(ProcessTable::wait(table, pid, Duration::from_millis(timeout_ms.into()))).await
    }

    async fn summary(&mut self) -> HostSummary {
        ProcessTable::summary(self.table)
    }

    async fn now_ms(&mut self) -> u64 {
        now_ms()
    }
}
