//! Gives any wasmtime component the `sandbox:process/process` capability.
//!
//! The idiom of wasmtime's small capability crates: one [`add_to_linker`],
//! one view type ([`ProcessView`]) that the caller builds from its store's
//! data, and one `Host` implementation on that view. The runtime's own view
//! also carries a [`HostClock`], so that a guest's time budget counts only
//! its own running; an embedder's view has none.

use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker};

use crate::bindings::sandbox::process::{process, types};
use crate::capability::{OutputHold, ProcessTable};
use crate::types::{HostSummary, OutputChunk, OutputSelector, ProcessError, ProcessInfo, StartRequest};

/// What the capability's imports see of a store: the [`ProcessTable`] that
/// serves them (and, inside this crate's runtime, the clock that charges
/// their waits).
pub struct ProcessView<'a> {
    table: &'a ProcessTable,
    clock: Option<&'a mut HostClock>,
    /// Inside this crate's runtime, for a call whose starts are held for
    /// one consumer (a `run`): where their holds go.
    holds: Option<&'a mut Vec<OutputHold>>,
}

impl<'a> ProcessView<'a> {
    /// A view of `table`.
    pub fn new(table: &'a ProcessTable) -> Self {
        ProcessView { table, clock: None, holds: None }
    }

    /// A view of `table` that adds the time of every waiting import to
    /// `clock`.
    pub(crate) fn timed(table: &'a ProcessTable, clock: &'a mut HostClock) -> Self {
        ProcessView { table, clock: Some(clock), holds: None }
    }

    /// The view, starting processes held for one consumer when `holds` is
    /// set, their holds pushed there.
    pub(crate) fn holding(mut self, holds: Option<&'a mut Vec<OutputHold>>) -> Self {
        self.holds = holds;
        self
    }

    /// Runs `call`, charging its time to the clock when there is one.
    async fn waiting<R>(&mut self, call: impl Future<Output = R>) -> R {
        let started = Instant::now();
        let result = call.await;
        if let Some(clock) = self.clock.as_deref_mut() {
            clock.in_host += started.elapsed();
        }
        result
    }
}

impl<'a> From<&'a ProcessTable> for ProcessView<'a> {
    fn from(table: &'a ProcessTable) -> Self {
        ProcessView::new(table)
    }
}

/// The [`HasData`] marker that links the capability's imports to the
/// [`ProcessView`] an embedder's closure builds.
pub struct ProcessCapability;

impl HasData for ProcessCapability {
    type Data<'a> = ProcessView<'a>;
}

/// Adds the `sandbox:process/types` and `sandbox:process/process` imports
/// to `linker`, served by the [`ProcessView`] that `get` builds from the
/// store's data.
///
/// The imports that wait (`start`, `write-stdin`, `read-output`, `wait`)
/// are async host functions that yield to the executor instead of blocking
/// a thread, so instantiate and call the component with the `_async`
/// methods; the others answer at once.
///
/// ```no_run
/// use sandbox_process::{Limits, Policy, ProcessTable, ProcessView, add_to_linker};
/// use wasmtime::component::Linker;
/// use wasmtime::{Config, Engine};
///
/// struct MyState {
///     processes: ProcessTable,
/// }
///
/// # fn main() -> wasmtime::Result<()> {
/// let engine = Engine::new(&Config::new())?;
/// let mut linker = Linker::<MyState>::new(&engine);
/// add_to_linker(&mut linker, |state: &mut MyState| ProcessView::new(&state.processes))?;
/// // ... then `linker.instantiate_async(&mut store, &component)` with a
/// // `Store<MyState>` whose `processes` is
/// // `ProcessTable::new(Policy::default(), Limits::default())`.
/// # Ok(())
/// # }
/// ```
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> ProcessView<'_>,
) -> wasmtime::Result<()> {
    types::add_to_linker::<T, ProcessCapability>(linker, get)?;
    process::add_to_linker::<T, ProcessCapability>(linker, get)
}

impl types::Host for ProcessView<'_> {}

impl process::Host for ProcessView<'_> {
    async fn start(&mut self, request: StartRequest) -> Result<ProcessInfo, ProcessError> {
        let table = self.table;
        let holds = self.holds.take();
        let (started, holds) = self
            .waiting(async move {
                match holds {
                    Some(holds) => {
                        let started = table.start_held(request).await.map(|(info, hold)| {
                            holds.push(hold);
                            info
                        });
                        (started, Some(holds))
                    }
                    None => (table.start(request).await, None),
                }
            })
            .await;
        self.holds = holds;
        started
    }

    fn get(&mut self, pid: u32) -> Result<ProcessInfo, ProcessError> {
        self.table.get(pid)
    }

    fn list(&mut self) -> Vec<ProcessInfo> {
        self.table.list()
    }

    fn signal(&mut self, pid: u32, signal: i32) -> Result<(), ProcessError> {
        self.table.signal(pid, signal)
    }

    fn kill(&mut self, pid: u32) -> Result<(), ProcessError> {
        self.table.kill(pid)
    }

    async fn write_stdin(&mut self, pid: u32, data: Vec<u8>) -> Result<(), ProcessError> {
        let table = self.table;
        self.waiting(table.write_stdin(pid, data)).await
    }

    fn close_stdin(&mut self, pid: u32) -> Result<(), ProcessError> {
        self.table.close_stdin(pid)
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
        self.waiting(table.read_output(pid, selector, cursor, max_lines, wait)).await
    }

    async fn wait(&mut self, pid: u32, timeout_ms: u32) -> Result<ProcessInfo, ProcessError> {
        let table = self.table;
        self.waiting(table.wait(pid, Duration::from_millis(timeout_ms.into()))).await
    }

    fn summary(&mut self) -> HostSummary {
        self.table.summary()
    }

    fn now_ms(&mut self) -> u64 {
        crate::now_ms()
    }
}

/// Time a guest call has spent waiting in the capability (spawning,
/// writing stdin, waiting for output or an exit), so that the guest's time
/// budget can count only the guest's own execution (see `runtime`).
#[derive(Debug, Default)]
pub(crate) struct HostClock {
    /// The total since it was last reset.
    pub(crate) in_host: Duration,
}
