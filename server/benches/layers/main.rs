//! Every layer of sandbox-process against native, in one run.
//!
//! `cargo bench -p sandbox-process-server --bench layers` prints a markdown table
//! of medians, 90th percentiles and ratios (see BENCHMARKS.md for the
//! method). Layers that are compared are measured interleaved, so that the
//! load of a shared machine drifts over all of them alike.
//!
//! Environment:
//! - `BENCH_SCALE` (default 1): multiplies every iteration count.
//! - `BENCH_ONLY` (e.g. `1-6,11`): only these sections.
//! - `BENCH_SERVER_LOG`: echo the servers' logs.
//!
//! The binary also plays two helper roles, chosen by its first argument:
//! `__baseline-server` (the native baseline server) and `__ticker` (a child
//! that prints its monotonic clock).

mod baseline;
mod servers;
mod stats;

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sandbox_process::capability::Containment;
use sandbox_process::types::{OutputMode, StartRequest, StdinMode};
use sandbox_process::{GuestLimits, GuestRuntime, Limits, Policy, ProcessTable};
use servers::Server;
use stats::{Report, Samples, bytes, time};

/// The request every spawn layer starts: `true`, everything else default
/// (stdin closed, stdout and stderr captured).
const TRUE: &str = r#"{"command":"true"}"#;
/// A request with every field, for validation alone.
const FULL_REQUEST: &[u8] = br#"{"command":"python","args":["-m","http.server","8080"],"env":{"PORT":"8080"},"working_dir":"/workspace","stdin_mode":"pipe","stdout_mode":"capture","stderr_mode":"capture"}"#;
const SLEEP: &str = r#"{"command":"sleep","args":["3600"]}"#;
const YES: &str = r#"{"command":"yes"}"#;

struct Config {
    scale: f64,
    only: Option<Vec<u32>>,
    cache: PathBuf,
}

impl Config {
    fn from_env() -> Config {
        let scale = std::env::var("BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
        let only = std::env::var("BENCH_ONLY").ok().map(|s| {
            let mut v = Vec::new();
            for part in s.split(',').filter(|p| !p.is_empty()) {
                match part.split_once('-') {
                    Some((a, b)) => v.extend(a.trim().parse::<u32>().unwrap()..=b.trim().parse::<u32>().unwrap()),
                    None => v.push(part.trim().parse().unwrap()),
                }
            }
            v
        });
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-cache");
        Config { scale, only, cache }
    }

    fn n(&self, base: usize) -> usize {
        ((base as f64 * self.scale).round() as usize).max(5)
    }

    fn runs(&self, section: u32) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(&section))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("__baseline-server") => return baseline::main(args[2].clone(), args[3].parse().unwrap()),
        Some("__ticker") => {
            return ticker(args[2].parse().unwrap(), args[3].parse().unwrap(), args[4].parse().unwrap());
        }
        Some("__profile") => return profile(&args[2], args[3].parse().unwrap()),
        _ => {}
    }
    let cfg = Config::from_env();
    let started = Instant::now();
    eprintln!("sandbox-process layers benchmark (BENCH_SCALE={})", cfg.scale);
    eprintln!("  load before: {}", loadavg());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut report = Report::default();
    rt.block_on(async {
        if cfg.runs(1) || cfg.runs(2) || cfg.runs(3) || cfg.runs(4) {
            spawn_layers(&cfg, &mut report).await;
        }
        if cfg.runs(2) {
            pool_size_effect(&cfg, &mut report).await;
        }
        if cfg.runs(5) || cfg.runs(6) {
            boundary_layers(&cfg, &mut report).await;
        }
        if cfg.runs(6) {
            instantiation_ablation(&cfg, &mut report).await;
        }
        if cfg.runs(7) {
            http_layers(&cfg, &mut report).await;
        }
        if cfg.runs(8) {
            follow_latency(&cfg, &mut report).await;
        }
        if cfg.runs(9) || cfg.runs(10) {
            scaling_and_memory(&cfg, &mut report).await;
        }
        if cfg.runs(10) {
            flood_memory(&cfg, &mut report).await;
        }
    });
    drop(rt);
    if cfg.runs(11) {
        cli_cold_start(&cfg, &mut report);
    }
    report.note(format!("load after: {}; whole run {:.0} s", loadavg(), started.elapsed().as_secs_f64()));
    println!("{}", report.markdown());
}

/// `layers __profile WHAT SECONDS`: one operation in a loop, for `perf
/// record` (WHAT: `instantiate`, `validate`, `start`, `start-reused`,
/// `start-capability`).
fn profile(what: &str, seconds: u64) {
    let cfg = Config::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let table = ProcessTable::new(Policy::default(), Limits::default());
        let runtime = GuestRuntime::new(table.clone(), guest_limits(&cfg)).unwrap();
        let mut session = runtime.session().await.unwrap();
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut n = 0u64;
        while Instant::now() < until {
            for _ in 0..100 {
                match what {
                    "instantiate" => drop(runtime.session().await.unwrap()),
                    "validate" => drop(runtime.validate(FULL_REQUEST).await.unwrap()),
                    "start" => {
                        let reply = runtime.start(TRUE.as_bytes()).await.unwrap();
                        table.wait(pid_in(&reply.body), Duration::from_secs(10)).await.unwrap();
                    }
                    "start-reused" => {
                        let reply = session.start(TRUE.as_bytes()).await.unwrap();
                        table.wait(pid_in(&reply.body), Duration::from_secs(10)).await.unwrap();
                    }
                    "start-capability" => {
                        let pid = table.start(true_request()).await.unwrap().pid;
                        table.wait(pid, Duration::from_secs(10)).await.unwrap();
                    }
                    other => panic!("nothing to profile called {other}"),
                }
                n += 1;
            }
        }
        eprintln!("{what}: {n} in {seconds} s, {:.1} µs each", seconds as f64 * 1e6 / n as f64);
    });
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn true_request() -> StartRequest {
    StartRequest {
        command: "true".into(),
        args: vec![],
        env: vec![],
        working_dir: None,
        stdin_mode: StdinMode::Closed,
        stdout_mode: OutputMode::Capture,
        stderr_mode: OutputMode::Capture,
    }
}

fn guest_limits(cfg: &Config) -> GuestLimits {
    GuestLimits { cache_dir: Some(cfg.cache.clone()), ..GuestLimits::default() }
}

/// The pid in a process-info reply, without a JSON parser (it is the first
/// member): every guest layer pays the same.
fn pid_in(body: &str) -> u32 {
    let rest = body.strip_prefix("{\"pid\":").unwrap_or_else(|| panic!("not a process-info: {body}"));
    rest[..rest.find(',').unwrap()].parse().unwrap()
}

// ---------------------------------------------------------------- 1 to 4

/// Spawn + wait of `true`, from the bare OS call up to the guest with a
/// fresh instance, interleaved one of each per round, in a shuffled order.
async fn spawn_layers(cfg: &Config, report: &mut Report) {
    eprintln!("[1-4] spawn + wait of `true`");
    let table = ProcessTable::new(Policy::default(), Limits::default());
    let spawn_table = ProcessTable::new(Policy { kill_on_host_death: false, ..Policy::default() }, Limits::default());
    let group_table =
        ProcessTable::new(Policy { containment: Containment::ProcessGroup, ..Policy::default() }, Limits::default());
    let runtime = GuestRuntime::new(table.clone(), guest_limits(cfg)).unwrap();
    let mut session = runtime.session().await.unwrap();
    let wait = Duration::from_secs(10);

    const KINDS: usize = 7;
    let mut samples: Vec<Samples> = vec![Samples::default(); KINDS];
    let n = cfg.n(400);
    let mut order: Vec<usize> = (0..KINDS).collect();
    let mut rng = Shuffle(0x9e37_79b9_7f4a_7c15);
    for round in 0..n + 20 {
        // A new order each round: a layer that leaves work behind (a forked
        // child's address space to tear down) must not always slow the same
        // next one.
        rng.shuffle(&mut order);
        for &kind in &order {
            let t = Instant::now();
            match kind {
                0 => {
                    let status = Command::new("true")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .unwrap();
                    assert!(status.success());
                }
                1 => native_like_capability(false),
                2 => {
                    let pid = table.start(true_request()).await.unwrap().pid;
                    table.wait(pid, wait).await.unwrap();
                }
                3 => {
                    let pid = spawn_table.start(true_request()).await.unwrap().pid;
                    spawn_table.wait(pid, wait).await.unwrap();
                }
                6 => {
                    let pid = group_table.start(true_request()).await.unwrap().pid;
                    group_table.wait(pid, wait).await.unwrap();
                }
                4 => {
                    let reply = session.start(TRUE.as_bytes()).await.unwrap();
                    table.wait(pid_in(&reply.body), wait).await.unwrap();
                }
                _ => {
                    let reply = runtime.start(TRUE.as_bytes()).await.unwrap();
                    table.wait(pid_in(&reply.body), wait).await.unwrap();
                }
            }
            if round >= 20 {
                samples[kind].push(t.elapsed());
            }
        }
    }
    let floor = samples[0].median();
    let native = Some(("(1)", floor));
    report.timing("1", "native spawn+wait of `true` (std, stdio to /dev/null)", &samples[0], None);
    // Apart, after the rest: a forked child's teardown of its copy of this
    // host's address space outlasts the call and slows whatever comes next.
    let mut forked = Samples::default();
    for i in 0..n / 4 + 5 {
        let t = Instant::now();
        native_like_capability(true);
        if i >= 5 {
            forked.push(t.elapsed());
        }
    }
    // After a quiet moment: what a server with sporadic requests sees. (A
    // child moved into its cgroup after it started would wait here for an
    // RCU grace period; one created inside it does not.)
    let mut idle = Samples::default();
    let mut idle_native = Samples::default();
    for _ in 0..cfg.n(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = Instant::now();
        let pid = table.start(true_request()).await.unwrap().pid;
        table.wait(pid, wait).await.unwrap();
        idle.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = Instant::now();
        native_like_capability(false);
        idle_native.push(t.elapsed());
    }
    report.timing("1b", "native, std, pipes + own group (posix_spawn)", &samples[1], native);
    report.timing("1c", "native, std, pipes + own group + PDEATHSIG hook (fork), measured apart", &forked, native);
    report.timing("2", "capability: `ProcessTable::start` + `wait`", &samples[2], native);
    report.timing("2b", "capability without PDEATHSIG", &samples[3], native);
    report.timing("2c", "capability with process groups only (no cgroup per child)", &samples[6], native);
    report.timing(
        "2e",
        "capability, each after 100 ms idle",
        &idle,
        Some(("(1b) after 100 ms idle", idle_native.median())),
    );
    report.timing("3", "guest, reused instance: `start` + `wait`", &samples[4], native);
    report.timing("4", "guest, fresh instance (the server's path): `start` + `wait`", &samples[5], native);
    let r4 = samples[5].median() / floor;
    report.verdict("(4) fresh-instance guest path ≤ 1.05x native spawn+wait (1)", format!("{r4:.2}x"), r4 <= 1.05);
    report.note(format!(
        "the guest over the capability it calls: (4)/(2) = {:.3}x, (3)/(2) = {:.3}x; (4) − (2) = {}",
        samples[5].median() / samples[2].median(),
        samples[4].median() / samples[2].median(),
        time(samples[5].median() - samples[2].median()),
    ));
}

/// The capability's spawn + wait while the host holds an instance pool of
/// each size. A forked child copies (and its exec then tears down) every
/// mapping of the host, and each pool slot adds some; the capability
/// doesn't fork, so this should be flat.
async fn pool_size_effect(cfg: &Config, report: &mut Report) {
    eprintln!("[2] spawn cost against the size of the instance pool");
    let table = ProcessTable::new(Policy::default(), Limits::default());
    let sizes = [256u32, 32, 1];
    let mut samples = vec![Samples::default(); sizes.len()];
    let mut mappings = vec![0usize; sizes.len()];
    let per = cfg.n(40);
    for round in 0..6 {
        for (i, &size) in sizes.iter().enumerate() {
            let runtime =
                GuestRuntime::new(table.clone(), GuestLimits { max_instances: size, ..guest_limits(cfg) }).unwrap();
            drop(runtime.session().await.unwrap());
            mappings[i] = std::fs::read_to_string("/proc/self/maps").unwrap().lines().count();
            for _ in 0..per {
                let t = Instant::now();
                let pid = table.start(true_request()).await.unwrap().pid;
                table.wait(pid, Duration::from_secs(10)).await.unwrap();
                if round > 0 {
                    samples[i].push(t.elapsed());
                }
            }
        }
    }
    let base = samples[sizes.len() - 1].median();
    for (i, size) in sizes.iter().enumerate() {
        let against = if i + 1 == sizes.len() { None } else { Some(("pool of 1", base)) };
        report.timing(
            "2d",
            &format!("capability spawn+wait, host holding a pool of {size} ({} mappings)", mappings[i]),
            &samples[i],
            against,
        );
    }
}

/// A small deterministic shuffler (xorshift64), so that runs are alike.
struct Shuffle(u64);

impl Shuffle {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// What the capability asks of the OS, done with std directly: stdout and
/// stderr piped and drained, a new process group, the environment cleared;
/// with `fork`, the `PR_SET_PDEATHSIG` hook too (a `pre_exec` hook, which
/// makes std fork instead of using `posix_spawn`).
fn native_like_capability(fork: bool) {
    // A path, not a name: std looks a name up itself, and forks, when the
    // child's PATH differs from the host's.
    let true_path = ["/usr/bin/true", "/bin/true"].into_iter().find(|p| Path::new(p).exists()).expect("true");
    let mut cmd = Command::new(true_path);
    cmd.env_clear()
        .env("PATH", sandbox_process::capability::DEFAULT_PATH)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if fork {
        // SAFETY: the hook only calls prctl, async-signal-safe, between fork
        // and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().unwrap();
    let mut sink = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut sink).unwrap();
    child.stderr.take().unwrap().read_to_end(&mut sink).unwrap();
    assert!(child.wait().unwrap().success());
}

// ---------------------------------------------------------------- 5 and 6

/// Validation natively, through a reused instance and through a fresh one;
/// and instantiation alone.
async fn boundary_layers(cfg: &Config, report: &mut Report) {
    eprintln!("[5-6] the wasm boundary and instantiation");
    let table = ProcessTable::new(Policy::default(), Limits::default());
    let runtime = GuestRuntime::new(table, guest_limits(cfg)).unwrap();
    let mut session = runtime.session().await.unwrap();
    let expected = sandbox_process_guest::api::validate(FULL_REQUEST);
    assert_eq!(expected.status, 200, "{}", expected.body);

    let n = cfg.n(5000);
    let mut s: Vec<Samples> = vec![Samples::default(); 5];
    for round in 0..n + 200 {
        let keep = round >= 200;
        // 5: native.
        let t = Instant::now();
        let native = sandbox_process_guest::api::validate(std::hint::black_box(FULL_REQUEST));
        let d = t.elapsed();
        assert_eq!(native.body.len(), expected.body.len());
        if keep {
            s[0].push(d);
        }
        // 5: reused instance.
        let t = Instant::now();
        let reply = session.validate(FULL_REQUEST).await.unwrap();
        let d = t.elapsed();
        assert_eq!(reply.body, expected.body);
        if keep {
            s[1].push(d);
        }
        // 5: fresh instance.
        let t = Instant::now();
        let reply = runtime.validate(FULL_REQUEST).await.unwrap();
        let d = t.elapsed();
        assert_eq!(reply.status, 200);
        if keep {
            s[2].push(d);
        }
        // 6: instantiation, then the drop of the store and instance.
        let t = Instant::now();
        let fresh = runtime.session().await.unwrap();
        let d = t.elapsed();
        let t = Instant::now();
        drop(fresh);
        let d_drop = t.elapsed();
        if keep {
            s[3].push(d);
            s[4].push(d_drop);
        }
    }
    let native = s[0].median();
    if cfg.runs(5) {
        report.timing("5", "validate natively (`sandbox_process_guest::api::validate`)", &s[0], None);
        report.timing("5b", "validate through wasm, reused instance", &s[1], Some(("(5)", native)));
        report.timing(
            "5c",
            "validate through wasm, fresh instance (`GuestRuntime::validate`)",
            &s[2],
            Some(("(5)", native)),
        );
        let (rb, rc) = (s[1].median() / native, s[2].median() / native);
        report.verdict("(5b) validation through the wasm boundary ≤ 3x native", format!("{rb:.2}x"), rb <= 3.0);
        report.verdict("(5c) the same with a fresh instance ≤ 3x native", format!("{rc:.2}x"), rc <= 3.0);
    }
    if cfg.runs(6) {
        report.timing("6", "instantiation: fresh store + instance (`GuestRuntime::session`)", &s[3], None);
        report.timing("6b", "… and dropping them", &s[4], None);
        let total = s[3].median() + s[4].median();
        report.verdict("(6) fresh instance < 10 µs (create + drop)", time(total), total < 10_000.0);
    }
}

/// What each instantiation setting buys, on engines built here the way the
/// runtime builds its own, differing in one setting at a time.
async fn instantiation_ablation(cfg: &Config, report: &mut Report) {
    use sandbox_process::bindings::GuestPre;
    use wasmtime::component::{Component, Linker};
    use wasmtime::{Config as WasmConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

    // All the guest can reach: it imports the capability only.
    struct State {
        processes: ProcessTable,
    }

    eprintln!("[6] instantiation ablation");
    let table = ProcessTable::new(Policy::default(), Limits::default());
    let mut serialized: Option<Vec<u8>> = None;
    // (what, pooling, copy-on-write, keep dirty pages resident and reset them by PAGEMAP_SCAN)
    let variants: [(&str, bool, bool, bool); 4] = [
        ("pooling allocator, copy-on-write memory init", true, true, false),
        ("… and memory kept resident, reset with PAGEMAP_SCAN", true, true, true),
        ("pooling allocator, memory init by copying", true, false, false),
        ("on-demand allocator, copy-on-write memory init", false, true, false),
    ];
    let n = cfg.n(2000);
    let mut rows = Vec::new();
    for (what, pooling, cow, resident) in variants {
        let mut config = WasmConfig::new();
        config.epoch_interruption(true).memory_init_cow(cow);
        if pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(16)
                .total_core_instances(64)
                .total_memories(32)
                .total_tables(64)
                .total_stacks(16)
                .max_memory_size(64 << 20);
            if resident {
                pool.pagemap_scan(wasmtime::Enabled::Auto)
                    .linear_memory_keep_resident(1 << 20)
                    .table_keep_resident(64 << 10);
            }
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).unwrap();
        // SAFETY: the bytes are `Component::serialize`'s output in this very
        // process (below), trusted native code; an engine with other settings
        // gets an error (the fallback), not a wrong component.
        let component = match serialized.as_deref().map(|b| unsafe { Component::deserialize(&engine, b) }) {
            Some(Ok(c)) => c,
            _ => Component::new(&engine, sandbox_process::GUEST_WASM).unwrap(),
        };
        serialized.get_or_insert_with(|| component.serialize().unwrap());
        let mut linker = Linker::new(&engine);
        sandbox_process::add_to_linker(&mut linker, |s: &mut State| sandbox_process::ProcessView::new(&s.processes))
            .unwrap();
        let pre = GuestPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
        let mut s = Samples::default();
        for i in 0..n + 100 {
            let t = Instant::now();
            let state = State { processes: table.clone() };
            let mut store = Store::new(&engine, state);
            store.set_epoch_deadline(1000);
            let _guest = pre.instantiate_async(&mut store).await.unwrap();
            drop(store);
            if i >= 100 {
                s.push(t.elapsed());
            }
        }
        rows.push((what, s));
    }
    let base = rows[0].1.median();
    for (i, (what, s)) in rows.iter().enumerate() {
        let against = if i == 0 { None } else { Some(("(6c)", base)) };
        report.timing(
            &format!("6{}", ["c", "d", "e", "f"][i]),
            &format!("ablation: create + drop, {what}"),
            s,
            against,
        );
    }
}

// ---------------------------------------------------------------- 7

/// `POST /api/v1/processes` of `true` against both servers, in alternating
/// blocks, at concurrency 1 and 16.
async fn http_layers(cfg: &Config, report: &mut Report) {
    eprintln!("[7] HTTP POST /api/v1/processes of `true`");
    let servers = [Server::sandbox(4096, &cfg.cache), Server::baseline(4096)];
    for s in &servers {
        for _ in 0..30 {
            s.start_ok(TRUE).await;
        }
    }
    // Concurrency 1: blocks of 25 requests, alternating servers.
    let blocks = cfg.n(400) / 25;
    let mut c1 = [Samples::default(), Samples::default()];
    for b in 0..blocks {
        for i in [b % 2, (b + 1) % 2] {
            for _ in 0..25 {
                let t = Instant::now();
                servers[i].start_ok(TRUE).await;
                c1[i].push(t.elapsed());
            }
        }
    }
    // Concurrency 16: rounds of 16 clients × `per` requests, alternating.
    let rounds = 6;
    let per = cfg.n(20);
    let mut c16 = [Samples::default(), Samples::default()];
    let mut wall = [Duration::ZERO; 2];
    let mut count = [0usize; 2];
    let servers = Arc::new(servers);
    for round in 0..rounds + 1 {
        for i in [round % 2, (round + 1) % 2] {
            let t = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..16 {
                let servers = servers.clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(per);
                    for _ in 0..per {
                        let t = Instant::now();
                        servers[i].start_ok(TRUE).await;
                        lat.push(t.elapsed());
                    }
                    lat
                }));
            }
            let mut lats = Vec::new();
            for task in tasks {
                lats.extend(task.await.unwrap());
            }
            if round > 0 {
                wall[i] += t.elapsed();
                count[i] += lats.len();
                lats.into_iter().for_each(|d| c16[i].push(d));
            }
        }
    }
    let r1 = c1[0].median() / c1[1].median();
    let r16 = c16[0].median() / c16[1].median();
    let tput = |i: usize| count[i] as f64 / wall[i].as_secs_f64();
    report.timing("7a", "HTTP POST `true`, concurrency 1: native baseline server", &c1[1], None);
    report.timing(
        "7b",
        "HTTP POST `true`, concurrency 1: sandbox-process serve",
        &c1[0],
        Some(("(7a)", c1[1].median())),
    );
    report.timing("7c", "HTTP POST `true`, concurrency 16: native baseline server", &c16[1], None);
    report.timing(
        "7d",
        "HTTP POST `true`, concurrency 16: sandbox-process serve",
        &c16[0],
        Some(("(7c)", c16[1].median())),
    );
    report.value(
        "7e",
        "throughput at concurrency 16: baseline / sandbox",
        &count[0].to_string(),
        format!("{:.0} / {:.0} req/s", tput(1), tput(0)),
        format!("{:.2}x", tput(1) / tput(0)),
    );
    report.verdict("(7) HTTP ≤ 1.10x the native baseline, concurrency 1", format!("{r1:.3}x"), r1 <= 1.10);
    report.verdict("(7) HTTP ≤ 1.10x the native baseline, concurrency 16", format!("{r16:.3}x"), r16 <= 1.10);
}

// ---------------------------------------------------------------- 8

/// The ticker child: after `delay_ms`, prints its monotonic clock (ns)
/// `count` times, every `interval_ms`.
fn ticker(count: u32, interval_ms: u64, delay_ms: u64) {
    std::thread::sleep(Duration::from_millis(delay_ms));
    let mut out = std::io::stdout().lock();
    for _ in 0..count {
        writeln!(out, "{}", monotonic_ns()).unwrap();
        out.flush().unwrap();
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
}

/// CLOCK_MONOTONIC in ns: one clock for every process on the machine.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// From the child's write of a line to its SSE frame arriving here.
async fn follow_latency(cfg: &Config, report: &mut Report) {
    eprintln!("[8] follow latency");
    let server = Server::sandbox(4096, &cfg.cache);
    let lines = cfg.n(200) as u32;
    let exe = std::env::current_exe().unwrap();
    let body = serde_json::json!({
        "command": exe.to_str().unwrap(),
        "args": ["__ticker", lines.to_string(), "10", "300"],
    })
    .to_string();
    let body: &'static str = Box::leak(body.into_boxed_str());
    let pid = server.start_ok(body).await;
    let mut response = server
        .request(reqwest::Method::GET, &format!("/api/v1/processes/{pid}/stdout/follow"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut s = Samples::default();
    let mut pending = String::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        let arrived = monotonic_ns();
        pending.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = pending.find("\n\n") {
            let frame: String = pending.drain(..end + 2).collect();
            if let Some(i) = frame.find("\"line\":\"") {
                let rest = &frame[i + 8..];
                let written: u64 = rest[..rest.find('"').unwrap()].parse().unwrap();
                s.push(Duration::from_nanos(arrived.saturating_sub(written)));
            }
        }
    }
    assert_eq!(s.len(), lines as usize, "every line arrived");
    report.timing("8", "follow: child writes a line → its SSE frame arrives", &s, None);
    report.verdict("(8) follow latency < 2 ms median", time(s.median()), s.median() < 2e6);
}

// ---------------------------------------------------------------- 9 and 10

/// Starts processes on `server` until it has `n`.
async fn start_until(server: &Server, pids: &mut Vec<u32>, n: usize) {
    while pids.len() < n {
        pids.push(server.start_ok(SLEEP).await);
    }
}

/// `GET /processes` and `GET /processes/{ref}` with 1, 100 and 1000 live
/// processes on both servers; and the servers' memory, idle and with 1000
/// idle processes.
async fn scaling_and_memory(cfg: &Config, report: &mut Report) {
    eprintln!("[9-10] list/get scaling, memory with idle processes");
    let servers = [Server::sandbox(4096, &cfg.cache), Server::baseline(4096)];
    for s in &servers {
        for _ in 0..20 {
            s.get("/api/v1/processes").await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = [servers[0].rss(), servers[1].rss()];
    let mut pids = [Vec::new(), Vec::new()];
    let mut rss100 = [0; 2];
    let mut rss1000 = [0; 2];
    let mut list_at = Vec::new();
    let mut get_at = Vec::new();
    for n in [1usize, 100, 1000] {
        for i in 0..2 {
            start_until(&servers[i], &mut pids[i], n).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if n == 100 {
            rss100 = [servers[0].rss(), servers[1].rss()];
        }
        if n == 1000 {
            rss1000 = [servers[0].rss(), servers[1].rss()];
        }
        let reps = if n == 1000 { cfg.n(100) } else { cfg.n(300) };
        let mut list = [Samples::default(), Samples::default()];
        let mut get = [Samples::default(), Samples::default()];
        let mut list_bytes = 0;
        for r in 0..reps + 10 {
            for i in [r % 2, (r + 1) % 2] {
                let t = Instant::now();
                list_bytes = servers[i].get("/api/v1/processes").await;
                let d_list = t.elapsed();
                let pid = pids[i][r % pids[i].len()];
                let t = Instant::now();
                servers[i].get(&format!("/api/v1/processes/{pid}")).await;
                let d_get = t.elapsed();
                if r >= 10 {
                    list[i].push(d_list);
                    get[i].push(d_get);
                }
            }
        }
        if cfg.runs(9) {
            report.timing(
                &format!("9 ({n})"),
                &format!("GET /processes, {n} live: baseline ({} B body)", list_bytes),
                &list[1],
                None,
            );
            report.timing(
                &format!("9 ({n})"),
                &format!("GET /processes, {n} live: sandbox"),
                &list[0],
                Some(("baseline", list[1].median())),
            );
            report.timing(&format!("9 ({n})"), &format!("GET /processes/{{pid}}, {n} live: baseline"), &get[1], None);
            report.timing(
                &format!("9 ({n})"),
                &format!("GET /processes/{{pid}}, {n} live: sandbox"),
                &get[0],
                Some(("baseline", get[1].median())),
            );
        }
        list_at.push((n, list[0].median()));
        get_at.push((n, get[0].median()));
    }
    if cfg.runs(9) {
        let per = |a: (usize, f64), b: (usize, f64)| (b.1 - a.1) / (b.0 - a.0) as f64;
        let get_growth = get_at[2].1 / get_at[0].1;
        report.verdict(
            "(9) `get` constant in the number of live processes",
            format!("{get_growth:.2}x from 1 to 1000"),
            get_growth < 1.5,
        );
        let (slope_lo, slope_hi) = (per(list_at[0], list_at[1]), per(list_at[1], list_at[2]));
        report.verdict(
            "(9) `list` linear, small constant",
            format!("{} per process (1→100), {} per process (100→1000)", time(slope_lo), time(slope_hi)),
            slope_hi < 5_000.0 && slope_hi < 3.0 * slope_lo.max(slope_hi / 3.0),
        );
    }
    if cfg.runs(10) {
        for (i, name) in [(0, "sandbox"), (1, "baseline")] {
            report.value("10", &format!("RSS of the {name} server, idle"), "1", bytes(idle[i] as f64), String::new());
            report.value(
                "10",
                &format!("RSS of the {name} server, 1000 idle `sleep`s"),
                "1",
                bytes(rss1000[i] as f64),
                String::new(),
            );
            let per = (rss1000[i] as f64 - rss100[i] as f64) / 900.0;
            report.value("10", &format!("{name}: RSS per idle process (100 → 1000)"), "900", bytes(per), String::new());
            if i == 0 {
                report.verdict("(10) memory per idle process < 64 KiB", bytes(per), per < 64.0 * 1024.0);
            }
        }
    }
}

/// The server's memory with one `yes` flooding its stdout past the cap.
async fn flood_memory(cfg: &Config, report: &mut Report) {
    eprintln!("[10] memory under a flood");
    let server = Server::sandbox(4096, &cfg.cache);
    server.get("/api/v1/processes").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = server.rss();
    let pid = server.start_ok(YES).await;
    let mut peak = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(server.rss());
    }
    let last = server.rss();
    let response =
        server.request(reqwest::Method::GET, &format!("/api/v1/processes/{pid}/stdout")).send().await.unwrap();
    let text = response.text().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let dropped = v["dropped_lines"].as_u64().unwrap_or(0);
    let kept = v["line_count"].as_u64().unwrap_or(0);
    let _ = server.request(reqwest::Method::DELETE, &format!("/api/v1/processes/{pid}")).send().await;
    report.value("10", "RSS of the sandbox server, idle (flood run)", "1", bytes(idle as f64), String::new());
    report.value(
        "10",
        &format!("RSS with one `yes` flooding stdout for 3 s ({kept} lines kept, {dropped} dropped)"),
        "30",
        format!("{} peak, {} last", bytes(peak as f64), bytes(last as f64)),
        format!("+{} over idle; cap 4 MiB/stream", bytes((peak - idle) as f64)),
    );
}

// ---------------------------------------------------------------- 11

/// Whole-process wall time of the command line against `true` itself.
fn cli_cold_start(cfg: &Config, report: &mut Report) {
    eprintln!("[11] command line cold start");
    let bin = env!("CARGO_BIN_EXE_sandbox-process");
    let run = |args: &[&str], cache: &Path| {
        let t = Instant::now();
        let status = Command::new(bin)
            .args(args)
            .env("XDG_CACHE_HOME", cache)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        let d = t.elapsed();
        assert!(status.success(), "{args:?}: {status}");
        d
    };
    let exec = ["exec", TRUE];
    // The very first run on a machine compiles the guest.
    let cold = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-cold-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cold);
    let first = run(&exec, &cold);
    let _ = std::fs::remove_dir_all(&cold);
    run(&exec, &cfg.cache);
    let n = cfg.n(40);
    let mut s: Vec<Samples> = vec![Samples::default(); 4];
    for round in 0..n {
        for k in 0..4 {
            let kind = (round + k) % 4;
            let d = match kind {
                0 => {
                    let t = Instant::now();
                    Command::new("true")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .unwrap();
                    t.elapsed()
                }
                1 => run(&["--version"], &cfg.cache),
                2 => run(&["validate", TRUE], &cfg.cache),
                _ => run(&exec, &cfg.cache),
            };
            s[kind].push(d);
        }
    }
    let floor = Some(("`true`", s[0].median()));
    report.timing("11", "`true` run directly (spawn + wait)", &s[0], None);
    report.timing("11b", "`sandbox-process --version` (process start, no engine)", &s[1], floor);
    report.timing("11c", "`sandbox-process validate '{\"command\":\"true\"}'` (cache warm)", &s[2], floor);
    report.timing("11d", "`sandbox-process exec '{\"command\":\"true\"}'` (cache warm)", &s[3], floor);
    report.value(
        "11e",
        "`sandbox-process exec` first run on a machine (compiles the guest)",
        "1",
        time(first.as_nanos() as f64),
        String::new(),
    );
    report.verdict("(11) `sandbox-process exec` of `true` < 15 ms", time(s[3].median()), s[3].median() < 15e6);
}
