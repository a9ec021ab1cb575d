//! `docs/API.md` is the wire contract: every route it names is routed, and
//! every routed path is named there.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::json;

use crate::server::Server;

/// The `METHOD /api/v1/...` pairs that `docs/API.md` names in backquotes.
fn documented() -> BTreeSet<(String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/API.md")).unwrap();
    let mut routes = BTreeSet::new();
    for quoted in doc.split('`').skip(1).step_by(2) {
        if let Some((method, path)) = quoted.split_once(' ')
            && ["GET", "POST", "PUT", "DELETE"].contains(&method)
            && path.starts_with("/api/v1/")
        {
            routes.insert((method.to_owned(), path.to_owned()));
        }
    }
    routes
}

/// The paths the router declares (`.route("PATH", ...)` in `routes.rs`).
fn routed_paths() -> BTreeSet<String> {
    let routes_rs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/routes.rs")).unwrap();
    routes_rs.split(".route(\"").skip(1).map(|rest| rest.split('"').next().unwrap().to_owned()).collect()
}

#[test]
fn every_routed_path_is_documented() {
    let documented: BTreeSet<String> = documented().into_iter().map(|(_, path)| path).collect();
    let routed = routed_paths();
    assert!(!routed.is_empty(), "no route found in routes.rs");
    let missing: Vec<_> = routed.difference(&documented).collect();
    assert!(missing.is_empty(), "routed but not in docs/API.md: {missing:?}");
}

#[tokio::test]
async fn every_documented_route_is_routed() {
    let routes = documented();
    assert!(routes.len() >= 15, "docs/API.md names too few routes: {routes:?}");
    let s = Server::start(&[], None);
    let pid = s.start_process(&json!({"command": "sleep", "args": ["30"], "stdin_mode": "pipe"})).await;
    // DELETE last: it ends the process the others address.
    let mut ordered: Vec<_> = routes.into_iter().collect();
    ordered.sort_by_key(|(method, _)| method == "DELETE");
    for (method, path) in ordered {
        let concrete = path.replace("{ref}", &pid.to_string());
        let body = if path.ends_with("/signal") {
            json!({"signal": 0}).to_string()
        } else if path.ends_with("/processes") || path.ends_with("/run") {
            json!({"command": "true"}).to_string()
        } else {
            String::new()
        };
        let response =
            s.request(Method::from_bytes(method.as_bytes()).unwrap(), &concrete).body(body).send().await.unwrap();
        let status = response.status().as_u16();
        // A stream runs until the process ends: its 200 is the answer.
        let streaming = response.headers().get("content-type").is_some_and(|v| v == "text/event-stream");
        let text = if streaming { String::new() } else { response.text().await.unwrap() };
        assert_ne!(status, 405, "{method} {path}: {text}");
        assert!(!text.contains("no route for"), "{method} {path} is not routed: {text}");
    }
}
