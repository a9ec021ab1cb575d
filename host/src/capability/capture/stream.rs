//! One captured stream: its line splitter, the lines kept in memory (the
//! newest), and its spill file on disk (all of them, up to its cap).
//!
//! Memory and disk are filled together: every block of lines goes to both.
//! Memory is then trimmed to its cap (and by the memory budget) without
//! losing anything that the disk still has; a line is dropped, and counted,
//! only once neither has it. So the lines a reader can get are a suffix of
//! the stream: from the oldest on disk (or in memory, without a spill file)
//! to the newest.

use std::io;

use super::spill::{KeptLine, Spill, SpillConfig};
use super::split::{Lines, Splitter};
use super::tail::Tail;

/// One stream of a capture.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) splitter: Splitter,
    pub(crate) tail: Tail,
    /// No line will ever be added: end of file was read, or the stream is
    /// not captured at all.
    pub(crate) done: bool,
    spill: Option<Spill>,
    /// Where the spill file goes until it is opened (at the first line), or
    /// `None` if it won't be (no spilling, or it failed).
    config: Option<SpillConfig>,
    /// The last spill failure, for the owner to report.
    error: Option<io::Error>,
}

impl Stream {
    pub(crate) fn new(max_line_bytes: usize, captured: bool, config: Option<SpillConfig>) -> Self {
        Stream {
            splitter: Splitter::new(max_line_bytes),
            tail: Tail::default(),
            done: !captured,
            spill: None,
            config: config.filter(|_| captured),
            error: None,
        }
    }

    /// Keeps the lines of one read, numbered from `seq`: in memory, and in
    /// the spill file; then trims memory to `cap` (never a line numbered
    /// `keep_from` or later).
    pub(crate) fn keep(&mut self, lines: Lines, seq: u64, timestamp: u64, cap: usize, keep_from: u64) {
        if lines.count == 0 {
            return;
        }
        let first = self.tail.emitted();
        self.tail.append(lines, seq, timestamp);
        if self.spill.is_none()
            && let Some(config) = self.config.take()
        {
            match Spill::open(&config, first) {
                Ok(spill) => {
                    self.spill = Some(spill);
                    self.config = Some(config);
                }
                Err(e) => self.error = Some(e),
            }
        }
        if let Some(spill) = &mut self.spill {
            let written =
                self.tail.blocks_from(first).try_for_each(|b| spill.append(b.first, b.seq, timestamp, b.text, b.count));
            if let Err(e) = written {
                self.fail(e);
            }
        }
        self.tail.trim_to(cap, keep_from);
    }

    /// Gives up the spill file after an error: what only it had is dropped.
    fn fail(&mut self, e: io::Error) {
        self.error = Some(e);
        self.spill = None;
        self.config = None;
    }

    /// The last spill failure, once.
    pub(crate) fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }

    /// Lines dropped, neither on disk nor in memory: the index of the
    /// oldest line a reader can still get.
    pub(crate) fn dropped(&self) -> u64 {
        match &self.spill {
            Some(spill) => spill.first().min(self.tail.first()),
            None => self.tail.first(),
        }
    }

    /// What the stream holds in memory: its lines, its partial line, its
    /// spill file's index.
    pub(crate) fn memory(&self) -> usize {
        self.tail.bytes() + self.splitter.held() + self.spill.as_ref().map_or(0, Spill::memory)
    }

    /// The length of the spill file.
    #[cfg(test)]
    pub(crate) fn spill_len(&self) -> Option<u64> {
        self.spill.as_ref().map(Spill::file_len)
    }

    /// True when the disk budget of all spill files is over its limit.
    pub(crate) fn disk_over(&self) -> bool {
        self.config.as_ref().is_some_and(|c| c.budget.used() > c.budget.limit())
    }

    /// Bytes in the spill file.
    pub(crate) fn disk(&self) -> u64 {
        self.spill.as_ref().map_or(0, Spill::bytes)
    }

    /// Drops the oldest records of the spill file until it holds at most
    /// `bytes` (what memory still has stays readable).
    pub(crate) fn trim_disk(&mut self, bytes: u64) {
        if let Some(spill) = &mut self.spill {
            let excess = spill.bytes().saturating_sub(bytes);
            if excess > 0
                && let Err(e) = spill.drop_oldest(excess)
            {
                self.fail(e);
            }
        }
    }

    /// Up to `limit` lines from the first whose index (with `by_seq`, whose
    /// sequence number) is at least `cursor`, and one more at most once
    /// their text reaches `max_bytes` (so that a reader sees more remain):
    /// from disk while memory no longer has them, then from memory.
    pub(crate) fn lines(&self, cursor: u64, by_seq: bool, limit: usize, max_bytes: usize) -> Vec<KeptLine> {
        let (mut out, mut full) = (Vec::new(), false);
        let in_memory = self.tail.lines_from(cursor, by_seq);
        let memory_first = self.tail.first();
        if let Some(spill) = &self.spill {
            let before_memory = match in_memory.peek() {
                Some(line) => (if by_seq { line.seq } else { line.index }) > cursor && memory_first > spill.first(),
                None => memory_first > spill.first(),
            };
            // A read error ends the disk part early: the reader then sees
            // the lines it could not get as missed.
            if before_memory {
                match spill.read(cursor, by_seq, memory_first, limit, max_bytes, &mut out) {
                    Ok(taken) => full = taken,
                    Err(_) => out.clear(),
                }
            }
        }
        let mut bytes: usize = out.iter().map(|l| l.text.len()).sum();
        for line in in_memory.take(limit - out.len()) {
            if full {
                break;
            }
            full = bytes >= max_bytes;
            bytes += line.text.len();
            let text = String::from_utf8_lossy(line.text).into_owned();
            out.push(KeptLine { seq: line.seq, index: line.index, timestamp: line.timestamp, text });
        }
        out
    }
}
