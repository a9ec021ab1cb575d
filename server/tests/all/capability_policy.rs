//! The policy as a caller of `ProcessTable::start` meets it: clear spawn
//! failures, and `denied` for what the policy forbids, with nothing started.

use crate::capability_common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use capability_common::*;
use sandbox_process::capability::{Limits, Policy, ProcessTable};
use sandbox_process::types::{EnvVar, OutputSelector, ProcessError, StartRequest};

/// A scratch directory tree, removed when dropped:
/// `<base>/root/sub`, `<base>/outside`, and `<base>/root/escape -> ../outside`.
struct Tree {
    base: PathBuf,
    root: PathBuf,
}

impl Tree {
    fn new(name: &str) -> Self {
        let base = std::env::temp_dir().join(format!("capability-policy-it-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("root/sub")).unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        symlink(base.join("outside"), base.join("root/escape")).unwrap();
        let base = base.canonicalize().unwrap();
        Tree { root: base.join("root"), base }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

async fn start_err(t: &ProcessTable, req: StartRequest) -> ProcessError {
    match t.start(req).await {
        Ok(info) => panic!("started {info:?}"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command_fails_to_spawn_with_a_clear_message() {
    let t = table();
    match start_err(&t, request("no-such-command-xyz", &[])).await {
        ProcessError::SpawnFailed(msg) => {
            // The child's PATH by default is the server's own.
            let path = std::env::var("PATH").unwrap();
            assert_eq!(msg, format!("command `no-such-command-xyz` not found on PATH ({path})"))
        }
        other => panic!("{other:?}"),
    }
    match start_err(&t, request("/no/such/bin", &[])).await {
        ProcessError::SpawnFailed(msg) => {
            assert_eq!(msg, "command `/no/such/bin`: No such file or directory (os error 2)")
        }
        other => panic!("{other:?}"),
    }
    assert!(t.list().is_empty());
    assert_eq!(t.live_count(), 0, "a failed start gives its slot back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_working_dir_fails_to_spawn_with_a_clear_message() {
    let t = table();
    let req = StartRequest { working_dir: Some("/nope".into()), ..request("true", &[]) };
    match start_err(&t, req).await {
        ProcessError::SpawnFailed(msg) => {
            assert_eq!(msg, "working_dir `/nope`: No such file or directory (os error 2)")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_path_searched_is_the_childs() {
    let t = table();
    let mut req = request("sh", &["-c", "echo ok"]);
    req.env = vec![EnvVar { name: "PATH".into(), value: "/nonexistent".into() }];
    assert!(
        matches!(start_err(&t, req).await, ProcessError::SpawnFailed(m) if m.contains("not found on PATH (/nonexistent)"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_working_dirs_start_from_the_default() {
    let tree = Tree::new("relative");
    let t =
        ProcessTable::new(Policy { default_working_dir: tree.root.clone(), ..Policy::default() }, Limits::default());
    let req = StartRequest { working_dir: Some("sub".into()), ..request("pwd", &[]) };
    let p = t.start(req).await.unwrap();
    let (lines, _) = read_all(&t, p.pid, OutputSelector::Stdout).await;
    assert_eq!(texts(&lines), [tree.root.join("sub").to_str().unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_dirs_outside_the_root_are_denied() {
    let tree = Tree::new("root");
    let policy = Policy {
        working_dir_root: Some(tree.root.clone()),
        default_working_dir: tree.root.clone(),
        ..Policy::default()
    };
    let t = ProcessTable::new(policy, Limits::default());
    let outside = tree.base.join("outside");
    for dir in ["..", "sub/../..", "escape", "/tmp", outside.to_str().unwrap()] {
        let req = StartRequest { working_dir: Some(dir.into()), ..request("true", &[]) };
        match start_err(&t, req).await {
            ProcessError::Denied(msg) => {
                assert!(msg.starts_with(&format!("working_dir `{dir}`")), "{msg}")
            }
            other => panic!("{dir}: {other:?}"),
        }
    }
    let inside = StartRequest { working_dir: Some("sub/../sub".into()), ..request("true", &[]) };
    let p = t.start(inside).await.unwrap();
    assert_eq!(ended(&t, p.pid).await.exit_code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_commands_run() {
    let sh = PathBuf::from("/bin/sh").canonicalize().unwrap();
    let policy = Policy { allowed_commands: Some(vec![PathBuf::from("/bin/sh")]), ..policy() };
    let t = ProcessTable::new(policy, Limits::default());
    // Allowed by any name that resolves to the same file.
    let p = t.start(request("sh", &["-c", "exit 3"])).await.unwrap();
    assert_eq!(ended(&t, p.pid).await.exit_code, Some(3));
    let p = t.start(request(sh.to_str().unwrap(), &["-c", "true"])).await.unwrap();
    ended(&t, p.pid).await;
    match start_err(&t, request("echo", &["hi"])).await {
        ProcessError::Denied(msg) => assert!(msg.starts_with("command `echo`"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // A symlink to a forbidden program is the forbidden program.
    let tree = Tree::new("allow");
    symlink("/bin/echo", tree.base.join("sh")).unwrap();
    let req = StartRequest { working_dir: Some(tree.base.to_str().unwrap().into()), ..request("./sh", &[]) };
    assert!(matches!(start_err(&t, req).await, ProcessError::Denied(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_env_is_denied() {
    let policy = Policy { forbidden_env: vec!["LD_PRELOAD".into()], ..policy() };
    let t = ProcessTable::new(policy, Limits::default());
    let mut req = request("true", &[]);
    req.env = vec![EnvVar { name: "LD_PRELOAD".into(), value: "/tmp/evil.so".into() }];
    match start_err(&t, req).await {
        ProcessError::Denied(msg) => assert_eq!(msg, "env `LD_PRELOAD` is forbidden by policy"),
        other => panic!("{other:?}"),
    }
    assert!(t.list().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_kill_on_host_death_children_start_the_same() {
    let policy = Policy { kill_on_host_death: false, ..policy() };
    let t = ProcessTable::new(policy, Limits::default());
    let p = t.start(request("sh", &["-c", "echo $$"])).await.unwrap();
    let (lines, _) = read_all(&t, p.pid, OutputSelector::Stdout).await;
    assert_eq!(texts(&lines), [p.pid.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_outlives_the_short_lived_thread_that_started_it() {
    // The death signal follows the thread that forks: the table forks on a
    // thread of its own, so a caller's thread ending must not kill the child.
    let t = table();
    let handle = tokio::runtime::Handle::current();
    let caller = {
        let t = t.clone();
        std::thread::spawn(move || {
            let _runtime = handle.enter();
            handle.block_on(t.start(request("sleep", &["100"]))).unwrap()
        })
    };
    let p = caller.join().unwrap();
    let info = t.wait(p.pid, std::time::Duration::from_millis(300)).await.unwrap();
    assert_eq!(info.status, sandbox_process::types::ProcessStatus::Running, "{info:?}");
    t.kill(p.pid).unwrap();
    ended(&t, p.pid).await;
}
