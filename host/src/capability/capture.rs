//! Bounded, line-oriented capture of a child's stdout and stderr.
//!
//! [`Capture`] is a pure data structure: the pump tasks feed it the bytes
//! they read, readers ask it for the lines after a cursor. It knows nothing
//! of processes, pipes or time (timestamps are passed in), so every rule is
//! unit-tested in isolation (`capture/tests.rs`).
//!
//! The rules:
//!
//! - Bytes are split into lines at `\n` (only the `\n` is stripped); invalid
//!   UTF-8 is replaced with U+FFFD. A line longer than `max_line_bytes` is
//!   emitted in pieces, so a child writing megabytes without a newline can't
//!   grow memory; pieces are cut at a character boundary when possible. A
//!   partial last line is emitted at end of file.
//! - Every line gets a sequence number from one counter shared by both
//!   streams, which makes the merged order the arrival order, and an index
//!   among its own stream's lines. A cursor counts lines of its selection
//!   (the WIT contract says so): the index for one stream, the sequence
//!   number for both. So a reader can tell how many lines it missed to the
//!   cap from the gap between its cursor and the next one.
//! - Each stream keeps at most `capture_bytes`, counting each line's text
//!   plus [`LINE_OVERHEAD_BYTES`]; past it the oldest lines *of that stream*
//!   are dropped and counted, so output is never lost silently and a noisy
//!   stderr can't evict stdout.

use std::collections::VecDeque;

use crate::types::{OutputChunk, OutputLine, OutputSelector, OutputStream};

/// Bytes charged against the capture cap for every retained line, on top of
/// its text.
///
/// It approximates what a line really costs (its slot in the deque, the
/// sequence number and timestamp, and the allocator's overhead for the text),
/// so that a child printing millions of tiny lines (`yes`) is bounded by the
/// cap just like one printing long lines.
pub const LINE_OVERHEAD_BYTES: usize = 64;

/// The smallest line limit honoured: a piece must be able to hold a whole
/// UTF-8 character (4 bytes), or cutting at a character boundary could make
/// no progress.
const MIN_LINE_BYTES: usize = 4;

/// One retained line. `Box<str>` rather than `String`: the capacity word is
/// dead weight for text that never grows.
#[derive(Debug)]
struct Line {
    seq: u64,
    /// The line's position among its own stream's lines.
    index: u64,
    timestamp: u64,
    text: Box<str>,
}

/// The retained lines and bookkeeping of one stream.
#[derive(Debug, Default)]
struct StreamBuf {
    /// Sorted by `seq` (lines are only ever appended with a fresh number).
    lines: VecDeque<Line>,
    /// Text bytes plus overhead of `lines`; never above the cap.
    bytes: usize,
    /// Lines dropped (oldest first) to stay under the cap.
    dropped: u64,
    /// Lines ever emitted on this stream: the index the next one gets.
    emitted: u64,
    /// The bytes of a line whose `\n` has not arrived yet; at most
    /// `max_line_bytes` long.
    partial: Vec<u8>,
    /// No line will ever be added: end of file was read, or the stream is
    /// not captured at all.
    done: bool,
}

/// The captured output of one process: both streams, one cursor space.
#[derive(Debug)]
pub(crate) struct Capture {
    streams: [StreamBuf; 2],
    next_seq: u64,
    capture_bytes: usize,
    max_line_bytes: usize,
    exited: bool,
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

/// The length of the longest prefix of `bytes` that does not end inside a
/// UTF-8 sequence, as long as that prefix is not empty: a piece cut there
/// decodes cleanly and the next piece starts with a whole character. Invalid
/// bytes are left where they are (the lossy decode deals with them).
fn char_boundary_cut(bytes: &[u8]) -> usize {
    let len = bytes.len();
    // A sequence is at most 4 bytes: only the last 3 can start an
    // incomplete one.
    for back in 1..=3.min(len) {
        let i = len - back;
        let b = bytes[i];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: keep looking for the lead
        }
        let width = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1, // ASCII or an invalid lead: nothing to keep together
        };
        return if back < width && i > 0 { i } else { len };
    }
    len
}

impl Capture {
    /// An empty capture. A stream that is not captured (discarded) counts as
    /// already at end of file. `max_line_bytes` is raised to 4 if lower.
    pub(crate) fn new(capture_bytes: usize, max_line_bytes: usize, stdout: bool, stderr: bool) -> Self {
        let mut streams: [StreamBuf; 2] = Default::default();
        streams[0].done = !stdout;
        streams[1].done = !stderr;
        Capture {
            streams,
            next_seq: 0,
            capture_bytes,
            max_line_bytes: max_line_bytes.max(MIN_LINE_BYTES),
            exited: false,
        }
    }

    /// Adds bytes read from `stream` at `timestamp`; returns how many lines
    /// they completed. Bytes after the last `\n` wait for more (or for
    /// [`Capture::finish`]).
    pub(crate) fn push(&mut self, stream: OutputStream, data: &[u8], timestamp: u64) -> usize {
        let s = index(stream);
        let before = self.next_seq;
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = (&rest[..nl], &rest[nl + 1..]);
            if self.streams[s].partial.is_empty() && line.len() <= self.max_line_bytes {
                // The common case: a whole line in one read, copied once.
                self.emit(s, line, timestamp);
            } else {
                self.append_partial(s, line, timestamp);
                let partial = std::mem::take(&mut self.streams[s].partial);
                self.emit(s, &partial, timestamp);
                self.streams[s].partial = partial;
                self.streams[s].partial.clear();
            }
            rest = after;
        }
        self.append_partial(s, rest, timestamp);
        (self.next_seq - before) as usize
    }

    /// Appends bytes that contain no `\n` to the stream's partial line,
    /// emitting a piece each time the partial line is full and more bytes
    /// follow (a full partial line is kept while nothing follows, so a line
    /// of exactly `max_line_bytes` plus its `\n` is one line, not two).
    fn append_partial(&mut self, s: usize, mut bytes: &[u8], timestamp: u64) {
        let max = self.max_line_bytes;
        while !bytes.is_empty() {
            if self.streams[s].partial.len() >= max {
                let partial = std::mem::take(&mut self.streams[s].partial);
                let cut = char_boundary_cut(&partial);
                self.emit(s, &partial[..cut], timestamp);
                let mut partial = partial;
                partial.drain(..cut);
                self.streams[s].partial = partial;
            }
            let partial = &mut self.streams[s].partial;
            let take = (max - partial.len()).min(bytes.len());
            partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
    }

    /// Retains one line, then drops the oldest lines of the same stream
    /// until the stream is back under the cap.
    fn emit(&mut self, s: usize, bytes: &[u8], timestamp: u64) {
        let text: Box<str> = String::from_utf8_lossy(bytes).into();
        let seq = self.next_seq;
        self.next_seq += 1;
        let buf = &mut self.streams[s];
        let index = buf.emitted;
        buf.emitted += 1;
        buf.bytes += text.len() + LINE_OVERHEAD_BYTES;
        buf.lines.push_back(Line { seq, index, timestamp, text });
        while buf.bytes > self.capture_bytes {
            let Some(old) = buf.lines.pop_front() else {
                break;
            };
            buf.bytes -= old.text.len() + LINE_OVERHEAD_BYTES;
            buf.dropped += 1;
        }
    }

    /// End of file on `stream`: emits its partial last line, if any, and
    /// marks it done.
    pub(crate) fn finish(&mut self, stream: OutputStream, timestamp: u64) {
        let s = index(stream);
        let partial = std::mem::take(&mut self.streams[s].partial);
        if !partial.is_empty() {
            self.emit(s, &partial, timestamp);
        }
        self.streams[s].done = true;
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

    /// Bytes (text plus overhead) retained for `stream`; never above the cap.
    #[cfg(test)]
    pub(crate) fn retained_bytes(&self, stream: OutputStream) -> usize {
        self.streams[index(stream)].bytes
    }

    /// Lines of `stream` dropped so far to stay under the cap.
    #[cfg(test)]
    pub(crate) fn dropped(&self, stream: OutputStream) -> u64 {
        self.streams[index(stream)].dropped
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
        // The cursor space of this selection.
        let key = |l: &Line| if merged { l.seq } else { l.index };
        // Where each selected stream's lines at or after the cursor begin.
        let mut at = [usize::MAX; 2];
        for &s in sel {
            at[s] = self.streams[s].lines.partition_point(|l| key(l) < cursor);
        }
        let head = |at: &[usize; 2], s: usize| self.streams[s].lines.get(at[s]).map(|l| (l.seq, key(l)));
        let mut lines = Vec::new();
        let mut last_key = None;
        while lines.len() < max_lines {
            let next = sel.iter().copied().filter_map(|s| head(&at, s).map(|(seq, key)| (seq, key, s))).min();
            let Some((_, key, s)) = next else { break };
            let line = &self.streams[s].lines[at[s]];
            lines.push(OutputLine { stream: stream_at(s), line: line.text.to_string(), timestamp: line.timestamp });
            at[s] += 1;
            last_key = Some(key);
        }
        let more = sel.iter().any(|&s| head(&at, s).is_some());
        let next_key = if merged { self.next_seq } else { self.streams[sel[0]].emitted };
        let next_cursor = match last_key {
            Some(key) if more => key + 1,
            Some(key) => next_key.max(key + 1),
            None if more => cursor,
            None => cursor.max(next_key),
        };
        OutputChunk {
            lines,
            next_cursor,
            dropped: sel.iter().map(|&s| self.streams[s].dropped).sum(),
            complete: self.exited && self.streams_done() && !more,
        }
    }
}

#[cfg(test)]
mod tests;
