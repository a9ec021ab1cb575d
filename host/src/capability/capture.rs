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
//! - Each stream keeps at most `capture_bytes` in memory, counting each
//!   line's text plus [`LINE_COST_BYTES`], and [`BLOCK_COST_BYTES`] for each
//!   block of up to 256 lines read together (`tail`: that is what they
//!   really take), past it only its newest lines; and, with a spill file,
//!   all of them on disk up to the file's cap (`spill`, `stream`). A line
//!   neither keeps is dropped and counted, oldest first and per stream, so
//!   output is never lost silently and a noisy stderr can't evict stdout.
//! - A capture may have one consumer that must not miss a line (a `run`
//!   stream's caller): a [`Hold`] at the merged cursor up to which it has
//!   read. No line at or after it is dropped, by any cap, and the pumps
//!   read no more while a window of unread output is waiting
//!   ([`Capture::has_room`]), so the child blocks on its pipe until the
//!   consumer catches up.

use std::io;
use std::sync::Arc;

use crate::types::{OutputChunk, OutputLine, OutputSelector, OutputStream};

#[path = "capture/budget.rs"]
pub(crate) mod budget;
#[path = "capture/spill.rs"]
pub(crate) mod spill;
#[path = "capture/split.rs"]
mod split;
#[path = "capture/stream.rs"]
mod stream;
#[path = "capture/tail.rs"]
mod tail;

use budget::{Account, CaptureBudget};
use spill::{KeptLine, SpillConfig};
use split::Lines;
use stream::Stream;
pub use tail::{BLOCK_COST_BYTES, LINE_COST_BYTES};

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
    /// What this capture holds in memory, charged to the budget of all
    /// captures.
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

/// The streams a selector reads.
fn selected(selector: OutputSelector) -> &'static [usize] {
    match selector {
        OutputSelector::Stdout => &[0],
        OutputSelector::Stderr => &[1],
        OutputSelector::Merged => &[0, 1],
    }
}

impl Capture {
    /// An empty capture, in memory only. A stream that is not captured
    /// (discarded) counts as already at end of file. `max_line_bytes` is
    /// raised to 4 if lower.
    // The tests and the fuzz check's; the host always passes its spill.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn new(capture_bytes: usize, max_line_bytes: usize, stdout: bool, stderr: bool) -> Self {
        Capture::with_spill(capture_bytes, max_line_bytes, stdout, stderr, None)
    }

    /// An empty capture whose streams also spill to disk as `spill` says.
    pub(crate) fn with_spill(
        capture_bytes: usize,
        max_line_bytes: usize,
        stdout: bool,
        stderr: bool,
        spill: Option<SpillConfig>,
    ) -> Self {
        Capture {
            streams: [Stream::new(max_line_bytes, stdout, spill.clone()), Stream::new(max_line_bytes, stderr, spill)],
            next_seq: 0,
            capture_bytes,
            exited: false,
            account: Account::default(),
            hold: None,
        }
    }

    /// The capture, charged to `budget` from now on.
    pub(crate) fn with_budget(mut self, budget: Arc<CaptureBudget>) -> Self {
        self.account = Account::new(budget);
        self.settle();
        self
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

    /// Charges what the capture holds in memory now: every kept line and
    /// block, the partial lines waiting for their end, the spill files'
    /// indexes.
    fn settle(&mut self) {
        let held = self.streams.iter().map(Stream::memory).sum();
        self.account.set(held);
    }

    /// True when the memory budget of all captures, or the disk budget of
    /// all spill files, is over its limit.
    pub(crate) fn over_budget(&self) -> bool {
        self.account.over() || self.streams.iter().any(Stream::disk_over)
    }

    /// A spill file's failure, once (the stream goes on in memory only).
    pub(crate) fn take_spill_error(&mut self) -> Option<io::Error> {
        let [out, err] = &mut self.streams;
        out.take_error().or_else(|| err.take_error())
    }

    /// Bytes kept in memory per stream (stdout, stderr).
    pub(crate) fn stream_bytes(&self) -> [usize; 2] {
        [self.streams[0].tail.bytes(), self.streams[1].tail.bytes()]
    }

    /// Bytes in the spill file per stream (stdout, stderr).
    pub(crate) fn disk_bytes(&self) -> [u64; 2] {
        [self.streams[0].disk(), self.streams[1].disk()]
    }

    /// Lets go of the oldest lines of stream `s` (0 stdout, 1 stderr) in
    /// memory until it keeps at most `bytes` there; those its spill file
    /// does not have are dropped.
    pub(crate) fn trim_stream(&mut self, s: usize, bytes: usize) {
        let keep_from = self.keep_from();
        self.streams[s].tail.trim_to(bytes, keep_from);
        self.settle();
    }

    /// Lets go of every line in memory (but those a consumer has not read).
    pub(crate) fn drop_all(&mut self) {
        let keep_from = self.keep_from();
        for stream in &mut self.streams {
            stream.tail.trim_to(0, keep_from);
        }
        self.settle();
    }

    /// Drops the oldest records of stream `s`'s spill file until it holds
    /// at most `bytes`.
    pub(crate) fn trim_disk(&mut self, s: usize, bytes: u64) {
        self.streams[s].trim_disk(bytes);
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

    /// Keeps the lines of one read (memory, then its cap; and disk).
    fn keep(&mut self, s: usize, lines: Lines, timestamp: u64) -> usize {
        let (seq, count, keep_from) = (self.next_seq, lines.count, self.keep_from());
        self.next_seq += count;
        self.streams[s].keep(lines, seq, timestamp, self.capture_bytes, keep_from);
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

    /// Bytes (text plus costs) retained in memory for `stream`; never above
    /// the cap.
    // The fuzz check reads it, in a build without `cfg(test)`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn retained_bytes(&self, stream: OutputStream) -> usize {
        self.streams[index(stream)].tail.bytes()
    }

    /// Lines of `stream` dropped so far.
    #[cfg(test)]
    pub(crate) fn dropped(&self, stream: OutputStream) -> u64 {
        self.streams[index(stream)].dropped()
    }

    /// The length of `stream`'s spill file, if it has one.
    #[cfg(test)]
    pub(crate) fn spill_len(&self, stream: OutputStream) -> Option<u64> {
        self.streams[index(stream)].spill_len()
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
    // The tests' and the fuzz check's; the host always bounds its reads.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn read(&self, selector: OutputSelector, cursor: u64, max_lines: usize) -> OutputChunk {
        self.read_bounded(selector, cursor, max_lines, usize::MAX)
    }

    /// [`Capture::read`], with no more lines after their text reaches
    /// `max_bytes` (at least one, when there is one).
    pub(crate) fn read_bounded(
        &self,
        selector: OutputSelector,
        cursor: u64,
        max_lines: usize,
        max_bytes: usize,
    ) -> OutputChunk {
        let sel = selected(selector);
        let merged = sel.len() > 1;
        let key = |l: &KeptLine| if merged { l.seq } else { l.index };
        // One more than asked for from each stream: whether any remains.
        let limit = max_lines.saturating_add(1);
        let mut found: [std::vec::IntoIter<KeptLine>; 2] = Default::default();
        for &s in sel {
            found[s] = self.streams[s].lines(cursor, merged, limit, max_bytes).into_iter();
        }
        let [mut out, mut err] = found.map(Iterator::peekable);
        let (mut lines, mut bytes) = (Vec::new(), 0);
        let mut last_key = None;
        let more = loop {
            let s = match (out.peek(), err.peek()) {
                (Some(o), Some(e)) => usize::from(e.seq < o.seq),
                (Some(_), None) => 0,
                (None, Some(_)) => 1,
                (None, None) => break false,
            };
            if lines.len() == max_lines || bytes >= max_bytes {
                break true;
            }
            let line = if s == 0 { out.next() } else { err.next() }.expect("peeked");
            last_key = Some(key(&line));
            bytes += line.text.len();
            lines.push(OutputLine { stream: stream_at(s), line: line.text, timestamp: line.timestamp });
        };
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
            dropped: sel.iter().map(|&s| self.streams[s].dropped()).sum(),
            more,
            complete: self.exited && self.streams_done() && !more,
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "capture/hold_tests.rs"]
mod hold_tests;

#[cfg(test)]
#[path = "capture/spill_tests.rs"]
mod spill_tests;
