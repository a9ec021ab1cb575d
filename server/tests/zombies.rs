//! No zombie is ever left: every child is reaped. Alone in its test binary,
//! so that no other test's children are caught between exit and reaping.

#[path = "all/capability_common/mod.rs"]
mod capability_common;

use capability_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_zombie_after_200_short_processes() {
    let t = table();
    let mut pids = Vec::new();
    for i in 0..200 {
        let req = if i % 2 == 0 { request("true", &[]) } else { request("sh", &["-c", "echo x; exit 1"]) };
        pids.push(t.start(req).await.unwrap().pid);
    }
    for pid in pids {
        ended(&t, pid).await;
    }
    assert_eq!(t.live_count(), 0);
    let me = std::process::id();
    let zombies: Vec<_> = processes().into_iter().filter(|p| p.ppid == me && p.state == 'Z').collect();
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
}
