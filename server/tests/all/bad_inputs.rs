//! The bad-input table (`tests/bad_inputs/*.json`, format in its README):
//! malformed and hostile requests, each sent byte for byte over raw TCP to
//! the real server binary, each refused with its expected status and code.
//! Afterwards the server still answers, no refused request started a
//! process or created a file, and the fixture process no signal was meant
//! to reach still runs.

use crate::server;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server::Server;

const TOKEN: &str = "bad-inputs-token-5f1c";
/// Every wait here is bounded by this; none is part of an assertion.
const BOUND: Duration = Duration::from_secs(30);

// ---- Raw HTTP ----

/// What goes after the head.
enum Payload {
    /// No body at all.
    None,
    /// A body with its exact `Content-Length` (unless the case set one).
    Sized(Vec<u8>),
    /// A body sent in chunks, without `Content-Length`.
    Chunked(Vec<u8>),
    /// Only a declared `Content-Length`; no byte of body follows.
    Declared(u64),
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one request on a fresh connection and reads the whole response.
///
/// The body is written from another thread while this one reads: a server
/// that answers before reading the body (413 from a declared length) must
/// not deadlock the test, and its answer is read even if it then stops
/// reading.
fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    payload: &Payload,
) -> Result<Response, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(BOUND)).unwrap();
    stream.set_write_timeout(Some(BOUND)).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    let sets_length = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = match payload {
        Payload::None if method == "POST" && !sets_length => {
            head.push_str("Content-Length: 0\r\n");
            Vec::new()
        }
        Payload::None => Vec::new(),
        Payload::Sized(body) => {
            if !sets_length {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            body.clone()
        }
        Payload::Chunked(body) => {
            head.push_str("Transfer-Encoding: chunked\r\n");
            let mut chunked = Vec::with_capacity(body.len() + body.len() / 1000 + 16);
            for chunk in body.chunks(64 << 10) {
                chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                chunked.extend_from_slice(chunk);
                chunked.extend_from_slice(b"\r\n");
            }
            chunked.extend_from_slice(b"0\r\n\r\n");
            chunked
        }
        Payload::Declared(length) => {
            head.push_str(&format!("Content-Length: {length}\r\n"));
            Vec::new()
        }
    };
    head.push_str("\r\n");
    let mut writer = stream.try_clone().unwrap();
    let written = std::thread::spawn(move || {
        // Errors are expected when the server refuses early and closes.
        let _ = writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(&body));
    });
    let mut raw = Vec::new();
    let read_error = stream.read_to_end(&mut raw).err();
    let _ = written.join();
    parse_response(&raw).map_err(|e| format!("{e} (read error: {read_error:?}; got {} bytes)", raw.len()))
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no complete response head")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status =
        status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
    let rest = &raw[end + 4..];
    let find = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let body = if let Some(length) = find("content-length") {
        let length: usize = length.parse().map_err(|_| "bad Content-Length in the response")?;
        rest.get(..length).ok_or("response body cut short")?.to_vec()
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Response { status, headers, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").ok_or("chunk size line cut short")?;
        let size = std::str::from_utf8(&data[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or("bad chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(data.get(..size).ok_or("chunk cut short")?);
        data = data.get(size + 2..).ok_or("chunk cut short")?;
    }
}

// ---- The table ----

struct Case {
    file: String,
    name: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    payload: Payload,
    expect_status: u16,
    expect_code: Option<String>,
    expect_error_contains: Option<String>,
}

const CASE_KEYS: &[&str] = &[
    "name",
    "method",
    "path",
    "headers",
    "auth",
    "body",
    "raw",
    "raw_hex",
    "generate",
    "content_length",
    "chunked",
    "expect",
];
const EXPECT_KEYS: &[&str] = &["status", "code", "error_contains"];
const GENERATE_KEYS: &[&str] = &["template", "repeat", "count", "separator"];

/// Replaces every placeholder, longest name first.
fn substitute(text: &str, vars: &[(String, String)]) -> String {
    let mut text = text.to_owned();
    for (name, value) in vars {
        text = text.replace(name.as_str(), value);
    }
    text
}

fn substitute_json(value: &Value, vars: &[(String, String)]) -> Value {
    match value {
        Value::String(s) => Value::String(substitute(s, vars)),
        Value::Array(items) => Value::Array(items.iter().map(|v| substitute_json(v, vars)).collect()),
        Value::Object(members) => {
            Value::Object(members.iter().map(|(k, v)| (substitute(k, vars), substitute_json(v, vars))).collect())
        }
        other => other.clone(),
    }
}

fn only_keys(object: &serde_json::Map<String, Value>, allowed: &[&str], what: &str) {
    for key in object.keys() {
        assert!(allowed.contains(&key.as_str()), "{what}: unknown key `{key}` (allowed: {allowed:?})");
    }
}

fn generate(spec: &Value, vars: &[(String, String)], what: &str) -> Vec<u8> {
    let spec = spec.as_object().unwrap_or_else(|| panic!("{what}: generate must be an object"));
    only_keys(spec, GENERATE_KEYS, what);
    let field = |name: &str| spec.get(name).and_then(Value::as_str).map(|s| substitute(s, vars));
    let template = field("template").unwrap_or_else(|| panic!("{what}: generate needs a template"));
    let unit = field("repeat").unwrap_or_else(|| panic!("{what}: generate needs repeat"));
    let count = spec.get("count").and_then(Value::as_u64).unwrap_or_else(|| panic!("{what}: generate needs count"));
    let separator = field("separator").unwrap_or_default();
    assert!(template.contains("$FILL"), "{what}: the template has no $FILL");
    let numbered = unit.contains("$N");
    let mut fill = String::with_capacity(count as usize * (unit.len() + separator.len()));
    for i in 0..count {
        if i > 0 {
            fill.push_str(&separator);
        }
        if numbered {
            fill.push_str(&unit.replace("$N", &i.to_string()));
        } else {
            fill.push_str(&unit);
        }
    }
    template.replacen("$FILL", &fill, 1).into_bytes()
}

fn hex(text: &str, what: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "{what}: odd-length raw_hex");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap_or_else(|_| panic!("{what}: bad hex")))
        .collect()
}

fn load_cases(vars: &[(String, String)]) -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/bad_inputs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    let mut names = BTreeSet::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{file}: {e}"));
        only_keys(doc.as_object().unwrap(), &["description", "cases"], &file);
        for case in doc["cases"].as_array().unwrap_or_else(|| panic!("{file}: no cases")) {
            let object = case.as_object().unwrap_or_else(|| panic!("{file}: a case is not an object"));
            let name = case["name"].as_str().unwrap_or_else(|| panic!("{file}: a case has no name")).to_owned();
            let what = format!("{file}: {name}");
            only_keys(object, CASE_KEYS, &what);
            assert!(names.insert(name.clone()), "{what}: duplicate case name");
            let mut headers: Vec<(String, String)> = case
                .get("headers")
                .map(|h| {
                    h.as_object()
                        .unwrap_or_else(|| panic!("{what}: headers"))
                        .iter()
                        .map(|(n, v)| (n.clone(), substitute(v.as_str().unwrap(), vars)))
                        .collect()
                })
                .unwrap_or_default();
            match case.get("auth").map(|a| a.as_str().unwrap_or_else(|| panic!("{what}: auth is a string"))) {
                None | Some("token") => headers.push(("Authorization".into(), format!("Bearer {TOKEN}"))),
                Some("none") => {}
                Some(value) => headers.push(("Authorization".into(), value.to_owned())),
            }
            let bodies: Vec<&str> =
                ["body", "raw", "raw_hex", "generate"].into_iter().filter(|k| object.contains_key(*k)).collect();
            assert!(bodies.len() <= 1, "{what}: more than one body: {bodies:?}");
            let body = match bodies.first().copied() {
                None => None,
                Some("body") => Some(substitute_json(&case["body"], vars).to_string().into_bytes()),
                Some("raw") => Some(substitute(case["raw"].as_str().unwrap(), vars).into_bytes()),
                Some("raw_hex") => Some(hex(case["raw_hex"].as_str().unwrap(), &what)),
                Some(_) => Some(generate(&case["generate"], vars, &what)),
            };
            let payload = match (case.get("content_length"), case.get("chunked"), body) {
                (Some(length), None, None) => {
                    Payload::Declared(length.as_u64().unwrap_or_else(|| panic!("{what}: content_length")))
                }
                (Some(_), _, _) => panic!("{what}: content_length goes without a body or chunked"),
                (None, Some(Value::Bool(true)), Some(body)) => Payload::Chunked(body),
                (None, Some(_), _) => panic!("{what}: chunked must be true, with a body"),
                (None, None, Some(body)) => Payload::Sized(body),
                (None, None, None) => Payload::None,
            };
            let expect = case["expect"].as_object().unwrap_or_else(|| panic!("{what}: no expect"));
            only_keys(expect, EXPECT_KEYS, &what);
            let text =
                |key: &str| expect.get(key).map(|v| v.as_str().unwrap_or_else(|| panic!("{what}: {key}")).to_owned());
            cases.push(Case {
                file: file.clone(),
                method: case["method"].as_str().unwrap_or_else(|| panic!("{what}: method")).to_owned(),
                path: substitute(case["path"].as_str().unwrap_or_else(|| panic!("{what}: path")), vars),
                headers,
                payload,
                expect_status: expect["status"].as_u64().unwrap_or_else(|| panic!("{what}: status")) as u16,
                expect_code: text("code"),
                expect_error_contains: text("error_contains"),
                name,
            });
        }
    }
    cases
}

/// Checks a response against a case's expectation.
fn judge(case: &Case, response: &Response) -> Result<(), String> {
    let shown = || String::from_utf8_lossy(&response.body[..response.body.len().min(300)]).into_owned();
    if response.status != case.expect_status {
        return Err(format!("status {} (want {}): {}", response.status, case.expect_status, shown()));
    }
    let Some(code) = &case.expect_code else {
        return Ok(());
    };
    if response.header("content-type") != Some("application/json") {
        return Err(format!("content-type {:?}, not JSON", response.header("content-type")));
    }
    let body = response.json()?;
    let keys: BTreeSet<&str> = body.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    if keys != BTreeSet::from(["code", "error"]) {
        return Err(format!("error body keys {keys:?}, want code and error: {}", shown()));
    }
    if body["code"] != code.as_str() {
        return Err(format!("code {} (want {code}): {}", body["code"], shown()));
    }
    let error = body["error"].as_str().unwrap_or("");
    if error.is_empty() {
        return Err("empty error message".into());
    }
    if let Some(part) = &case.expect_error_contains
        && !error.contains(part.as_str())
    {
        return Err(format!("error {error:?} does not contain {part:?}"));
    }
    Ok(())
}

// ---- The server and its fixtures ----

struct Scratch {
    dir: PathBuf,
    root: PathBuf,
    outside: PathBuf,
    markers: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bad-inputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        let outside = dir.join("outside");
        let markers = root.join("markers");
        for d in [&root, &outside, &markers, &root.join("inside"), &root.join("bin")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        std::os::unix::fs::symlink("/bin/sh", root.join("bin/echo")).unwrap();
        let script = root.join("bin/touch");
        std::fs::write(&script, format!("#!/bin/sh\n/usr/bin/touch {}/path-trick\n", markers.display())).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        Scratch { dir, root, outside, markers }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Client {
    addr: String,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        let headers = vec![("Authorization".to_owned(), format!("Bearer {TOKEN}"))];
        let payload = body.map_or(Payload::None, |b| Payload::Sized(b.to_string().into_bytes()));
        send(&self.addr, method, path, &headers, &payload).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn ok_json(&self, method: &str, path: &str, body: Option<&Value>, status: u16) -> Value {
        let response = self.call(method, path, body);
        assert_eq!(response.status, status, "{method} {path}: {}", String::from_utf8_lossy(&response.body));
        response.json().unwrap()
    }

    fn start(&self, body: Value) -> u64 {
        self.ok_json("POST", "/api/v1/processes", Some(&body), 201)["pid"].as_u64().unwrap()
    }

    fn info(&self, pid: u64) -> Value {
        self.ok_json("GET", &format!("/api/v1/processes/{pid}"), None, 200)
    }

    fn wait_ended(&self, pid: u64) -> Value {
        let deadline = Instant::now() + BOUND;
        loop {
            let info = self.info(pid);
            if info["status"] != "running" {
                return info;
            }
            assert!(Instant::now() < deadline, "{pid} did not end within {BOUND:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn total_processes(&self) -> u64 {
        self.ok_json("GET", "/api/v1/info", None, 200)["total_processes"].as_u64().unwrap()
    }
}

#[test]
fn every_bad_input_is_refused_and_leaves_no_trace() {
    let scratch = Scratch::new();
    let root = scratch.root.to_str().unwrap().to_owned();
    let server = Server::start(
        &[
            "--working-dir-root",
            &root,
            "--allow-command",
            "/bin/echo",
            "--allow-command",
            "/bin/sleep",
            "--allow-command",
            "/usr/bin/touch",
            "--forbid-env",
            "LD_PRELOAD",
        ],
        Some(TOKEN),
    );
    let client = Client { addr: server.base.trim_start_matches("http://").to_owned() };

    // Fixtures: a running process with stdin closed, one whose stdin pipe
    // was closed, one that ended.
    let sleeping = client.start(json!({"command": "sleep", "args": ["300"]}));
    let pipe_closed = client.start(json!({"command": "sleep", "args": ["300"], "stdin_mode": "pipe"}));
    assert_eq!(client.call("POST", &format!("/api/v1/processes/{pipe_closed}/stdin/close"), None).status, 204);
    let exited = client.start(json!({"command": "echo", "args": ["done"]}));
    client.wait_ended(exited);
    let fixtures = BTreeSet::from([sleeping, pipe_closed, exited]);
    assert_eq!(client.total_processes(), 3);

    let mut vars = vec![
        ("$PIPE_CLOSED".to_owned(), pipe_closed.to_string()),
        ("$SLEEPING".to_owned(), sleeping.to_string()),
        ("$MARKERS".to_owned(), scratch.markers.to_str().unwrap().to_owned()),
        ("$OUTSIDE".to_owned(), scratch.outside.to_str().unwrap().to_owned()),
        ("$EXITED".to_owned(), exited.to_string()),
        ("$SERVER".to_owned(), server.child.id().to_string()),
        ("$ROOT".to_owned(), root.clone()),
    ];
    vars.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let cases = load_cases(&vars);
    assert!(cases.len() >= 40, "the table has {} cases", cases.len());

    let started = Instant::now();
    let mut failures = Vec::new();
    for case in cases {
        let label = format!("{}: {} ({} {})", case.file, case.name, case.method, shorten(&case.path));
        match send(&client.addr, &case.method, &case.path, &case.headers, &case.payload) {
            Ok(response) => {
                if let Err(e) = judge(&case, &response) {
                    failures.push(format!("{label}: {e}"));
                }
            }
            Err(e) => failures.push(format!("{label}: no response: {e}")),
        }
        // Nothing may have started, whatever the answer.
        let total = client.total_processes();
        if total != 3 {
            failures.push(format!("{label}: started a process (total_processes is {total})"));
            break;
        }
    }
    eprintln!("sent the table in {:?}", started.elapsed());
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));

    // The server still answers, and nothing of the refused requests remains.
    assert_eq!(client.ok_json("GET", "/api/v1/health", None, 200), json!({"healthy": true}));
    let listed = client.ok_json("GET", "/api/v1/processes", None, 200);
    let pids: BTreeSet<u64> =
        listed["processes"].as_array().unwrap().iter().map(|p| p["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids, fixtures, "only the fixtures were ever started");
    assert_eq!(client.info(sleeping)["status"], "running", "no refused signal or kill reached it");
    assert_eq!(client.info(pipe_closed)["status"], "running");
    assert_eq!(Scratch::entries(&scratch.markers), Vec::<String>::new(), "a refused request created a file");
    assert_eq!(Scratch::entries(&scratch.outside), Vec::<String>::new(), "a refused request wrote outside the root");

    // The control: an accepted touch does leave its marker, so the checks
    // above could have seen one.
    let control = scratch.markers.join("control");
    let pid = client.start(json!({"command": "touch", "args": [control.to_str().unwrap()]}));
    assert_eq!(client.wait_ended(pid)["exit_code"], 0);
    assert!(control.exists(), "the control touch ran");
    for pid in [sleeping, pipe_closed] {
        assert_eq!(client.call("DELETE", &format!("/api/v1/processes/{pid}"), None).status, 204);
    }
}

fn shorten(text: &str) -> String {
    if text.len() > 80 { format!("{}...", &text[..80]) } else { text.to_owned() }
}
