//! The wasmtime embedding of the guest: one engine, the component compiled
//! once and pre-instantiated, a fresh store per call with its own memory cap
//! and time budget.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::Result;
use wasmtime::component::Linker;
use wasmtime::error::Context;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder, UpdateDeadline,
};

use crate::bindings::exports::sandbox::process::api;
use crate::bindings::{Guest, GuestPre};
use crate::capability::{OutputHold, ProcessTable};
use crate::component_cache;
use crate::linker::{HostClock, ProcessView};
use crate::types::OutputSelector;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use api::{OutputPage, OutputPosition, Reply, StreamPosition, StreamStep};

/// The guest component (world `guest`), built from `guest/` for
/// `wasm32-wasip2` by the `sandbox-process-artifacts` crate.
pub const GUEST_WASM: &[u8] = sandbox_process_artifacts::GUEST_WASM;

/// The validator component (world `validator`): the guest's validation
/// alone, with no imports, for runtimes that have no capability to give.
pub const VALIDATOR_WASM: &[u8] = sandbox_process_artifacts::VALIDATOR_WASM;

/// How often the epoch advances: the resolution of the per-call time budget.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What one guest call may use.
#[derive(Clone, Debug)]
pub struct GuestLimits {
    /// The most linear memory one guest instance may grow to.
    pub memory_bytes: usize,
    /// The wall-clock time one guest call may run; past it the call traps.
    /// Time spent waiting in the capability (a spawn, a stdin write the
    /// child is slow to read, a wait for output) is not counted: those
    /// waits have bounds of their own.
    pub call_budget: Duration,
    /// How many guest instances may exist at once (the instance pool size).
    /// A call that finds them all in use waits for one. Calls that wait in
    /// the capability (a stdin write to a child slow to read) hold theirs
    /// meanwhile, so keep it well above the calls expected in flight.
    ///
    /// Every slot of the pool reserves address space (a fiber stack and its
    /// guard page, a linear memory's reservation): a pool much larger than
    /// the calls really in flight only costs start-up time and mappings.
    pub max_instances: u32,
    /// Where compiled components are cached; `None` compiles at every start.
    pub cache_dir: Option<PathBuf>,
}

impl Default for GuestLimits {
    fn default() -> Self {
        GuestLimits {
            memory_bytes: 64 << 20,
            call_budget: Duration::from_secs(5),
            max_instances: 256,
            cache_dir: component_cache::default_dir(),
        }
    }
}

/// The data of one store: what a single guest call can reach. The guest
/// imports the capability and nothing else (no WASI: it has no std), so
/// that is all there is.
struct CallState {
    processes: ProcessTable,
    limits: StoreLimits,
    /// When the current call began, and its time in the capability so far.
    call_started: Instant,
    clock: HostClock,
    /// Set for a call whose starts are held for one consumer: their holds.
    holds: Option<Vec<OutputHold>>,
}

impl CallState {
    /// Starts the budget of a new call.
    fn new_call(&mut self) {
        self.call_started = Instant::now();
        self.clock = HostClock::default();
    }
}

/// Runs the guest's exported API against a [`ProcessTable`].
///
/// Cheap to share behind an `Arc`: every call gets its own store and
/// instance, so calls run concurrently and a trap affects only its own call.
pub struct GuestRuntime {
    engine: Engine,
    pre: GuestPre<CallState>,
    processes: ProcessTable,
    limits: GuestLimits,
    /// One permit per instance of the pool: calls past it queue here rather
    /// than fail to instantiate.
    slots: Arc<Semaphore>,
    ticker_stop: Arc<AtomicBool>,
}

impl GuestRuntime {
    /// Compiles (or loads from the cache) the embedded guest and prepares it
    /// for fast instantiation.
    pub fn new(processes: ProcessTable, limits: GuestLimits) -> Result<Self> {
        Self::with_component(processes, limits, GUEST_WASM)
    }

    /// Like [`GuestRuntime::new`] with another build of the guest (tests use
    /// this to load faulty guests).
    pub fn with_component(processes: ProcessTable, limits: GuestLimits, wasm: &[u8]) -> Result<Self> {
        let engine = Engine::new(&engine_config(&limits)).context("configuring wasmtime")?;
        let component = component_cache::load(&engine, "sandbox-process-guest", wasm, limits.cache_dir.as_deref())?;
        let mut linker = Linker::new(&engine);
        crate::linker::add_to_linker(&mut linker, |s: &mut CallState| {
            ProcessView::timed(&s.processes, &mut s.clock).holding(s.holds.as_mut())
        })?;
        let pre = linker.instantiate_pre(&component).context("linking the guest")?;
        let pre = GuestPre::new(pre).context("the guest does not export the API")?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone());
        let slots = Arc::new(Semaphore::new(limits.max_instances.max(1) as usize));
        Ok(GuestRuntime { engine, pre, processes, limits, slots, ticker_stop })
    }

    /// The processes this runtime's guests manage.
    pub fn processes(&self) -> &ProcessTable {
        &self.processes
    }

    /// The engine, for embedders that load more components into it.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A fresh store and instance, kept for as many calls as the caller
    /// makes. Each call gets the whole time budget again.
    ///
    /// Not what the server does: there every request gets a fresh instance,
    /// so no state carries over between requests and a trap affects only
    /// its own call. Calls in one session share the instance's memory, and
    /// after a trap the session is unusable (drop it). It saves the
    /// instantiation (tens of microseconds) for a trusted caller making
    /// many calls, and lets the benchmark measure what that costs. It holds
    /// one slot of the instance pool until dropped.
    pub async fn session(&self) -> Result<GuestSession> {
        let slot = self.slots.clone().acquire_owned().await.context("the instance pool is closed")?;
        let state = CallState {
            processes: self.processes.clone(),
            limits: StoreLimitsBuilder::new().memory_size(self.limits.memory_bytes).instances(16).build(),
            call_started: Instant::now(),
            clock: HostClock::default(),
            holds: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // At the deadline, what the call spent in the capability is given
        // back: only the guest's own running counts against the budget.
        let budget = self.limits.call_budget;
        store.epoch_deadline_callback(move |store| {
            let state = store.data();
            let ran = state.call_started.elapsed().saturating_sub(state.clock.in_host);
            Ok(match budget.checked_sub(ran) {
                Some(left) if !left.is_zero() => UpdateDeadline::Continue(ticks(left)),
                _ => UpdateDeadline::Interrupt,
            })
        });
        let budget_ticks = ticks(self.limits.call_budget);
        store.set_epoch_deadline(budget_ticks);
        let guest = self.pre.instantiate_async(&mut store).await.context("instantiating the guest")?;
        Ok(GuestSession { store, guest, budget_ticks, _slot: slot })
    }
}

/// One guest instance and its store, for several calls in a row (see
/// [`GuestRuntime::session`] for what that trades).
pub struct GuestSession {
    store: Store<CallState>,
    guest: Guest,
    budget_ticks: u64,
    // Declared last: given back after the store (and its instance) is gone.
    _slot: OwnedSemaphorePermit,
}

impl GuestRuntime {
    /// [`GuestRuntime::run_open`], with the output of the process it starts
    /// held for the caller, who then is its one consumer: nothing it has not
    /// read is dropped, and the child blocks while a window of output waits
    /// (see [`OutputHold`]). The caller advances the hold as the stream's
    /// frames are delivered, and drops it when the stream ends or its
    /// reader goes.
    pub async fn run_open_held(&self, body: &[u8]) -> Result<(Result<StreamStep, Reply>, Option<OutputHold>)> {
        let mut session = self.session().await?;
        session.store.data_mut().holds = Some(Vec::new());
        let opened = session.run_open(body).await?;
        Ok((opened, session.take_hold()))
    }

    /// [`GuestRuntime::start`], with the output of the process it starts
    /// held for the caller (as [`GuestRuntime::run_open_held`]): for a
    /// caller that reads all of it, as `sandbox-process exec` does.
    pub async fn start_held(&self, body: &[u8]) -> Result<(Reply, Option<OutputHold>)> {
        let mut session = self.session().await?;
        session.store.data_mut().holds = Some(Vec::new());
        let reply = session.start(body).await?;
        Ok((reply, session.take_hold()))
    }
}

impl GuestSession {
    /// The hold of the process this session's call started, if it did.
    fn take_hold(&mut self) -> Option<OutputHold> {
        self.store.data_mut().holds.take().and_then(|mut holds| holds.pop())
    }
}

impl Drop for GuestRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// One method per exported API function, on a session (a call on its
/// instance) and on the runtime (a fresh instance for one call).
macro_rules! api_calls {
    ($($(#[$doc:meta])* $name:ident => $call:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        impl GuestSession {
            $(
                $(#[$doc])*
                pub async fn $name(&mut self, $($arg: $ty),*) -> Result<$ret> {
                    self.store.data_mut().new_call();
                    self.store.set_epoch_deadline(self.budget_ticks);
                    let api = self.guest.sandbox_process_api();
                    api.$call(&mut self.store, $($arg),*).await.map_err(|e| guest_failure(e, stringify!($name)))
                }
            )*
        }

        impl GuestRuntime {
            $(
                $(#[$doc])*
                pub async fn $name(&self, $($arg: $ty),*) -> Result<$ret> {
                    self.session().await?.$name($($arg),*).await
                }
            )*
        }
    };
}

api_calls! {
    /// `POST /processes`.
    start => call_start(body: &[u8]) -> Reply;
    /// `GET /processes`.
    list => call_list() -> Reply;
    /// `GET /processes/{ref}`.
    get => call_get(process_ref: &str) -> Reply;
    /// `DELETE /processes/{ref}`.
    kill => call_kill(process_ref: &str) -> Reply;
    /// `POST /processes/{ref}/signal`.
    signal => call_signal(process_ref: &str, body: &[u8]) -> Reply;
    /// `POST /processes/{ref}/stdin`.
    write_stdin => call_write_stdin(process_ref: &str, data: &[u8]) -> Reply;
    /// `POST /processes/{ref}/stdin/close`.
    close_stdin => call_close_stdin(process_ref: &str) -> Reply;
    /// `GET /processes/{ref}/{stdout,stderr,output}`.
    output => call_output(process_ref: &str, selector: OutputSelector) -> Reply;
    /// `GET /health`.
    health => call_health() -> Reply;
    /// `GET /info`.
    info => call_info() -> Reply;
    /// Checks a start request without starting anything.
    validate => call_validate(body: &[u8]) -> Reply;
    /// Opens a follow stream, or returns the error reply.
    follow_open => call_follow_open(process_ref: &str, selector: OutputSelector) -> Result<StreamPosition, Reply>;
    /// `POST /processes/run`: starts the process; the first step carries the start frame.
    run_open => call_run_open(body: &[u8]) -> Result<StreamStep, Reply>;
    /// The next step of a stream, waiting up to `wait_ms` inside the guest.
    stream_next => call_stream_next(position: StreamPosition, wait_ms: u32) -> StreamStep;
    /// `GET /processes/{ref}/{stdout,stderr,output}` in pages: the first, or the error reply.
    output_open => call_output_open(process_ref: &str, selector: OutputSelector) -> Result<OutputPage, Reply>;
    /// The next page of an output reply.
    output_next => call_output_next(position: OutputPosition) -> OutputPage;
}

/// Epoch ticks in `time`, at least one.
fn ticks(time: Duration) -> u64 {
    u64::try_from(time.as_millis() / EPOCH_TICK.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn guest_failure(e: wasmtime::Error, call: &str) -> wasmtime::Error {
    e.context(format!("guest call `{call}` failed"))
}

/// The most memory a used instance slot keeps resident for the next
/// instance. Only pages the last instance dirtied count, and those are
/// copied back from the image rather than unmapped.
const KEEP_RESIDENT: usize = 1 << 20;

fn engine_config(limits: &GuestLimits) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    let mut pool = PoolingAllocationConfig::default();
    let n = limits.max_instances.max(1);
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(4))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .max_memory_size(limits.memory_bytes);
    // Every call runs on a fresh instance, so resetting the previous one's
    // memory is on every call's path. By default that is an madvise of the
    // whole heap (a TLB shootdown) and a page fault for each page the next
    // instance touches. With the PAGEMAP_SCAN ioctl (Linux 6.7) wasmtime
    // finds exactly the pages the instance dirtied and copies the image back
    // over them, so the slot stays mapped: ~30% off a fresh instance. Without
    // the ioctl, keeping memory resident would mean copying the first
    // KEEP_RESIDENT bytes whether dirty or not, which costs more than it
    // saves: then keep the default.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes).linear_memory_keep_resident(KEEP_RESIDENT).table_keep_resident(64 << 10);
    }
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until `stop` is set.
fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("sandbox-process-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .expect("spawning the epoch thread");
}
