//! Bounded, line-oriented capture of a child's stdout and stderr.
//!
//! [`Capture`] is a pure data structure: the pump tasks feed it the bytes
//! they read, readers ask it for the lines after a cursor. It knows nothing
//! of processes, pipes or time (timestamps are passed in), so every rule is
//! unit-tested in isolation (`capture/tests.rs`).
//!
//! The rules:
//!
//! - Bytes are split into lines (`split`): at `\n`, invalid UTF-8 replaced,
//!   lines longer than `max_line_bytes` cut into pieces, a partial last
//!   line emitted at end of file.
//! - Every line gets a sequence number from one counter shared by both
//!   streams, which makes the merged order the arrival order, and an index
//!   among its own stream's lines. A cursor counts lines of its selection
//!   (the WIT contract says so): the index for one stream, the sequence
//!   number for both. So a reader can tell how many lines it missed to the
//!   cap from the gap between its cursor and the next one.
//! - Each stream keeps at most `capture_bytes`, counting each line's text
//!   plus [`LINE_COST_BYTES`], and [`BLOCK_COST_BYTES`] for each block of
//!   up to 256 lines read together (`tail`: that is what they really
//!   take); past it the
//!   oldest lines *of that stream* are dropped and counted, so output is
//!   never lost silently and a noisy stderr can't evict stdout.
//! - A capture may have one consumer that must not miss a line (a `run`
//!   stream's caller): a [`Hold`] at the merged cursor up to which it has
//!   read. No line at or after it is dropped, by any cap, and the pumps
//!   read no more while a window of unread output is waiting
//!   ([`Capture::has_room`]), so the child blocks on its pipe until the
//!   consumer catches up.

use std::sync::Arc;

use crate::types::{OutputChunk, OutputLine, OutputSelector, OutputStream};

#[path = "capture/budget.rs"]
pub(crate) mod budget;
#[path = "capture/split.rs"]
mod split;
#[path = "capture/tail.rs"]
mod tail;

use budget::{Account, CaptureBudget};
use split::{Lines, Splitter};
pub use tail::{BLOCK_COST_BYTES, LINE_COST_BYTES};
use tail::{LineRef, Tail, Walk};

/// One stream: its splitter and its kept lines.
#[derive(Debug)]
struct Stream {
    splitter: Splitter,
    tail: Tail,
    /// No line will ever be added: end of file was read, or the stream is
    /// not captured at all.
    done: bool,
}

/// The one consumer a capture keeps every line for (see the module doc).
#[derive(Debug, Clone, Copy)]
struct Hold {
    /// The merged cursor it has read up to: every line before it.
    cursor: u64,
    /// The most bytes of text it may have waiting before the pumps stop.
    window: u64,
}

/// The captured output of one process: both streams, one cursor space.
#[derive(Debug)]
pub(crate) struct Capture {
    streams: [Stream; 2],
    next_seq: u64,
    capture_bytes: usize,
    exited: bool,
    /// What this capture holds, charged to the budget of all captures.
    account: Account,
    hold: Option<Hold>,
}

/// Where a stream lives in `Capture::streams`.
fn index(stream: OutputStream) -> usize {
    match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
    }
}

fn stream_at(index: usize) -> OutputStream {
    if index == 0 { OutputStream::Stdout } else { OutputStream::Stderr }
}

/// The oldest next line of the walks, and its stream.
fn head<'a>(walks: &[Option<Walk<'a>>; 2]) -> Option<(LineRef<'a>, usize)> {
    (0..2).filter_map(|s| Some((walks[s].as_ref()?.peek()?, s))).min_by_key(|(line, _)| line.seq)
}

/// The streams a selector reads.
fn selected(selector: OutputSelector) -> &'static [usize] {
    match selector {
        OutputSelector::Stdout => &[0],
        OutputSelector::Stderr => &[1],
        OutputSelector::Merged => &[0, 1],
    }
}

impl Capture {
    /// An empty capture. A stream that is not captured (discarded) counts as
    /// already at end of file. `max_line_bytes` is raised to 4 if lower.
    pub(crate) fn new(capture_bytes: usize, max_line_bytes: usize, stdout: bool, stderr: bool) -> Self {
        let stream =
            |captured: bool| Stream { splitter: Splitter::new(max_line_bytes), tail: Tail::default(), done: !captured };
        Capture {
            streams: [stream(stdout), stream(stderr)],
            next_seq: 0,
            capture_bytes,
            exited: false,
            account: Account::default(),
            hold: None,
        }
    }

    /// Keeps every line for one consumer from now on (see [`Hold`]), with
    /// up to `window` bytes of text waiting for it.
    pub(crate) fn hold(&mut self, window: u64) {
        self.hold = Some(Hold { cursor: self.next_seq, window: window.max(1) });
    }

    /// The consumer has read every line before merged `cursor`.
    pub(crate) fn advance_hold(&mut self, cursor: u64) {
        if let Some(hold) = &mut self.hold {
            hold.cursor = hold.cursor.max(cursor);
        }
    }

    /// The consumer has gone: the caps apply to every line again.
    pub(crate) fn release_hold(&mut self) {
        self.hold = None;
    }

    /// The first line no cap may drop: the consumer's next one.
    fn keep_from(&self) -> u64 {
        self.hold.map_or(u64::MAX, |h| h.cursor)
    }

    /// False while a held capture has as much unread text as its window,
    /// or has any while all captures are over their budget (what a
    /// consumer has not read can't be reclaimed): the pumps wait for the
    /// consumer then, rather than read more.
    pub(crate) fn has_room(&self) -> bool {
        let Some(hold) = self.hold else { return true };
        let unread: u64 = self.streams.iter().map(|s| s.tail.bytes_from(hold.cursor)).sum();
        unread == 0 || (unread < hold.window && !self.account.over())
    }

    /// The capture, charged to `budget` from now on.
    pub(crate) fn with_budget(mut self, budget: Arc<CaptureBudget>) -> Self {
        self.account = Account::new(budget);
        self.settle();
        self
    }

    /// Charges what the capture holds now: every kept line and block, and
    /// the partial lines waiting for their end.
    fn settle(&mut self) {
        let held = self.streams.iter().map(|s| s.tail.bytes() + s.splitter.held()).sum();
        self.account.set(held);
    }

    /// True when the budget of all captures is over its limit.
    pub(crate) fn over_budget(&self) -> bool {
        self.account.over()
    }

    /// Bytes kept per stream (stdout, stderr).
    pub(crate) fn stream_bytes(&self) -> [usize; 2] {
        [self.streams[0].tail.bytes(), self.streams[1].tail.bytes()]
    }

    /// Drops the oldest lines of stream `s` (0 stdout, 1 stderr) until it
    /// keeps at most `bytes`; they are counted as dropped.
    pub(crate) fn trim_stream(&mut self, s: usize, bytes: usize) {
        let keep_from = self.keep_from();
        self.streams[s].tail.trim_to(bytes, keep_from);
        self.settle();
    }

    /// Drops every kept line of both streams, counted as dropped.
    pub(crate) fn drop_all(&mut self) {
        let keep_from = self.keep_from();
        for stream in &mut self.streams {
            stream.tail.trim_to(0, keep_from);
        }
        self.settle();
    }

    /// Adds bytes read from `stream` at `timestamp`; returns how many lines
    /// they completed. Bytes after the last `\n` wait for more (or for
    /// [`Capture::finish`]).
    pub(crate) fn push(&mut self, stream: OutputStream, data: &[u8], timestamp: u64) -> usize {
        let s = index(stream);
        let mut lines = Lines::with_capacity(data.len() + 16);
        self.streams[s].splitter.push(data, &mut lines);
        let count = self.keep(s, lines, timestamp);
        self.settle();
        count
    }

    /// Keeps the lines of one read, then drops the oldest lines of the same
    /// stream until it is back under the cap.
    fn keep(&mut self, s: usize, lines: Lines, timestamp: u64) -> usize {
        let (seq, count, keep_from) = (self.next_seq, lines.count, self.keep_from());
        self.next_seq += count;
        let tail = &mut self.streams[s].tail;
        tail.append(lines, seq, timestamp);
        tail.trim_to(self.capture_bytes, keep_from);
        count as usize
    }

    /// End of file on `stream`: emits its partial last line, if any, and
    /// marks it done.
    pub(crate) fn finish(&mut self, stream: OutputStream, timestamp: u64) {
        let s = index(stream);
        let mut lines = Lines::default();
        self.streams[s].splitter.finish(&mut lines);
        self.keep(s, lines, timestamp);
        self.streams[s].done = true;
        self.settle();
    }

    /// The process has been reaped: once every stream is done and read,
    /// the output is complete.
    pub(crate) fn set_exited(&mut self) {
        self.exited = true;
    }

    /// True when every captured stream has reached end of file.
    pub(crate) fn streams_done(&self) -> bool {
        self.streams.iter().all(|s| s.done)
    }

    /// Bytes (text plus costs) retained for `stream`; never above the cap.
    // The fuzz check reads it, in a build without `cfg(test)`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn retained_bytes(&self, stream: OutputStream) -> usize {
        self.streams[index(stream)].tail.bytes()
    }

    /// Lines of `stream` dropped so far to stay under the cap.
    #[cfg(test)]
    pub(crate) fn dropped(&self, stream: OutputStream) -> u64 {
        self.streams[index(stream)].tail.dropped()
    }

    /// Bytes of a partial line `stream` holds.
    #[cfg(test)]
    pub(crate) fn pending(&self, stream: OutputStream) -> usize {
        self.streams[index(stream)].splitter.pending()
    }

    /// At most `max_lines` lines of the selection at or after `cursor`,
    /// oldest first (merged by sequence number).
    ///
    /// The cursor counts lines of the selection: a stream's own index for
    /// one stream, the shared sequence number for `merged`. `next_cursor` is
    /// one past the last line returned while retained lines remain after
    /// it. When none remains, it moves on to the next number that will be
    /// given out (never backwards): every number in between belongs to a
    /// dropped line, so the reader sees the gap (a merged read can find the
    /// newest line of one stream dropped while older lines of the other are
    /// retained) and keeps a fresh cursor. `complete` says that no line will
    /// ever follow.
    pub(crate) fn read(&self, selector: OutputSelector, cursor: u64, max_lines: usize) -> OutputChunk {
        let sel = selected(selector);
        let merged = sel.len() > 1;
        let key = |l: &LineRef<'_>| if merged { l.seq } else { l.index };
        let mut walks: [Option<Walk<'_>>; 2] = [None, None];
        for &s in sel {
            walks[s] = Some(self.streams[s].tail.lines_from(cursor, merged));
        }
        let mut lines = Vec::new();
        let mut last_key = None;
        while lines.len() < max_lines {
            let Some((line, s)) = head(&walks) else { break };
            lines.push(OutputLine {
                stream: stream_at(s),
                line: String::from_utf8_lossy(line.text).into_owned(),
                timestamp: line.timestamp,
            });
            last_key = Some(key(&line));
            if let Some(walk) = walks[s].as_mut() {
                walk.next();
            }
        }
        let more = head(&walks).is_some();
        let next_key = if merged { self.next_seq } else { self.streams[sel[0]].tail.emitted() };
        let next_cursor = match last_key {
            Some(key) if more => key + 1,
            Some(key) => next_key.max(key + 1),
            None if more => cursor,
            None => cursor.max(next_key),
        };
        OutputChunk {
            lines,
            next_cursor,
            dropped: sel.iter().map(|&s| self.streams[s].tail.dropped()).sum(),
            complete: self.exited && self.streams_done() && !more,
        }
    }
}

#[cfg(test)]
mod tests;
