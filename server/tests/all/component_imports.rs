//! What the components ask of their host: the guest imports the process
//! capability and nothing else (no WASI: it is built without Rust's std),
//! and the validator imports nothing. A new import would be a new thing
//! every host, in every runtime, must provide: it has to be deliberate.

use wasmtime::Engine;
use wasmtime::component::Component;

fn imports(wasm: &[u8]) -> Vec<String> {
    let engine = Engine::default();
    let component = Component::new(&engine, wasm).expect("a valid component");
    let mut names: Vec<String> = component.component_type().imports(&engine).map(|(name, _)| name.to_owned()).collect();
    names.sort();
    names
}

#[test]
fn the_guest_imports_the_capability_and_nothing_else() {
    assert_eq!(imports(sandbox_process::GUEST_WASM), ["sandbox:process/process@0.1.0", "sandbox:process/types@0.1.0"],);
}

#[test]
fn the_validator_imports_nothing() {
    let wasm = sandbox_process::VALIDATOR_WASM;
    assert_eq!(imports(wasm), Vec::<String>::new());
}
