//! Unit tests of a capture held for one consumer: what no cap may drop,
//! and when the pumps may read more.

use super::*;
use crate::types::OutputSelector::Stdout as SelOut;
use crate::types::OutputStream::{Stderr, Stdout};

fn big() -> Capture {
    Capture::new(1 << 20, 1 << 10, true, true)
}

fn texts(chunk: &OutputChunk) -> Vec<&str> {
    chunk.lines.iter().map(|l| l.line.as_str()).collect()
}

fn all(c: &Capture, selector: OutputSelector) -> OutputChunk {
    c.read(selector, 0, usize::MAX)
}

fn block_cost(lines: usize, text_bytes: usize) -> usize {
    BLOCK_COST_BYTES + text_bytes + lines * LINE_COST_BYTES
}

#[test]
fn a_hold_keeps_the_lines_its_consumer_has_not_read_past_the_cap() {
    let mut c = Capture::new(block_cost(2, 2), 1024, true, true);
    c.hold(1 << 20);
    c.push(Stdout, b"0\n1\n2\n3\n4\n", 1);
    assert_eq!(texts(&all(&c, SelOut)), ["0", "1", "2", "3", "4"], "nothing read yet: nothing dropped");
    // Read up to line 3: the cap may drop those now, and does at the next
    // push; the unread ones stay.
    c.advance_hold(3);
    c.push(Stdout, b"5\n", 2);
    assert_eq!(texts(&all(&c, SelOut)), ["3", "4", "5"]);
    assert_eq!(c.dropped(Stdout), 3);
    // A cursor never goes back.
    c.advance_hold(1);
    c.push(Stdout, b"6\n", 3);
    assert_eq!(texts(&all(&c, SelOut)), ["3", "4", "5", "6"]);
    // Released: the cap applies to every line again (and the newest read
    // alone fills it).
    c.release_hold();
    c.push(Stdout, b"7\n", 4);
    assert_eq!(texts(&all(&c, SelOut)), ["7"]);
    assert_eq!(c.dropped(Stdout), 7);
}

#[test]
fn a_hold_has_room_until_a_window_of_unread_text_waits() {
    let mut c = big();
    assert!(c.has_room(), "no hold: always room");
    c.hold(10);
    c.push(Stdout, b"12345\n", 1);
    assert!(c.has_room(), "6 bytes unread, window 10");
    c.push(Stderr, b"abcd\n", 2);
    assert!(!c.has_room(), "11 bytes unread");
    c.advance_hold(1);
    assert!(c.has_room(), "5 bytes unread");
    c.push(Stdout, b"line that fills it\n", 3);
    assert!(!c.has_room());
    c.advance_hold(3);
    assert!(c.has_room(), "everything read");
    c.push(Stdout, b"a very long line, longer than the window\n", 4);
    assert!(!c.has_room());
    c.release_hold();
    assert!(c.has_room(), "released");
}

#[test]
fn a_held_capture_over_the_budget_waits_for_its_consumer() {
    let budget = budget::CaptureBudget::new(100);
    let mut c = big().with_budget(budget.clone());
    c.hold(1 << 20);
    c.push(Stdout, b"short\n", 1);
    assert!(c.has_room());
    c.push(Stdout, &[b'x'; 200], 2);
    c.push(Stdout, b"\n", 3);
    assert!(budget.used() > 100);
    assert!(!c.has_room(), "over the budget with lines unread");
    c.advance_hold(2);
    assert!(c.has_room(), "over the budget, but nothing unread");
}

#[test]
fn unread_bytes_count_from_the_consumers_line_in_any_block() {
    let mut c = big();
    c.hold(1 << 30);
    let text: String = (0..600).map(|i| format!("{i:03}\n")).collect(); // 3 blocks
    c.push(Stdout, text.as_bytes(), 1);
    c.push(Stderr, b"err\n", 2); // seq 600
    for cursor in [0u64, 1, 255, 256, 300, 599, 600, 601, 700] {
        c.advance_hold(cursor);
        let out = 4 * 600u64.saturating_sub(cursor);
        let err = if cursor <= 600 { 4 } else { 0 };
        assert_eq!(c.streams[0].tail.bytes_from(cursor) + c.streams[1].tail.bytes_from(cursor), out + err);
    }
}
