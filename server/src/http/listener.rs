//! The accept loop: at most `max_connections` open at once, each closed
//! when it outlives its phase's deadline, an accept that fails for want of
//! file descriptors survived, and a graceful shutdown.
//!
//! At the limit, a new connection takes the place of the one that has been
//! waiting longest (for a request head, or idle between requests): a flood
//! of connections that never send a request then costs a slot each, not the
//! server, and a real client still gets in. Connections busy with a request
//! or a stream are never cut; when all are busy, the new one is closed at
//! once (never queued).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use super::connection::{ConnService, ConnState, Deadlines, Watched};

/// How many connections, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// The deadlines of a connection's waiting phases.
    pub deadlines: Deadlines,
    /// The most connections open at once.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            deadlines: Deadlines { header: Duration::from_secs(10), idle: Duration::from_secs(60) },
            max_connections: 512,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops
/// accepting, closes the connections that are waiting, lets each busy one
/// finish its response, and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let registry =
        Arc::new(Registry { open: Mutex::new(HashMap::new()), next: AtomicU64::new(0), freed: Notify::new() });
    let epoch = Instant::now();
    let (stop, stopping) = watch::channel(false);
    // Each connection task holds a receiver; `closed()` waits for them all.
    let (all_closed, closed) = watch::channel(());
    let mut no_fds = Quiet::default();
    let mut full = Quiet::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Registered before anything is closed, so that no close is missed.
                let freed = registry.freed.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if !accept_failed(&e, &registry, &mut no_fds) {
                    continue;
                }
                tokio::select! {
                    () = freed => continue,
                    () = tokio::time::sleep(PAUSE) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        if !registry.make_room(limits.max_connections) {
            if let Some(missed) = full.due() {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    refused_since_last_warning = missed,
                    "every connection is busy: closing new ones until one is free"
                );
            }
            drop(stream);
            continue;
        }
        let (id, conn) = registry.add(epoch);
        let task = Connection { registry: registry.clone(), id, conn, _closed: closed.clone() };
        tokio::spawn(task.serve(stream, router.clone(), limits.deadlines, stopping.clone()));
    }
    drop(listener);
    let _ = stop.send(true);
    drop(closed);
    all_closed.closed().await;
    Ok(())
}

/// The longest an accept that failed for want of resources waits before
/// trying again (it tries as soon as a connection closes).
const PAUSE: Duration = Duration::from_millis(100);

/// Decides what a failed `accept` costs; `true` when the loop must wait for
/// a connection to close (or [`PAUSE`]) before the next one. A connection
/// that failed on its own is skipped at once. Running out of descriptors
/// closes the connection that has waited longest: its descriptor is the one
/// the next accept needs, and waiting for it keeps the loop from spinning.
fn accept_failed(error: &io::Error, registry: &Registry, no_fds: &mut Quiet) -> bool {
    use io::ErrorKind::*;
    if matches!(error.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted) {
        return false;
    }
    let out_of_fds = matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
    if out_of_fds {
        registry.close_longest_waiting(&registry.lock());
    }
    if let Some(missed) = no_fds.due() {
        if out_of_fds {
            tracing::warn!(failed_since_last_warning = missed, "accept: {error}; closing idle connections, pausing");
        } else {
            tracing::error!(failed_since_last_warning = missed, "accept: {error}; pausing");
        }
    }
    true
}

/// The open connections, for the limit.
struct Registry {
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    next: AtomicU64,
    /// Told whenever a connection closes (its descriptor is free).
    freed: Notify,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        // A panic elsewhere while holding the lock leaves the map usable.
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn add(&self, epoch: Instant) -> (u64, Arc<ConnState>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(ConnState::new(epoch));
        self.lock().insert(id, conn.clone());
        (id, conn)
    }

    /// Whether one more connection may open, closing the longest-waiting
    /// one when the limit is reached.
    fn make_room(&self, max: usize) -> bool {
        let open = self.lock();
        open.len() < max || self.close_longest_waiting(&open)
    }

    fn close_longest_waiting(&self, open: &HashMap<u64, Arc<ConnState>>) -> bool {
        // A few tries: the chosen one may turn busy before it is told.
        for _ in 0..4 {
            let Some(oldest) = open.values().filter_map(|c| Some((c.waiting_since()?, c))).min_by_key(|(s, _)| *s)
            else {
                return false;
            };
            if oldest.1.close_if_waiting() {
                return true;
            }
        }
        false
    }
}

/// One accepted connection's task; leaves the registry however it ends.
struct Connection {
    registry: Arc<Registry>,
    id: u64,
    conn: Arc<ConnState>,
    _closed: watch::Receiver<()>,
}

impl Connection {
    async fn serve(self, stream: TcpStream, router: Router, deadlines: Deadlines, mut stopping: watch::Receiver<bool>) {
        let io = TokioIo::new(Watched { inner: stream, conn: self.conn.clone() });
        let service = ConnService { router, conn: self.conn.clone() };
        let http = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        let watchdog = self.conn.watchdog(deadlines);
        tokio::pin!(http, watchdog);
        let mut draining = false;
        loop {
            tokio::select! {
                result = http.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("connection ended: {e}");
                    }
                    return;
                }
                // Dropping the connection closes it.
                () = watchdog.as_mut(), if !draining => return,
                _ = stopping.changed(), if !draining => {
                    if self.conn.close_if_waiting() {
                        return;
                    }
                    // Busy: finish this response, then close.
                    http.as_mut().graceful_shutdown();
                    draining = true;
                }
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
        self.registry.freed.notify_waiters();
    }
}

/// At most one warning per [`Quiet::EVERY`] for a condition that may recur
/// thousands of times a second, with the count of those not logged.
#[derive(Default)]
struct Quiet {
    last: Option<Instant>,
    missed: u64,
}

impl Quiet {
    const EVERY: Duration = Duration::from_secs(10);

    fn due(&mut self) -> Option<u64> {
        if self.last.is_some_and(|last| last.elapsed() < Self::EVERY) {
            self.missed += 1;
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.missed))
    }
}
