//! Runs the shared request cases of `tests/cases/*.json` against the Rust
//! host (the Node host runs the very same files), so the two can't drift.
//! The format is described in `tests/cases/README.md`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sandbox_process::types::OutputSelector;
use sandbox_process::{GuestLimits, GuestRuntime, Limits, Policy, ProcessTable, Reply};
use serde_json::Value;

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/cases")
}

fn body_bytes(step: &Value) -> Vec<u8> {
    if let Some(raw) = step.get("raw") {
        raw.as_str().expect("raw is a string").as_bytes().to_vec()
    } else if let Some(hex) = step.get("raw_hex") {
        let hex = hex.as_str().expect("raw_hex is a string");
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
    } else if let Some(body) = step.get("body") {
        body.to_string().into_bytes()
    } else {
        Vec::new()
    }
}

fn selector(step: &Value) -> OutputSelector {
    match step["selector"].as_str() {
        Some("stdout") => OutputSelector::Stdout,
        Some("stderr") => OutputSelector::Stderr,
        Some("merged") => OutputSelector::Merged,
        other => panic!("bad selector {other:?}"),
    }
}

/// Does `actual` match the pattern (see the format's README)?
fn matches(pattern: &Value, actual: &Value) -> bool {
    match pattern {
        Value::String(s) if s == "<any>" => true,
        Value::String(s) if s == "<number>" => actual.is_number(),
        Value::Object(map) => {
            let Some(actual) = actual.as_object() else { return false };
            map.iter().all(|(k, p)| actual.get(k).is_some_and(|a| matches(p, a)))
        }
        Value::Array(items) => {
            let Some(actual) = actual.as_array() else { return false };
            items.len() == actual.len() && items.iter().zip(actual).all(|(p, a)| matches(p, a))
        }
        other => other == actual,
    }
}

fn check(where_: &str, expect: &Value, reply: &Reply) {
    let status = expect["status"].as_u64().unwrap_or_else(|| panic!("{where_}: expect.status missing"));
    assert_eq!(u64::from(reply.status), status, "{where_}: status; body {}", reply.body);
    if reply.status == 204 {
        assert_eq!(reply.body, "", "{where_}: a 204 has no body");
        return;
    }
    let body: Value = serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("{where_}: body is not JSON ({e}): {}", reply.body));
    if let Some(code) = expect.get("code") {
        assert_eq!(&body["code"], code, "{where_}: code; body {}", reply.body);
    }
    if let Some(text) = expect.get("error_contains").and_then(Value::as_str) {
        let message = body["error"].as_str().unwrap_or_else(|| panic!("{where_}: no error message: {}", reply.body));
        assert!(message.contains(text), "{where_}: error {message:?} should contain {text:?}");
    }
    if let Some(pattern) = expect.get("json") {
        assert!(matches(pattern, &body), "{where_}: body {} does not match {pattern}", reply.body);
    }
    if let Some(keys) = expect.get("keys") {
        let mut want: Vec<&str> = keys.as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
        let mut got: Vec<&str> = body.as_object().expect("an object").keys().map(String::as_str).collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{where_}: keys");
    }
}

async fn run_case(rt: &GuestRuntime, file: &str, case: &Value) {
    let name = case["name"].as_str().unwrap_or("?");
    let mut pid = String::new();
    for (i, step) in case["steps"].as_array().expect("steps").iter().enumerate() {
        let where_ = format!("{file} / {name} / step {i} ({})", step["call"]);
        let reference = step["ref"].as_str().unwrap_or("").replace("$pid", &pid);
        let body = body_bytes(step);
        let reply = match step["call"].as_str().expect("call") {
            "start" => rt.start(&body).await,
            "validate" => rt.validate(&body).await,
            "signal" => rt.signal(&reference, &body).await,
            "get" => rt.get(&reference).await,
            "kill" => rt.kill(&reference).await,
            "close_stdin" => rt.close_stdin(&reference).await,
            "write_stdin" => rt.write_stdin(&reference, step["data"].as_str().expect("data").as_bytes()).await,
            "output" => rt.output(&reference, selector(step)).await,
            "list" => rt.list().await,
            "health" => rt.health().await,
            "await_exit" => {
                let pid: u32 = reference.parse().unwrap_or_else(|_| panic!("{where_}: await_exit needs a started pid"));
                let processes = rt.processes();
                processes.wait(pid, Duration::from_secs(10)).await.expect("await_exit: wait");
                // Complete: exited and every pipe drained.
                let chunk = processes
                    .read_output(pid, OutputSelector::Merged, u64::MAX, 1, Duration::from_secs(10))
                    .await
                    .expect("await_exit: read");
                assert!(chunk.complete, "{where_}: output not complete within 10 s");
                continue;
            }
            other => panic!("{where_}: unknown call {other}"),
        }
        .unwrap_or_else(|e| panic!("{where_}: guest call failed: {e:#}"));
        check(&where_, &step["expect"], &reply);
        if step["call"] == "start" && reply.status == 201 {
            let info: Value = serde_json::from_str(&reply.body).unwrap();
            pid = info["pid"].to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_cases_agree_with_the_rust_host() {
    let processes = ProcessTable::new(Policy::default(), Limits::default());
    let guest = GuestLimits { cache_dir: Some(env!("CARGO_TARGET_TMPDIR").into()), ..GuestLimits::default() };
    let rt = Arc::new(GuestRuntime::new(processes, guest).expect("the guest loads"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/cases exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut count = 0;
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).expect("case file is JSON");
        for case in doc["cases"].as_array().expect("cases") {
            run_case(&rt, &file, case).await;
            count += 1;
        }
    }
    assert!(count >= 30, "expected the shared case files to hold at least 30 cases, found {count}");
    rt.processes().shutdown().await;
}
