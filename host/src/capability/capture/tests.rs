//! Unit tests of [`Capture`]: splitting, limits, cursors and completeness,
//! with no process involved.

use super::split::char_boundary_cut;
use super::*;
use crate::types::OutputSelector::{Merged, Stderr as SelErr, Stdout as SelOut};
use crate::types::OutputStream::{Stderr, Stdout};

/// A capture with room for everything unless a test says otherwise.
fn big() -> Capture {
    Capture::new(1 << 20, 1 << 10, true, true)
}

fn texts(chunk: &OutputChunk) -> Vec<&str> {
    chunk.lines.iter().map(|l| l.line.as_str()).collect()
}

fn all(c: &Capture, selector: OutputSelector) -> OutputChunk {
    c.read(selector, 0, usize::MAX)
}

#[test]
fn splits_at_newline_and_strips_only_the_newline() {
    let mut c = big();
    assert_eq!(c.push(Stdout, b"a\nb\r\n\nc", 7), 3);
    let chunk = all(&c, SelOut);
    assert_eq!(texts(&chunk), ["a", "b\r", ""]);
    assert!(chunk.lines.iter().all(|l| l.timestamp == 7 && l.stream == Stdout));
    assert_eq!(chunk.next_cursor, 3);
}

#[test]
fn joins_a_line_across_reads_and_stamps_it_when_complete() {
    let mut c = big();
    assert_eq!(c.push(Stdout, b"hel", 1), 0);
    assert_eq!(c.push(Stdout, b"lo\nwor", 2), 1);
    assert_eq!(c.push(Stdout, b"ld\n", 3), 1);
    let chunk = all(&c, SelOut);
    assert_eq!(texts(&chunk), ["hello", "world"]);
    assert_eq!(chunk.lines[0].timestamp, 2);
    assert_eq!(chunk.lines[1].timestamp, 3);
}

#[test]
fn emits_the_partial_last_line_at_eof() {
    let mut c = big();
    c.push(Stdout, b"one\ntwo", 1);
    assert_eq!(texts(&all(&c, SelOut)), ["one"]);
    c.finish(Stdout, 2);
    assert_eq!(texts(&all(&c, SelOut)), ["one", "two"]);
    // An empty partial line is not a line.
    c.finish(Stderr, 3);
    assert!(all(&c, SelErr).lines.is_empty());
}

#[test]
fn invalid_utf8_is_replaced() {
    let mut c = big();
    c.push(Stdout, b"ok \xff\xfe end\n\xc3\xa9\n", 1);
    assert_eq!(texts(&all(&c, SelOut)), ["ok \u{fffd}\u{fffd} end", "é"]);
}

#[test]
fn long_lines_are_emitted_in_pieces() {
    let mut c = Capture::new(1 << 20, 4, true, true);
    c.push(Stdout, b"abcdefghij\n", 1);
    assert_eq!(texts(&all(&c, SelOut)), ["abcd", "efgh", "ij"]);
}

#[test]
fn a_line_of_exactly_the_limit_is_one_line_even_across_reads() {
    let mut c = Capture::new(1 << 20, 4, true, true);
    c.push(Stdout, b"abcd", 1);
    c.push(Stdout, b"\nefgh\n", 2);
    c.push(Stdout, b"ijklmnop", 3);
    c.push(Stdout, b"\n", 4);
    assert_eq!(texts(&all(&c, SelOut)), ["abcd", "efgh", "ijkl", "mnop"]);
}

#[test]
fn a_newline_free_flood_is_bounded_by_the_line_limit() {
    let mut c = Capture::new(8 << 20, 16, true, true);
    for _ in 0..1000 {
        c.push(Stdout, &[b'x'; 1000], 1);
        assert!(c.pending(Stdout) <= 16);
    }
    let chunk = all(&c, SelOut);
    assert_eq!(chunk.lines.len(), 1_000_000 / 16 - 1, "the last full piece waits for more bytes");
    assert!(chunk.lines.iter().all(|l| l.line.len() == 16));
}

#[test]
fn pieces_are_cut_at_a_character_boundary() {
    // "aé€😀" is 1 + 2 + 3 + 4 bytes; a 4-byte limit must never split a char.
    let mut c = Capture::new(1 << 20, 4, true, true);
    c.push(Stdout, "aé€😀b\n".as_bytes(), 1);
    let chunk = all(&c, SelOut);
    assert_eq!(texts(&chunk), ["aé", "€", "😀", "b"]);
    assert!(!chunk.lines.iter().any(|l| l.line.contains('\u{fffd}')));
}

#[test]
fn char_boundary_cut_cases() {
    assert_eq!(char_boundary_cut(b"abcd"), 4);
    assert_eq!(char_boundary_cut(b"ab\xc3"), 2); // lead of a 2-byte char
    assert_eq!(char_boundary_cut(b"a\xe2\x82"), 1); // 2 of 3 bytes
    assert_eq!(char_boundary_cut(b"\xe2\x82\xac"), 3); // a whole char
    assert_eq!(char_boundary_cut(b"\xf0\x9f\x98"), 3); // nothing before: no empty piece
    assert_eq!(char_boundary_cut(b"ab\xff"), 3); // invalid byte: left to the decoder
}

/// What one read of `lines` lines of `text_bytes` bytes in all costs.
fn block_cost(lines: usize, text_bytes: usize) -> usize {
    BLOCK_COST_BYTES + text_bytes + lines * LINE_COST_BYTES
}

#[test]
fn the_cap_drops_the_oldest_lines_of_the_full_stream_only() {
    // Room for exactly three one-byte lines read together per stream.
    let cap = block_cost(3, 3);
    let mut c = Capture::new(cap, 1024, true, true);
    c.push(Stderr, b"E\n", 1);
    c.push(Stdout, b"1\n2\n3\n4\n5\n", 1);
    assert_eq!(texts(&all(&c, SelOut)), ["3", "4", "5"]);
    assert_eq!(c.dropped(Stdout), 2);
    assert_eq!(c.dropped(Stderr), 0);
    assert_eq!(texts(&all(&c, SelErr)), ["E"]);
    assert_eq!(all(&c, SelOut).dropped, 2);
    assert_eq!(all(&c, SelErr).dropped, 0);
    assert_eq!(all(&c, Merged).dropped, 2);
    assert_eq!(c.retained_bytes(Stdout), cap);
    assert_eq!(c.retained_bytes(Stderr), block_cost(1, 1));
}

#[test]
fn the_cap_counts_the_text_kept_not_a_fixed_cost_per_line() {
    // `yes`: two-byte lines, a million of them, into a 64 KiB cap, read
    // 4096 lines at a time.
    let cap = 64 << 10;
    let mut c = Capture::new(cap, 1024, true, true);
    let block = b"y\n".repeat(4096);
    let reads = 1_000_000 / 4096;
    for _ in 0..reads {
        c.push(Stdout, &block, 1);
        assert!(c.retained_bytes(Stdout) <= cap);
    }
    let chunk = all(&c, SelOut);
    let kept = chunk.lines.len();
    // A read of 4096 lines is kept as blocks of 256: the newest whole
    // blocks, and as many of the newest lines of the block before them as
    // fit. Every line costs its text and its end, every block 64 bytes.
    let per_block = tail::MAX_BLOCK_LINES as usize;
    let block = block_cost(per_block, per_block);
    let whole = cap / block;
    assert_eq!(kept, whole * per_block + (cap - whole * block - BLOCK_COST_BYTES) / (1 + LINE_COST_BYTES));
    // Most of the cap is text (with its line ends, 2 bytes a line): the
    // block records take an eighth for the shortest lines there are.
    assert!(kept * 2 > cap * 7 / 8, "{kept} lines of 2 bytes kept in {cap}");
    // Nothing lost silently: kept + dropped is everything, and the kept
    // lines are the newest ones.
    assert_eq!(kept as u64 + chunk.dropped, (reads * 4096) as u64);
    assert_eq!(chunk.next_cursor, kept as u64 + chunk.dropped);
}

#[test]
fn a_read_of_many_lines_is_kept_in_blocks_that_cursors_find_lines_in() {
    let mut c = big();
    let text: String = (0..1000).map(|i| format!("{i}\n")).collect();
    c.push(Stdout, text.as_bytes(), 5);
    c.push(Stderr, b"e\n", 6);
    c.push(Stdout, b"1000\n", 7);
    // 1000 lines: blocks of 256, 256, 256 and 232.
    assert_eq!(c.retained_bytes(Stdout), text.len() + 4 * BLOCK_COST_BYTES + block_cost(1, 4));
    for cursor in [0, 1, 255, 256, 257, 511, 999, 1000] {
        let chunk = c.read(SelOut, cursor, 2);
        assert_eq!(chunk.lines[0].line, cursor.to_string(), "from {cursor}");
        // Merged: the stderr line is number 1000, stdout's 1000 is 1001.
        let chunk = c.read(Merged, cursor, 2);
        let want = if cursor == 1000 { "e" } else { &cursor.to_string() };
        assert_eq!(chunk.lines[0].line, want, "merged from {cursor}");
    }
    assert_eq!(texts(&c.read(Merged, 1001, 5)), ["1000"]);
    assert_eq!(all(&c, Merged).lines.len(), 1002);
}

#[test]
fn lines_read_one_at_a_time_cost_a_block_each() {
    let cap = 10 * block_cost(1, 9);
    let mut c = Capture::new(cap, 1024, true, true);
    for i in 0..100 {
        c.push(Stdout, format!("line {i:04}\n").as_bytes(), i);
    }
    let chunk = all(&c, SelOut);
    assert_eq!(chunk.lines.len(), 10);
    assert_eq!(chunk.lines[0].line, "line 0090");
    assert_eq!(chunk.lines[0].timestamp, 90);
    assert_eq!(c.retained_bytes(Stdout), cap);
}

#[test]
fn a_line_bigger_than_the_whole_cap_is_dropped_and_counted() {
    let mut c = Capture::new(block_cost(1, 2), 1024, true, true);
    c.push(Stdout, b"ab\n", 1);
    assert_eq!(texts(&all(&c, SelOut)), ["ab"]);
    c.push(Stdout, b"abc\n", 2);
    let chunk = all(&c, SelOut);
    assert!(chunk.lines.is_empty());
    assert_eq!(chunk.dropped, 2);
    assert_eq!(c.retained_bytes(Stdout), 0);
}

#[test]
fn merged_reads_follow_arrival_order() {
    let mut c = big();
    c.push(Stdout, b"o1\n", 1);
    c.push(Stderr, b"e1\ne2\n", 2);
    c.push(Stdout, b"o2\n", 3);
    c.push(Stderr, b"e3\n", 4);
    let chunk = all(&c, Merged);
    assert_eq!(texts(&chunk), ["o1", "e1", "e2", "o2", "e3"]);
    let streams: Vec<_> = chunk.lines.iter().map(|l| l.stream).collect();
    assert_eq!(streams, [Stdout, Stderr, Stderr, Stdout, Stderr]);
    assert_eq!(texts(&all(&c, SelOut)), ["o1", "o2"]);
    assert_eq!(texts(&all(&c, SelErr)), ["e1", "e2", "e3"]);
}

#[test]
fn cursors_page_through_merged_output_without_loss_or_repeats() {
    let mut c = big();
    for i in 0..10 {
        let stream = if i % 3 == 0 { Stderr } else { Stdout };
        c.push(stream, format!("{i}\n").as_bytes(), i);
    }
    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let chunk = c.read(Merged, cursor, 3);
        if chunk.lines.is_empty() {
            break;
        }
        assert!(chunk.lines.len() <= 3);
        seen.extend(chunk.lines.iter().map(|l| l.line.clone()));
        cursor = chunk.next_cursor;
    }
    let expected: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(seen, expected);
    assert_eq!(cursor, 10);
}

#[test]
fn a_stream_cursor_counts_that_streams_lines_so_drops_show_as_a_gap() {
    let cap = block_cost(2, 2);
    let mut c = Capture::new(cap, 1024, true, true);
    c.push(Stdout, b"a\nb\nc\nd\n", 1); // stdout index 0..=3, a and b dropped
    c.push(Stderr, b"x\n", 1); // seq 4, stderr index 0
    let chunk = c.read(SelOut, 0, 10);
    assert_eq!(texts(&chunk), ["c", "d"]);
    assert_eq!(chunk.next_cursor, 4);
    assert_eq!(chunk.dropped, 2);
    // From 0 to 4 with 2 lines returned: the reader missed 2, the drops.
    assert_eq!(chunk.next_cursor - chunk.lines.len() as u64, chunk.dropped);
    // The stderr line is not in stdout's cursor space.
    let chunk = c.read(SelOut, 4, 10);
    assert!(chunk.lines.is_empty());
    assert_eq!(chunk.next_cursor, 4);
    let chunk = c.read(SelErr, 0, 10);
    assert_eq!((texts(&chunk), chunk.next_cursor), (vec!["x"], 1));
    // Merged counts both streams: seq 0..=4, 2 of them dropped.
    let chunk = c.read(Merged, 0, 10);
    assert_eq!(texts(&chunk), ["c", "d", "x"]);
    assert_eq!(chunk.next_cursor, 5);
    assert_eq!(chunk.next_cursor - chunk.lines.len() as u64, 2);
    // A cursor beyond everything is kept as it is.
    assert_eq!(c.read(SelOut, 99, 10).next_cursor, 99);
}

#[test]
fn zero_max_lines_keeps_the_cursor() {
    let mut c = big();
    c.push(Stdout, b"a\n", 1);
    let chunk = c.read(Merged, 0, 0);
    assert!(chunk.lines.is_empty());
    assert_eq!(chunk.next_cursor, 0);
    assert!(!chunk.complete);
}

#[test]
fn complete_needs_exit_every_eof_and_everything_read() {
    let mut c = Capture::new(1 << 20, 1024, true, false);
    c.push(Stdout, b"a\n", 1);
    assert!(!all(&c, Merged).complete);
    c.set_exited();
    assert!(!all(&c, Merged).complete, "stdout has not reached end of file");
    c.finish(Stdout, 2);
    assert!(c.streams_done(), "a discarded stream counts as done");
    assert!(!c.read(Merged, 0, 0).complete, "a line is still unread");
    let chunk = all(&c, Merged);
    assert!(chunk.complete);
    assert!(c.read(Merged, chunk.next_cursor, 10).complete);
}

#[test]
fn discarded_streams_start_done() {
    let c = Capture::new(1024, 1024, false, false);
    assert!(c.streams_done());
    let mut c = c;
    c.set_exited();
    let chunk = all(&c, Merged);
    assert!(chunk.complete);
    assert_eq!(chunk.next_cursor, 0);
}

/// Found by the capture fuzz invariants: a merged read that returned the
/// last retained lines ended its cursor right after them, though the newest
/// line (of the other stream, too big for its cap) was dropped after them.
/// A follow stream then completed without reporting that it missed it.
#[test]
fn a_dropped_newest_line_shows_in_the_cursor_of_a_merged_read() {
    let mut c = Capture::new(block_cost(1, 8), 1 << 10, true, true);
    c.push(Stdout, b"kept\n", 1);
    // Alone over the cap: dropped as it arrives, while `kept` stays.
    c.push(Stderr, b"far too long for the cap\n", 2);
    c.finish(Stdout, 3);
    c.finish(Stderr, 3);
    c.set_exited();
    let chunk = c.read(Merged, 0, 10);
    assert_eq!(texts(&chunk), ["kept"]);
    assert_eq!((chunk.dropped, chunk.complete), (1, true));
    // Two lines were given out: the cursor passes both, so the reader can
    // tell that it missed one.
    assert_eq!(chunk.next_cursor, 2);
    assert_eq!(chunk.next_cursor - chunk.lines.len() as u64, chunk.dropped);
    // While more retained lines follow, the cursor stops after the last
    // line returned.
    let mut c = big();
    c.push(Stdout, b"a\nb\n", 1);
    assert_eq!(c.read(SelOut, 0, 1).next_cursor, 1);
}

// The invariants of the `capture` fuzz target, over a fixed corpus of
// seeded pseudo-random inputs, so that every `cargo test` checks them
// without a fuzzer.
#[path = "../../../../fuzz/src/source.rs"]
#[allow(dead_code)]
mod source;

#[path = "../../../../fuzz/src/capture_check.rs"]
mod capture_check;

#[test]
fn fuzz_invariants_hold_over_a_fixed_corpus() {
    for input in source::corpus(0x6361_7074_7572, 500, 4096) {
        capture_check::check(&input);
    }
}
