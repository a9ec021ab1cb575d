//! The invariants of the host's output capture, under arbitrary input.
//!
//! [`check`] reads from its bytes a capture's caps (tiny ones included), a
//! sequence of pushes of arbitrary bytes (partial lines, invalid UTF-8,
//! multi-byte characters cut anywhere, huge lines) on either stream,
//! ends of file, the exit, and reads from arbitrary cursors, and checks
//! after every step, against a model of what was pushed:
//!
//! - the bytes charged per stream never exceed the cap, and never undercount
//!   what the kept lines hold (their text, one byte each, one block record);
//! - dropped + retained == emitted, per stream and merged;
//! - the retained lines of a stream are the newest it emitted: exactly the
//!   pushed lines when none was longer than the line limit, and otherwise
//!   pieces of at most the limit whose concatenation is the pushed bytes
//!   (for valid UTF-8);
//! - merged order is arrival order, and timestamps never go backwards in it;
//! - a reader's cursor never goes back, a read returns at most what it was
//!   asked for, and a reader never misses more lines than were dropped;
//! - once every stream ended and the process exited, a reader reaches
//!   `complete`, having received or been told it missed every line.
//!
//! Compiled in two places: the `capture` fuzz target, and the host's unit
//! tests (over a fixed seeded corpus), which include this file by path.
//! `crate::capability::capture` and `crate::types` name the same things in
//! both; `super::source` is the sibling byte source.

use crate::capability::capture::{BLOCK_COST_BYTES, Capture, LINE_COST_BYTES};
use crate::types::{OutputSelector, OutputStream};

use super::source::Source;

const STREAMS: [OutputStream; 2] = [OutputStream::Stdout, OutputStream::Stderr];
const SELECTORS: [OutputSelector; 3] = [OutputSelector::Stdout, OutputSelector::Stderr, OutputSelector::Merged];

/// Bytes a chunk is built from: newlines, ASCII, whole multi-byte
/// characters, and the pieces of broken ones.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\n",
    b"a",
    b"xyz",
    b" ",
    b"\r",
    b"\0",
    "é".as_bytes(),
    "€".as_bytes(),
    "😀".as_bytes(),
    b"\xC3",             // a lead byte alone
    b"\xE2\x82",         // a three-byte character cut short
    b"\xF0\x9F\x98",     // a four-byte character cut short
    b"\x80",             // a continuation byte alone
    b"\xFF",             // never valid
    b"\xED\xA0\x80",     // a surrogate, invalid in UTF-8
    b"\xF8\x88\x80\x80", // a five-byte form, invalid
];

fn index(stream: OutputStream) -> usize {
    match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
    }
}

fn streams_of(selector: OutputSelector) -> &'static [usize] {
    match selector {
        OutputSelector::Stdout => &[0],
        OutputSelector::Stderr => &[1],
        OutputSelector::Merged => &[0, 1],
    }
}

/// What was pushed into one stream, as the model sees it.
#[derive(Default)]
struct StreamModel {
    captured: bool,
    finished: bool,
    /// Every byte pushed.
    bytes: Vec<u8>,
    /// The lines completed so far (without their `\n`); a partial last
    /// line joins them at end of file.
    lines: Vec<Vec<u8>>,
    /// Bytes after the last `\n`.
    partial: Vec<u8>,
    /// Lines (pieces) the capture emitted, as it said.
    emitted: u64,
    /// Some line was longer than the line limit (so it was cut in pieces).
    split: bool,
}

/// A reader following one selection from cursor 0 with small reads.
struct Reader {
    selector: OutputSelector,
    cursor: u64,
    max_lines: usize,
    received: u64,
    /// Lines it skipped over (the gap between its cursor and a read's).
    missed: u64,
    complete: bool,
}

struct Run {
    capture: Capture,
    cap: usize,
    /// The line limit the capture applies (it raises tiny ones to 4).
    max_line: usize,
    model: [StreamModel; 2],
    /// The stream of every line emitted, in arrival order.
    arrival: Vec<usize>,
    exited: bool,
    now: u64,
    readers: Vec<Reader>,
}

/// Runs one generated scenario and checks every invariant; panics on a
/// violation.
pub fn check(data: &[u8]) {
    let mut src = Source::new(data);
    let cap = match src.below(4) {
        0 => src.below(2 * BLOCK_COST_BYTES),
        1 => BLOCK_COST_BYTES + src.below(256),
        2 => src.below(1 << 14),
        _ => 1 << 22,
    };
    let max_line = match src.below(4) {
        0 => src.below(8),
        1 => 4 + src.below(60),
        2 => 1 + src.below(1 << 12),
        _ => 64 << 10,
    };
    let captured = [src.below(8) != 0, src.below(8) != 0];
    let mut run = Run {
        capture: Capture::new(cap, max_line, captured[0], captured[1]),
        cap,
        max_line: max_line.max(4),
        model: Default::default(),
        arrival: Vec::new(),
        exited: false,
        now: 0,
        readers: Vec::new(),
    };
    for (s, m) in run.model.iter_mut().enumerate() {
        m.captured = captured[s];
        m.finished = !captured[s];
    }
    for selector in SELECTORS {
        let max_lines = 1 + src.below(4);
        run.readers.push(Reader { selector, cursor: 0, max_lines, received: 0, missed: 0, complete: false });
    }
    let mut huge_left = 2;
    let steps = src.below(120);
    for step in 0..steps {
        if src.is_empty() {
            break;
        }
        run.now += src.below(3) as u64;
        match src.below(16) {
            0..=9 => {
                let s = src.below(2);
                if run.model[s].finished {
                    continue; // a pump never reads after end of file
                }
                let chunk = chunk(&mut src, &mut huge_left);
                run.push(s, &chunk);
            }
            10 => {
                let s = src.below(2);
                if !run.model[s].finished {
                    run.finish(s);
                }
            }
            11 => {
                run.capture.set_exited();
                run.exited = true;
            }
            12 => {
                let selector = src.pick(&SELECTORS);
                let cursor = match src.below(4) {
                    0 => 0,
                    1 => src.below(64) as u64,
                    2 => u64::MAX - src.below(2) as u64,
                    _ => src.below(1 << 16) as u64,
                };
                let max_lines = src.pick(&[0, 1, 2, 7, usize::MAX]);
                run.read_anywhere(selector, cursor, max_lines);
            }
            _ => {
                let r = src.below(run.readers.len());
                run.advance(r);
            }
        }
        // The content of the lines (which costs the size of everything
        // pushed) every few steps; the counts after every one.
        run.check_state(step % 8 == 7);
    }
    // The end: every stream ends, the process exits, every reader drains.
    for s in 0..2 {
        if !run.model[s].finished {
            run.finish(s);
        }
    }
    run.capture.set_exited();
    run.exited = true;
    run.check_state(true);
    for r in 0..run.readers.len() {
        run.drain(r);
    }
}

/// Bytes for one push: tokens, sometimes a run of one byte long enough to
/// exceed any line limit (at most a few, to keep an input fast).
fn chunk(src: &mut Source, huge_left: &mut usize) -> Vec<u8> {
    let mut out = Vec::new();
    match src.below(8) {
        0 if *huge_left > 0 => {
            *huge_left -= 1;
            let len = src.below(70_000);
            let fill = src.pick(&[b'a', 0xC3, 0x80, 0xFF]);
            out.resize(len, fill);
            if src.below(2) == 0 {
                out.extend_from_slice(src.pick(TOKENS));
            }
        }
        1 => {
            let n = src.below(64);
            out.extend_from_slice(src.take(n));
        }
        _ => {
            for _ in 0..src.below(40) {
                out.extend_from_slice(src.pick(TOKENS));
            }
        }
    }
    out
}

impl Run {
    fn push(&mut self, s: usize, data: &[u8]) {
        let emitted = self.capture.push(STREAMS[s], data, self.now);
        let max_line = self.max_line;
        let m = &mut self.model[s];
        m.bytes.extend_from_slice(data);
        let mut newlines = 0;
        for &b in data {
            if b == b'\n' {
                newlines += 1;
                let line = std::mem::take(&mut m.partial);
                m.split |= line.len() > max_line;
                m.lines.push(line);
            } else {
                m.partial.push(b);
            }
        }
        // A partial line beyond the limit is emitted in pieces already.
        m.split |= m.partial.len() > max_line;
        assert!(emitted >= newlines, "{emitted} lines emitted for {newlines} newlines");
        if !m.split {
            assert_eq!(emitted, newlines, "no line was cut, yet pieces appeared");
        }
        m.emitted += emitted as u64;
        self.arrival.extend(std::iter::repeat_n(s, emitted));
    }

    fn finish(&mut self, s: usize) {
        self.capture.finish(STREAMS[s], self.now);
        let m = &mut self.model[s];
        m.finished = true;
        if !m.partial.is_empty() {
            // The partial line (or its last piece) is emitted now.
            let line = std::mem::take(&mut m.partial);
            m.lines.push(line);
            m.emitted += 1;
            self.arrival.push(s);
        }
    }

    /// Everything retained for `selector`, read in one go from cursor 0.
    fn read_all(&self, selector: OutputSelector) -> crate::types::OutputChunk {
        self.capture.read(selector, 0, usize::MAX)
    }

    /// The invariants of the whole state, after any step; with `content`,
    /// the text of the retained lines too.
    fn check_state(&self, content: bool) {
        let mut retained = [0u64; 2];
        let mut dropped = [0u64; 2];
        for s in 0..2 {
            let m = &self.model[s];
            let chunk = self.read_all([OutputSelector::Stdout, OutputSelector::Stderr][s]);
            // What the kept lines cost: their text and ends, and a block
            // record for each read (at least one if any line is kept).
            let text: usize = chunk.lines.iter().map(|l| l.line.len() + LINE_COST_BYTES).sum();
            let charged = self.capture.retained_bytes(STREAMS[s]);
            assert!(charged <= self.cap, "stream {s} retains {charged} bytes, over the cap {}", self.cap);
            let least = if chunk.lines.is_empty() { 0 } else { text + BLOCK_COST_BYTES };
            assert!(charged >= least, "stream {s} charges {charged} bytes for {least} bytes of lines");
            retained[s] = chunk.lines.len() as u64;
            dropped[s] = chunk.dropped;
            assert_eq!(chunk.dropped + retained[s], m.emitted, "stream {s}: dropped + retained != emitted");
            assert!(chunk.lines.iter().all(|l| l.stream == STREAMS[s]));
            assert!(chunk.next_cursor <= m.emitted);
            if chunk.lines.is_empty() {
                assert_eq!(chunk.next_cursor, m.emitted);
            }
            if content {
                self.check_content(s, &chunk.lines);
            }
            // Read to the end: complete as soon as nothing more can come.
            assert_eq!(chunk.complete, self.exited && self.all_finished(), "stream {s}: complete");
        }
        // Merged: the retained lines of both, in arrival order.
        let merged = self.read_all(OutputSelector::Merged);
        assert_eq!(merged.dropped, dropped[0] + dropped[1]);
        assert_eq!(
            merged.dropped + merged.lines.len() as u64,
            self.arrival.len() as u64,
            "merged: dropped + retained != emitted"
        );
        // Per stream, the retained are the newest: drop the oldest from the
        // arrival order and what is left must be the merged order.
        let mut skip = dropped;
        let expected: Vec<usize> = self
            .arrival
            .iter()
            .copied()
            .filter(|&s| {
                if skip[s] > 0 {
                    skip[s] -= 1;
                    false
                } else {
                    true
                }
            })
            .collect();
        let got: Vec<usize> = merged.lines.iter().map(|l| index(l.stream)).collect();
        assert_eq!(got, expected, "merged order is not arrival order");
        assert!(
            merged.lines.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
            "timestamps go backwards in arrival order"
        );
        for r in &self.readers {
            assert!(r.missed <= dropped[0] + dropped[1]);
        }
    }

    /// The retained lines of stream `s` against what was pushed.
    fn check_content(&self, s: usize, lines: &[crate::types::OutputLine]) {
        let m = &self.model[s];
        let valid = std::str::from_utf8(&m.bytes).is_ok();
        if !m.split {
            // Whole lines: exactly the newest pushed ones, decoded lossily.
            let newest = &m.lines[m.lines.len() - lines.len()..];
            for (got, want) in lines.iter().zip(newest) {
                assert_eq!(got.line, String::from_utf8_lossy(want), "stream {s}");
            }
            return;
        }
        for line in lines {
            // A lossy decode turns each bad byte into a 3-byte U+FFFD.
            let limit = if valid { self.max_line } else { 3 * self.max_line };
            assert!(
                line.line.len() <= limit,
                "stream {s}: a piece of {} bytes, over the limit {limit}",
                line.line.len()
            );
        }
        if valid && m.partial.is_empty() {
            // Pieces are cut at character boundaries: together they are the
            // pushed text without its newlines (checked when no partial line
            // is pending, whose first pieces may be out already).
            let text: Vec<u8> = m.bytes.iter().copied().filter(|&b| b != b'\n').collect();
            let retained: String = lines.iter().map(|l| l.line.as_str()).collect();
            assert!(
                text.ends_with(retained.as_bytes()),
                "stream {s}: the retained pieces are not the end of what was pushed"
            );
            if lines.len() as u64 == m.emitted {
                assert_eq!(retained.as_bytes(), &text[..], "stream {s}: bytes lost or added");
            }
        }
    }

    fn all_finished(&self) -> bool {
        self.model.iter().all(|m| m.finished)
    }

    /// Lines emitted so far on `selector`'s streams.
    fn emitted(&self, selector: OutputSelector) -> u64 {
        streams_of(selector).iter().map(|&s| self.model[s].emitted).sum()
    }

    /// A read from anywhere: bounded, ordered, never moving a cursor back.
    fn read_anywhere(&self, selector: OutputSelector, cursor: u64, max_lines: usize) {
        let chunk = self.capture.read(selector, cursor, max_lines);
        assert!(chunk.lines.len() <= max_lines);
        assert!(chunk.next_cursor >= cursor, "a cursor went back");
        assert!(chunk.next_cursor - cursor >= chunk.lines.len() as u64, "more lines than cursor positions");
        let emitted = self.emitted(selector);
        if cursor <= emitted {
            assert!(chunk.next_cursor <= emitted);
        }
        let streams = streams_of(selector);
        assert!(chunk.lines.iter().all(|l| streams.contains(&index(l.stream))));
    }

    /// One small read by reader `r` from its cursor.
    fn advance(&mut self, r: usize) {
        let reader = &self.readers[r];
        let (selector, cursor, max_lines) = (reader.selector, reader.cursor, reader.max_lines);
        let chunk = self.capture.read(selector, cursor, max_lines);
        assert!(chunk.lines.len() <= max_lines);
        assert!(chunk.next_cursor >= cursor, "a reader's cursor went back");
        let gap = chunk.next_cursor - cursor - chunk.lines.len() as u64;
        let complete_now = self.exited && self.all_finished();
        let reader = &mut self.readers[r];
        assert!(!reader.complete || chunk.lines.is_empty(), "lines after complete");
        reader.received += chunk.lines.len() as u64;
        reader.missed += gap;
        reader.cursor = chunk.next_cursor;
        if chunk.complete {
            assert!(complete_now, "complete before the end");
            reader.complete = true;
        }
        assert!(
            reader.missed <= chunk.dropped,
            "a reader missed {} lines, but only {} were dropped",
            reader.missed,
            chunk.dropped
        );
    }

    /// Reader `r` reads until complete; every line emitted on its selection
    /// was either received or counted as missed.
    fn drain(&mut self, r: usize) {
        let bound = self.emitted(self.readers[r].selector) + 2;
        for _ in 0..bound {
            if self.readers[r].complete {
                break;
            }
            self.advance(r);
        }
        let reader = &self.readers[r];
        assert!(reader.complete, "{:?}: never complete after {bound} reads", reader.selector);
        assert_eq!(
            reader.received + reader.missed,
            self.emitted(reader.selector),
            "{:?}: lines neither received nor missed",
            reader.selector
        );
    }
}
