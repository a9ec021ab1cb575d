//! Another wasmtime host giving a component the process capability.
//!
//! This program has its own store state, links WASI (as a host would for
//! its other components; the guest itself imports only the capability) and
//! `sandbox_process::add_to_linker` into its own linker, instantiates the
//! guest component (any component that imports `sandbox:process/process`
//! would do), and calls two of its exports through wasmtime's dynamic API:
//! `start` and, once the child ended, `output`.
//!
//! Run it with `cargo run -p sandbox-process --example embed`.

use std::time::Duration;

use sandbox_process::{GUEST_WASM, Limits, Policy, ProcessTable, ProcessView, add_to_linker};
use wasmtime::component::{Component, Linker, ResourceTable, Val};
use wasmtime::error::Context;
use wasmtime::{Engine, Store};
use wasmtime::{Result, format_err};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// This host's store data: whatever it needs, plus a `ProcessTable`.
struct MyState {
    wasi: WasiCtx,
    table: ResourceTable,
    processes: ProcessTable,
}

impl WasiView for MyState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let engine = Engine::default();
    let component = Component::new(&engine, GUEST_WASM)?;

    let mut linker = Linker::<MyState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    add_to_linker(&mut linker, |state: &mut MyState| ProcessView::new(&state.processes))?;

    // A policy of this host's choosing: only `echo`, from /bin or /usr/bin.
    let echo = ["/bin/echo", "/usr/bin/echo"].into_iter().find(|p| std::path::Path::new(p).exists());
    let policy = Policy {
        allowed_commands: Some(echo.into_iter().map(|p| std::fs::canonicalize(p).unwrap()).collect()),
        ..Policy::default()
    };
    let processes = ProcessTable::new(policy, Limits::default());
    let state = MyState { wasi: WasiCtx::builder().build(), table: ResourceTable::new(), processes: processes.clone() };
    let mut store = Store::new(&engine, state);
    let instance = linker.instantiate_async(&mut store, &component).await?;

    let api = instance
        .get_export_index(&mut store, None, "sandbox:process/api@0.1.0")
        .context("the component exports sandbox:process/api")?;
    let call = |name: &str, store: &mut Store<MyState>| {
        let index = instance.get_export_index(&mut *store, Some(&api), name).expect("exported");
        instance.get_func(&mut *store, index).expect("a function")
    };

    let body = br#"{"command":"echo","args":["hello from", "another host"]}"#;
    let start = call("start", &mut store);
    let mut results = [Val::Bool(false)];
    let bytes = Val::List(body.iter().map(|b| Val::U8(*b)).collect());
    start.call_async(&mut store, &[bytes], &mut results).await?;
    let (status, reply) = reply_of(&results[0])?;
    println!("start -> {status} {reply}");
    let pid: u32 = serde_json::from_str::<serde_json::Value>(&reply)?["pid"]
        .as_u64()
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| format_err!("no pid in {reply}"))?;

    processes.wait(pid, Duration::from_secs(10)).await.map_err(|e| format_err!("{e:?}"))?;
    // Drained too: the pipes can close a moment after the exit.
    let _ = processes
        .read_output(pid, sandbox_process::types::OutputSelector::Stdout, u64::MAX, 1, Duration::from_secs(5))
        .await;

    let output = call("output", &mut store);
    let args = [Val::String(pid.to_string()), Val::Enum("stdout".into())];
    output.call_async(&mut store, &args, &mut results).await?;
    let (status, reply) = reply_of(&results[0])?;
    println!("output -> {status} {reply}");

    // The policy holds: anything but echo is refused with 403.
    let denied = Val::List(br#"{"command":"ls"}"#.iter().map(|b| Val::U8(*b)).collect());
    start.call_async(&mut store, &[denied], &mut results).await?;
    let (status, reply) = reply_of(&results[0])?;
    println!("start ls -> {status} {reply}");

    processes.shutdown().await;
    Ok(())
}

/// The `reply` record: `(status, body)`.
fn reply_of(value: &Val) -> Result<(u16, String)> {
    let Val::Record(fields) = value else { return Err(format_err!("not a record: {value:?}")) };
    let mut status = None;
    let mut body = None;
    for (name, field) in fields {
        match (name.as_str(), field) {
            ("status", Val::U16(s)) => status = Some(*s),
            ("body", Val::String(b)) => body = Some(b.clone()),
            _ => {}
        }
    }
    Ok((status.context("status")?, body.context("body")?))
}
