//! Unit tests of the table's bookkeeping with fake processes: pids above
//! `i32::MAX`, which the signal guard refuses, so nothing is ever signalled.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use super::*;
use crate::capability::capture::Capture;
use crate::capability::policy::Policy;
use crate::capability::stdin::Stdin;
use crate::types::ProcessStatus;

const FAKE: u32 = 3_000_000_000;

fn inner(max_retained_exited: usize) -> Inner {
    Inner::new(CheckedPolicy::new(Policy::default()), Limits { max_retained_exited, ..Limits::default() })
}

/// Reserves a slot and registers a fake process `pid`, as `start` does.
fn start(inner: &Inner, pid: u32) -> Arc<Proc> {
    let order = inner.reserve().unwrap();
    let capture = Capture::new(1024, 1024, false, false);
    let proc = Arc::new(Proc::new(pid, order, "fake".into(), vec![], 0, Stdin::new(None), capture));
    inner.register(&proc).unwrap();
    proc
}

fn exit(inner: &Inner, proc: &Arc<Proc>) {
    inner.on_exit(proc, End::new(Ok(ExitStatus::from_raw(0)), 1));
}

fn pids(inner: &Inner) -> Vec<u32> {
    let (mut procs, _) = inner.snapshot();
    procs.sort_by_key(|p| p.order);
    procs.iter().map(|p| p.pid).collect()
}

#[test]
fn live_slots_are_reserved_and_freed() {
    let t = inner(10);
    let a = start(&t, FAKE);
    assert_eq!(t.lock().live, 1);
    t.reserve().unwrap();
    t.unreserve();
    exit(&t, &a);
    let table = t.lock();
    assert_eq!((table.live, table.total), (0, 1));
    drop(table);
    assert_eq!(a.info().status, ProcessStatus::Exited);
}

#[test]
fn the_oldest_ended_are_forgotten_first_and_running_ones_never() {
    let t = inner(2);
    let running = start(&t, FAKE);
    let ended: Vec<_> = (1..=3).map(|i| start(&t, FAKE + i)).collect();
    // End in the order 2, 1, 3: the first to end is the first forgotten.
    for i in [1, 0, 2] {
        exit(&t, &ended[i]);
    }
    assert_eq!(pids(&t), [FAKE, FAKE + 1, FAKE + 3]);
    assert!(matches!(t.find(FAKE + 2), Err(ProcessError::NotFound(_))));
    // Now the one that ended second (FAKE + 1) is the oldest.
    exit(&t, &running);
    assert_eq!(pids(&t), [FAKE, FAKE + 3]);
}

#[test]
fn a_reused_pid_replaces_the_retained_entry() {
    let t = inner(2);
    let old = start(&t, FAKE);
    exit(&t, &old);
    let new = start(&t, FAKE);
    assert!(Arc::ptr_eq(&t.find(FAKE).unwrap(), &new));
    assert_eq!(t.lock().ended.len(), 0, "the replaced entry no longer counts as retained");
    assert_eq!(t.lock().total, 2);
    exit(&t, &new);
    assert_eq!(t.lock().ended.len(), 1);
}

#[test]
fn a_late_reaper_of_a_replaced_entry_leaves_the_new_one_alone() {
    // The OS may hand out the pid again before the old reaper task has run.
    let t = inner(2);
    let old = start(&t, FAKE);
    let new = start(&t, FAKE);
    exit(&t, &old);
    assert_eq!(t.lock().live, 1);
    assert!(Arc::ptr_eq(&t.find(FAKE).unwrap(), &new));
    assert_eq!(new.info().status, ProcessStatus::Running);
    assert_eq!(t.lock().ended.len(), 0);
}

#[test]
fn limits_and_shutdown_refuse_starts() {
    let t = Inner::new(CheckedPolicy::new(Policy::default()), Limits { max_processes: 1, ..Limits::default() });
    let a = start(&t, FAKE);
    assert!(matches!(t.reserve(), Err(ProcessError::LimitExceeded(_))));
    exit(&t, &a);
    t.reserve().unwrap();
    t.lock().closing = true;
    assert!(matches!(t.reserve(), Err(ProcessError::Internal(_))));
}
