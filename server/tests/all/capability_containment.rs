//! Kill ends everything a process started, detached descendants included,
//! where the table contains each child in a cgroup; with process groups
//! alone (the documented fallback) a descendant that left the group
//! survives. Every test asserts the behaviour of the mode in effect, and
//! prints which one that is: none is skipped.

use crate::capability_common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use capability_common::*;
use sandbox_process::capability::{Containment, Limits, Policy, ProcessTable};
use sandbox_process::types::{OutputSelector, ProcessError, ProcessStatus};

/// A detached descendant: it calls `setsid`, prints its pid and becomes a
/// `sleep 300` that still holds the output pipe.
const DETACHED: &str = "setsid sh -c 'echo $$; exec sleep 300'";

/// A daemon: a double fork, `setsid`, its pid on stdout, then a `sleep 300`
/// that closed its output; the process that made it exits at once.
const DAEMON: &str = "(setsid sh -c 'echo $$; exec sleep 300 >/dev/null 2>&1' &)";

fn announce(t: &ProcessTable) -> Containment {
    eprintln!("containment in effect: {:?} ({t:?})", t.containment());
    t.containment()
}

/// A process by pid and start time, so a reused pid is never mistaken for it.
#[derive(Debug, Clone, Copy)]
struct Known {
    pid: u32,
    start: u64,
}

fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

impl Known {
    fn new(pid: u32) -> Known {
        let fields = stat_fields(pid).unwrap_or_else(|| panic!("{pid} is not running"));
        Known { pid, start: fields[19].parse().unwrap() }
    }

    /// Running (not a zombie, not gone, not another process on its pid).
    fn alive(&self) -> bool {
        stat_fields(self.pid).is_some_and(|f| f[0] != "Z" && f[19] == self.start.to_string())
    }

    /// Its process group and session.
    fn group_and_session(&self) -> (u32, u32) {
        let f = stat_fields(self.pid).unwrap();
        (f[2].parse().unwrap(), f[3].parse().unwrap())
    }

    /// The clean-up for the process-group fallback, which can't reach it.
    fn kill(&self) {
        if self.alive() {
            // SAFETY: a positive pid we just checked is our descendant.
            unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        }
    }
}

/// Waits for the first stdout line of `pid` and reads it as a pid.
async fn first_line_pid(t: &ProcessTable, pid: u32) -> Known {
    let chunk = t.read_output(pid, OutputSelector::Stdout, 0, 1, BOUND).await.unwrap();
    let line = &chunk.lines.first().expect("a line within the bound").line;
    Known::new(line.parse().unwrap_or_else(|_| panic!("not a pid: {line:?}")))
}

/// The cgroups below `dir` (the children's, one per process).
fn subdirs(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn table_with(containment: Containment) -> ProcessTable {
    ProcessTable::new(Policy { containment, ..policy() }, Limits::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_a_descendant_that_left_the_process_group() {
    let t = table();
    let mode = announce(&t);
    let script = format!("{DETACHED} & exec sleep 300");
    let p = t.start(request("sh", &["-c", &script])).await.unwrap();
    let detached = first_line_pid(&t, p.pid).await;
    let (group, session) = detached.group_and_session();
    assert_ne!(group, p.pid, "it left the group");
    assert_eq!(session, detached.pid, "it leads its own session");

    // `signal` is for the process group in every mode: the leader gets it,
    // the detached descendant doesn't.
    t.signal(p.pid, libc::SIGTERM).unwrap();
    assert_eq!(ended(&t, p.pid).await.signal, Some(libc::SIGTERM));
    assert!(detached.alive(), "a group signal doesn't reach it");

    // `kill` of the ended process: with cgroups, it ends what it left.
    t.kill(p.pid).unwrap();
    match mode {
        Containment::Cgroup => {
            assert!(eventually(|| !detached.alive()).await, "the detached descendant survived the kill");
            // It held stdout: with it gone, the output completes.
            let (lines, _) = read_all(&t, p.pid, OutputSelector::Stdout).await;
            assert_eq!(texts(&lines), [detached.pid.to_string()]);
            let dir = t.cgroup_dir().unwrap();
            assert!(eventually(|| subdirs(dir).is_empty()).await, "its emptied cgroup is removed: {:?}", subdirs(dir));
        }
        _ => {
            assert!(eventually(|| live_members(p.pid).is_empty()).await, "the group is empty");
            assert!(detached.alive(), "with process groups alone, a detached descendant survives (documented)");
            detached.kill();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_of_an_exited_process_ends_the_daemon_it_left() {
    let t = table();
    let mode = announce(&t);
    let p = t.start(request("sh", &["-c", DAEMON])).await.unwrap();
    // The leader exits at once and the daemon closed its output, so the
    // output completes with the daemon still running.
    let (lines, chunk) = read_all(&t, p.pid, OutputSelector::Stdout).await;
    assert!(chunk.complete);
    let info = ended(&t, p.pid).await;
    assert_eq!((info.status, info.exit_code), (ProcessStatus::Exited, Some(0)));
    let daemon = Known::new(texts(&lines)[0].parse().unwrap());
    assert!(daemon.alive());
    assert_eq!(daemon.group_and_session(), (daemon.pid, daemon.pid));
    // Reaped, output complete, still its cgroup is kept while populated.
    if mode == Containment::Cgroup {
        assert_eq!(subdirs(t.cgroup_dir().unwrap()).len(), 1);
    }

    t.kill(p.pid).unwrap();
    match mode {
        Containment::Cgroup => {
            assert!(eventually(|| !daemon.alive()).await, "the daemon survived the kill");
            let dir = t.cgroup_dir().unwrap();
            assert!(eventually(|| subdirs(dir).is_empty()).await, "its emptied cgroup is removed: {:?}", subdirs(dir));
        }
        _ => {
            assert!(daemon.alive(), "with process groups alone, a daemon survives (documented)");
            daemon.kill();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_everything_and_leaves_no_cgroup() {
    let t = table();
    let mode = announce(&t);
    let dir = t.cgroup_dir().map(Path::to_owned);
    let detaching = t.start(request("sh", &["-c", &format!("{DETACHED} & exec sleep 300")])).await.unwrap();
    let detached = first_line_pid(&t, detaching.pid).await;
    let daemonizing = t.start(request("sh", &["-c", DAEMON])).await.unwrap();
    let daemon = first_line_pid(&t, daemonizing.pid).await;
    let plain = t.start(request("sleep", &["300"])).await.unwrap();
    let plain = Known::new(plain.pid);
    if let Some(dir) = &dir {
        assert_eq!(subdirs(dir).len(), 3, "a cgroup per process");
    }

    t.shutdown().await;
    assert_eq!(t.live_count(), 0);
    assert!(!plain.alive());
    match mode {
        Containment::Cgroup => {
            let dir = dir.unwrap();
            assert!(!dir.exists(), "{} is left after shutdown", dir.display());
            assert!(eventually(|| !detached.alive() && !daemon.alive()).await);
        }
        _ => {
            assert!(dir.is_none(), "no cgroup with process groups");
            assert!(
                detached.alive() && daemon.alive(),
                "with process groups alone, detached descendants survive (documented)"
            );
            detached.kill();
            daemon.kill();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_table_ends_everything_and_leaves_no_cgroup() {
    let t = table();
    let mode = announce(&t);
    let dir = t.cgroup_dir().map(Path::to_owned);
    let p = t.start(request("sh", &["-c", &format!("{DETACHED} & exec sleep 300")])).await.unwrap();
    let detached = first_line_pid(&t, p.pid).await;
    let leader = Known::new(p.pid);
    drop(t);
    assert!(eventually(|| !leader.alive()).await);
    match mode {
        Containment::Cgroup => {
            let dir = dir.unwrap();
            assert!(!dir.exists(), "{} is left after the drop", dir.display());
            assert!(eventually(|| !detached.alive()).await);
        }
        _ => {
            assert!(detached.alive(), "documented: it survives process groups");
            detached.kill();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_child_runs_in_a_cgroup_of_its_own() {
    let t = table();
    let Some(dir) = t.cgroup_dir().map(Path::to_owned) else {
        assert_eq!(announce(&t), Containment::ProcessGroup);
        let p = t.start(request("sleep", &["300"])).await.unwrap();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        let child = fs::read_to_string(format!("/proc/{}/cgroup", p.pid)).unwrap();
        assert_eq!(child, own, "without cgroups a child stays in ours");
        t.kill(p.pid).unwrap();
        return;
    };
    assert_eq!(announce(&t), Containment::Cgroup);
    let a = t.start(request("sleep", &["300"])).await.unwrap();
    let b = t.start(request("sleep", &["300"])).await.unwrap();
    let cgroup_of = |pid: u32| {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap().to_owned();
        // Relative to the hierarchy: it ends with the table's name and one more.
        let name = dir.file_name().unwrap().to_str().unwrap();
        let (_, child) = path
            .rsplit_once(&format!("/{name}/"))
            .unwrap_or_else(|| panic!("{pid} is in {path}, outside {}", dir.display()));
        child.to_owned()
    };
    let (ca, cb) = (cgroup_of(a.pid), cgroup_of(b.pid));
    assert_ne!(ca, cb);
    let mut all = subdirs(&dir);
    all.sort();
    let mut expected = vec![ca.clone(), cb];
    expected.sort();
    assert_eq!(all, expected);
    let members = fs::read_to_string(dir.join(&ca).join("cgroup.procs")).unwrap();
    assert_eq!(members.trim(), a.pid.to_string());
    t.kill(a.pid).unwrap();
    t.kill(b.pid).unwrap();
    ended(&t, a.pid).await;
    ended(&t, b.pid).await;
    assert!(eventually(|| subdirs(&dir).is_empty()).await, "removed once reaped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_groups_alone_miss_a_detached_descendant() {
    let t = table_with(Containment::ProcessGroup);
    assert_eq!(announce(&t), Containment::ProcessGroup);
    assert!(t.cgroup_dir().is_none());
    let p = t.start(request("sh", &["-c", &format!("{DETACHED} & exec sleep 300")])).await.unwrap();
    let detached = first_line_pid(&t, p.pid).await;
    t.kill(p.pid).unwrap();
    assert_eq!(ended(&t, p.pid).await.signal, Some(libc::SIGKILL));
    assert!(eventually(|| live_members(p.pid).is_empty()).await);
    assert!(detached.alive(), "the documented limit of process groups");
    // It holds stdout, so the output is not complete while it runs.
    let chunk = t.read_output(p.pid, OutputSelector::Stdout, 0, 10, Duration::ZERO).await.unwrap();
    assert!(!chunk.complete);
    detached.kill();
    let (lines, _) = read_all(&t, p.pid, OutputSelector::Stdout).await;
    assert_eq!(texts(&lines), [detached.pid.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_cgroups_contain_or_refuse_every_start() {
    let available = announce(&table()) == Containment::Cgroup;
    let t = table_with(Containment::Cgroup);
    assert_eq!(t.containment(), Containment::Cgroup);
    let started = t.start(request("true", &[])).await;
    if available {
        eprintln!("cgroups available: a required cgroup contains the child");
        let p = started.unwrap();
        assert!(t.cgroup_dir().is_some());
        assert_eq!(ended(&t, p.pid).await.exit_code, Some(0));
    } else {
        eprintln!("cgroups unavailable: a required cgroup refuses the start");
        match started {
            Err(ProcessError::Internal(msg)) => assert!(msg.contains("unavailable"), "{msg}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(t.live_count(), 0);
    }
}
