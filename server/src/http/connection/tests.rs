use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Busy, ConnState, Deadlines};

const SHORT: Duration = Duration::from_millis(50);
/// Far longer than any deadline here: only a watchdog that never fires
/// reaches it.
const BOUND: Duration = Duration::from_secs(10);

fn deadlines() -> Deadlines {
    Deadlines { header: SHORT, idle: SHORT * 2 }
}

async fn fires(conn: &ConnState, within: Duration) -> bool {
    tokio::time::timeout(within, conn.watchdog(deadlines())).await.is_ok()
}

#[tokio::test]
async fn a_head_that_does_not_come_closes_the_connection() {
    let conn = ConnState::new(Instant::now());
    assert!(fires(&conn, BOUND).await);
    // Closed: it can no longer take a request.
    assert!(Busy::enter(&Arc::new(conn)).is_none());
}

#[tokio::test]
async fn a_busy_connection_is_never_cut_and_idles_after() {
    let conn = Arc::new(ConnState::new(Instant::now()));
    let busy = Busy::enter(&conn).expect("a waiting connection takes a request");
    // Many deadlines long: still open, and the limit can't take it either.
    assert!(!fires(&conn, SHORT * 8).await);
    assert!(!conn.close_if_waiting());
    assert_eq!(conn.waiting_since(), None);
    drop(busy);
    assert!(conn.waiting_since().is_some());
    assert!(fires(&conn, BOUND).await);
}

#[tokio::test]
async fn bytes_after_an_idle_spell_start_a_head() {
    let conn = Arc::new(ConnState::new(Instant::now()));
    drop(Busy::enter(&conn).unwrap());
    let idle = conn.state.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(idle >> super::PHASE_SHIFT, super::IDLE);
    conn.saw_bytes();
    let head = conn.state.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(head >> super::PHASE_SHIFT, super::HEAD);
}

#[tokio::test]
async fn the_limit_closes_a_waiting_connection_at_once() {
    let conn = Arc::new(ConnState::new(Instant::now()));
    assert!(conn.close_if_waiting());
    // The watchdog sees it at its first look, not at the deadline.
    let watchdog = std::pin::pin!(conn.watchdog(deadlines()));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(watchdog.poll(&mut cx).is_ready());
    assert!(Busy::enter(&conn).is_none());
}

#[tokio::test]
async fn going_idle_brings_the_deadline_forward() {
    // A header deadline far past the bound: only the idle one, set when the
    // response ends while the watchdog sleeps on the head's, can fire.
    let conn = Arc::new(ConnState::new(Instant::now()));
    let long_head = Deadlines { header: BOUND * 10, idle: SHORT };
    let watchdog = conn.watchdog(long_head);
    let request = async {
        tokio::time::sleep(SHORT).await;
        drop(Busy::enter(&conn).unwrap());
        std::future::pending::<()>().await
    };
    tokio::select! {
        () = watchdog => {}
        () = request => unreachable!(),
        () = tokio::time::sleep(BOUND) => panic!("an idle connection outlived its deadline by {BOUND:?}"),
    }
}

#[tokio::test]
async fn a_head_while_the_last_response_is_still_held_is_served() {
    let conn = Arc::new(ConnState::new(Instant::now()));
    let first = Busy::enter(&conn).unwrap();
    let second = Busy::enter(&conn).expect("a busy connection takes the next request");
    drop(first);
    assert_eq!(conn.waiting_since(), None, "still busy with the second");
    drop(second);
    assert!(conn.waiting_since().is_some());
}
