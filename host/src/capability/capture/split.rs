//! Turning the bytes of one pipe into lines.
//!
//! Bytes are split at `\n` (only the `\n` is stripped); invalid UTF-8 is
//! replaced with U+FFFD. A line longer than the line limit is emitted in
//! pieces, so a child writing megabytes without a newline can't grow
//! memory; pieces are cut at a character boundary when possible. A partial
//! last line waits for more bytes, or for the end of file.
//!
//! The lines of one read go into a [`Lines`] block: their text, each line
//! followed by `\n`, in one buffer. That is the form in which they are
//! kept, so no line costs an allocation or an index entry of its own.

use memchr::memchr;

/// The smallest line limit honoured: a piece must be able to hold a whole
/// UTF-8 character (4 bytes), or cutting at a character boundary could make
/// no progress.
const MIN_LINE_BYTES: usize = 4;

/// The lines completed by one read: UTF-8 text, each line ended by `\n`.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    pub(crate) text: Vec<u8>,
    pub(crate) count: u64,
    /// The room to allocate at the first line.
    hint: usize,
}

impl Lines {
    /// Lines that will take about `bytes` bytes (allocated only once a
    /// line comes: most reads of a slow writer complete none).
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Lines { text: Vec::new(), count: 0, hint: bytes }
    }

    fn emit(&mut self, bytes: &[u8]) {
        if self.text.capacity() == 0 {
            self.text.reserve(self.hint.max(bytes.len() + 1));
        }
        match String::from_utf8_lossy(bytes) {
            std::borrow::Cow::Borrowed(valid) => self.text.extend_from_slice(valid.as_bytes()),
            std::borrow::Cow::Owned(fixed) => self.text.extend_from_slice(fixed.as_bytes()),
        }
        self.text.push(b'\n');
        self.count += 1;
    }
}

/// The line splitter of one stream: what it holds between two reads.
#[derive(Debug)]
pub(crate) struct Splitter {
    /// The bytes of a line whose `\n` has not arrived yet; at most
    /// `max_line_bytes` long.
    partial: Vec<u8>,
    max_line_bytes: usize,
}

impl Splitter {
    /// `max_line_bytes` is raised to 4 if lower.
    pub(crate) fn new(max_line_bytes: usize) -> Self {
        Splitter { partial: Vec::new(), max_line_bytes: max_line_bytes.max(MIN_LINE_BYTES) }
    }

    /// Bytes waiting for their `\n`.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.partial.len()
    }

    /// The memory the partial line holds.
    pub(crate) fn held(&self) -> usize {
        self.partial.capacity()
    }

    /// Splits `data` into `out`; bytes after the last `\n` wait for more.
    pub(crate) fn push(&mut self, data: &[u8], out: &mut Lines) {
        let mut rest = data;
        while let Some(nl) = memchr(b'\n', rest) {
            let (line, after) = (&rest[..nl], &rest[nl + 1..]);
            if self.partial.is_empty() && line.len() <= self.max_line_bytes {
                // The common case: a whole line in one read, copied once.
                out.emit(line);
            } else {
                self.append_partial(line, out);
                out.emit(&self.partial);
                self.partial.clear();
            }
            rest = after;
        }
        self.append_partial(rest, out);
        if self.partial.is_empty() && self.partial.capacity() > self.max_line_bytes.min(1024) {
            // A long line held this much once; don't keep it for good.
            self.partial = Vec::new();
        }
    }

    /// End of file: the partial last line, if any, becomes a line.
    pub(crate) fn finish(&mut self, out: &mut Lines) {
        if !self.partial.is_empty() {
            out.emit(&self.partial);
        }
        self.partial = Vec::new();
    }

    /// Appends bytes that contain no `\n` to the partial line, emitting a
    /// piece each time the partial line is full and more bytes follow (a
    /// full partial line is kept while nothing follows, so a line of exactly
    /// `max_line_bytes` plus its `\n` is one line, not two).
    fn append_partial(&mut self, mut bytes: &[u8], out: &mut Lines) {
        let max = self.max_line_bytes;
        while !bytes.is_empty() {
            if self.partial.len() >= max {
                let cut = char_boundary_cut(&self.partial);
                out.emit(&self.partial[..cut]);
                self.partial.drain(..cut);
            }
            let take = (max - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
    }
}

/// The length of the longest prefix of `bytes` that does not end inside a
/// UTF-8 sequence, as long as that prefix is not empty: a piece cut there
/// decodes cleanly and the next piece starts with a whole character. Invalid
/// bytes are left where they are (the lossy decode deals with them).
pub(crate) fn char_boundary_cut(bytes: &[u8]) -> usize {
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
