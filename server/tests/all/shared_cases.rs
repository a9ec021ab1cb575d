//! Runs the shared request cases of `tests/cases/*.json` against the Rust
//! host (the Node host runs the very same files), so the two can't drift.
//! The format is described in `tests/cases/README.md`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sandbox_process::types::OutputSelector;
use sandbox_process::{GuestLimits, GuestRuntime, Limits, Policy, ProcessTable, Reply};
use serde_json::Value;

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/cases")
}

/// The placeholders' values (the format's README), found without the
/// host's code: the user database through `getent`, this process's `PATH`.
/// `None` for a name the machine gives no value (no entry, no USER).
static PLACEHOLDERS: LazyLock<HashMap<&'static str, Option<String>>> = LazyLock::new(|| {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let out = std::process::Command::new("getent").args(["passwd", &uid.to_string()]).output().expect("getent runs");
    let fields: Vec<String> = match out.status.code() {
        Some(0) => String::from_utf8(out.stdout).unwrap().trim_end().split(':').map(str::to_owned).collect(),
        Some(2) => Vec::new(), // no entry
        _ => panic!("getent passwd {uid}: {out:?}"),
    };
    let field = |i: usize| fields.get(i).filter(|f| !f.is_empty()).cloned();
    let path = std::env::var("PATH").ok().filter(|p| !p.is_empty());
    HashMap::from([
        ("HOME", Some(field(5).unwrap_or_else(|| "/".to_owned()))),
        ("USER", field(0)),
        ("LOGNAME", field(0)),
        ("SHELL", Some(field(6).unwrap_or_else(|| "/bin/sh".to_owned()))),
        ("PATH", Some(path.unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_owned()))),
    ])
});

/// `value` with every `{{NAME}}` in its strings replaced; an unknown name,
/// or one without a value here, is an error naming it.
fn substitute(value: &Value) -> Result<Value, String> {
    Ok(match value {
        Value::String(text) => {
            let mut out = String::new();
            let mut rest = text.as_str();
            while let Some(start) = rest.find("{{") {
                let end = rest[start..].find("}}").ok_or_else(|| format!("unclosed placeholder in {text:?}"))?;
                let name = &rest[start + 2..start + end];
                let value = PLACEHOLDERS.get(name).ok_or_else(|| format!("unknown placeholder {{{{{name}}}}}"))?;
                let value = value.as_deref().ok_or_else(|| {
                    format!("{{{{{name}}}}} has no value: the user running the tests has no user database entry")
                })?;
                out.push_str(&rest[..start]);
                out.push_str(value);
                rest = &rest[start + end + 2..];
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(substitute).collect::<Result<_, _>>()?),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| Ok((k.clone(), substitute(v)?))).collect::<Result<_, String>>()?)
        }
        other => other.clone(),
    })
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
        let expect = substitute(&step["expect"]).unwrap_or_else(|e| panic!("{where_}: {e}"));
        check(&where_, &expect, &reply);
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

#[test]
fn placeholders_are_replaced_everywhere_and_unknown_ones_refused() {
    let home = PLACEHOLDERS["HOME"].clone().unwrap();
    let expect = serde_json::json!({"status": 200, "json": {"lines": ["HOME={{HOME}}:{{HOME}}", 1, null]}});
    let want = serde_json::json!({"status": 200, "json": {"lines": [format!("HOME={home}:{home}"), 1, null]}});
    assert_eq!(substitute(&expect).unwrap(), want);
    assert_eq!(substitute(&serde_json::json!("{{HOME")).unwrap_err(), "unclosed placeholder in \"{{HOME\"");
    assert_eq!(substitute(&serde_json::json!(["{{home}}"])).unwrap_err(), "unknown placeholder {{home}}");
}
