//! The capability-free validator component (world `validator`) runs in a
//! plain wasmtime with nothing at all linked (not even WASI), as any
//! component runtime can run it, and judges bodies exactly as the guest
//! does.

use sandbox_process::{GuestLimits, GuestRuntime, Limits, Policy, ProcessTable};
use wasmtime::component::{Component, Linker, Val};
use wasmtime::{Engine, Store};

/// Calls the validator's `validate` export: `Ok(normalized)` or `Err(error body)`.
async fn validate(body: &str) -> Result<String, String> {
    let engine = Engine::default();
    let wasm = sandbox_process::VALIDATOR_WASM;
    let component = Component::new(&engine, wasm).unwrap();
    let linker = Linker::<()>::new(&engine);
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate_async(&mut store, &component).await.expect("needs no import");
    let func = instance.get_func(&mut store, "validate").expect("exports validate");
    let mut results = [Val::Bool(false)];
    func.call_async(&mut store, &[Val::String(body.into())], &mut results).await.unwrap();
    match &results[0] {
        Val::Result(Ok(Some(v))) => match &**v {
            Val::String(s) => Ok(s.clone()),
            other => panic!("ok of {other:?}"),
        },
        Val::Result(Err(Some(v))) => match &**v {
            Val::String(s) => Err(s.clone()),
            other => panic!("err of {other:?}"),
        },
        other => panic!("not a result: {other:?}"),
    }
}

#[tokio::test]
async fn the_validator_agrees_with_the_guest() {
    let guest = GuestRuntime::new(
        ProcessTable::new(Policy::default(), Limits::default()),
        GuestLimits { cache_dir: None, ..GuestLimits::default() },
    )
    .unwrap();
    let bodies = [
        r#"{"command":"ls"}"#,
        r#"{"command":"ls","args":["-l"],"env":{"A":"b"},"working_dir":"/tmp","stdin_mode":"pipe"}"#,
        r#"{"command":""}"#,
        r#"{"command":"ls","env":{"A=B":"c"}}"#,
        r#"{"command":"ls","user":"root"}"#,
        "not json",
    ];
    for body in bodies {
        let reply = guest.validate(body.as_bytes()).await.unwrap();
        match validate(body).await {
            Ok(normalized) => assert_eq!((reply.status, reply.body), (200, normalized), "{body}"),
            Err(error) => {
                assert_eq!(reply.status, 400, "{body}");
                assert_eq!(reply.body, error, "{body}");
                assert!(error.contains("INVALID_REQUEST"), "{error}");
            }
        }
    }
    assert_eq!(
        validate(r#"{"command":"ls"}"#).await.unwrap(),
        r#"{"command":"ls","args":[],"env":{},"working_dir":null,"stdin_mode":"closed","stdout_mode":"capture","stderr_mode":"capture"}"#
    );
}
