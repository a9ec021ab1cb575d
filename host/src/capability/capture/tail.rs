//! The lines of one stream kept in memory, and what they cost.
//!
//! Lines arrive in blocks, one per read of the pipe ([`Lines`]; a read of
//! many lines makes several, of up to [`MAX_BLOCK_LINES`]). A block is kept
//! as one exactly sized allocation of its text (each line ended by `\n`)
//! plus one small record: the stream index and sequence number of its first
//! line (the lines of one read get consecutive numbers) and the time it was
//! read. So a line costs its text and one byte, and a block
//! [`BLOCK_COST_BYTES`] more, whatever the lines' length: that is what is
//! charged against the caps, and (within the allocator's rounding) what
//! the memory really holds.

use std::collections::VecDeque;

use memchr::{memchr, memchr_iter};

use super::split::Lines;

/// Bytes charged for each line kept, on top of its text: its `\n`.
pub const LINE_COST_BYTES: usize = 1;

/// Bytes charged for each block of lines read together, on top of their
/// text: its record (40 bytes: two line numbers, a timestamp and the text's
/// pointer and length) and the allocator's header and rounding of its text.
pub const BLOCK_COST_BYTES: usize = 64;

/// The most lines in one block: a read of more makes several, so that
/// finding a line in a block (a scan for its `\n`) stays short. For the
/// shortest lines this adds a quarter byte per line to the cost.
pub(crate) const MAX_BLOCK_LINES: u64 = 256;

/// One block: the lines of one read that are still kept (at most
/// [`MAX_BLOCK_LINES`]).
#[derive(Debug)]
struct Block {
    /// The stream index of its first line.
    first: u64,
    /// The sequence number (shared by both streams) of its first line.
    seq: u64,
    /// Where its text begins among all the text the stream ever kept.
    start: u64,
    timestamp: u64,
    /// The lines, each ended by `\n`.
    text: Box<[u8]>,
}

impl Block {
    fn cost(&self) -> usize {
        self.text.len() + BLOCK_COST_BYTES
    }
}

/// One block as [`Tail::blocks_from`] shows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockRef<'a> {
    pub(crate) first: u64,
    pub(crate) seq: u64,
    pub(crate) text: &'a [u8],
    pub(crate) count: u64,
}

/// One line as a read finds it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineRef<'a> {
    pub(crate) seq: u64,
    pub(crate) index: u64,
    pub(crate) timestamp: u64,
    /// The text, without its `\n`.
    pub(crate) text: &'a [u8],
}

/// The kept lines of one stream, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    /// Sorted by `first` and by `seq` (blocks are only ever appended with
    /// fresh numbers).
    blocks: VecDeque<Block>,
    /// What the kept blocks cost (text, plus [`BLOCK_COST_BYTES`] each).
    bytes: usize,
    /// Lines ever added: the stream index the next one gets.
    emitted: u64,
    /// Lines let go, oldest first, to stay within a limit: the index of
    /// the oldest kept one.
    evicted: u64,
    /// Bytes of text (with line ends) ever added.
    appended: u64,
}

impl Tail {
    /// Keeps the lines of one read; `seq` is the sequence number of the
    /// first. Returns the bytes this adds to the charge.
    pub(crate) fn append(&mut self, lines: Lines, seq: u64, timestamp: u64) -> usize {
        if lines.count <= MAX_BLOCK_LINES {
            // Shrinks in place: the block holds exactly its text.
            return self.push_block(lines.text.into_boxed_slice(), lines.count, seq, timestamp);
        }
        let mut cost = 0;
        let (mut start, mut count, mut seq) = (0, 0, seq);
        for nl in memchr_iter(b'\n', &lines.text) {
            count += 1;
            if count == MAX_BLOCK_LINES || nl + 1 == lines.text.len() {
                cost += self.push_block(lines.text[start..=nl].into(), count, seq, timestamp);
                (start, seq, count) = (nl + 1, seq + count, 0);
            }
        }
        cost
    }

    fn push_block(&mut self, text: Box<[u8]>, count: u64, seq: u64, timestamp: u64) -> usize {
        if count == 0 {
            return 0;
        }
        let start = self.appended;
        self.appended += text.len() as u64;
        let block = Block { first: self.emitted, seq, start, timestamp, text };
        let cost = block.cost();
        self.bytes += cost;
        self.emitted += count;
        self.blocks.push_back(block);
        cost
    }

    /// What the kept lines cost.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Lines ever added.
    pub(crate) fn emitted(&self) -> u64 {
        self.emitted
    }

    /// The index of the oldest line kept (the next one's when none is).
    pub(crate) fn first(&self) -> u64 {
        self.evicted
    }

    /// The blocks whose first line has index `first` or more.
    pub(crate) fn blocks_from(&self, first: u64) -> impl Iterator<Item = BlockRef<'_>> {
        let at = self.blocks.partition_point(|b| b.first < first);
        (at..self.blocks.len()).map(move |i| {
            let block = &self.blocks[i];
            let next = self.blocks.get(i + 1).map_or(self.emitted, |next| next.first);
            BlockRef { first: block.first, seq: block.seq, text: &block.text, count: next - block.first }
        })
    }

    /// Drops the oldest lines until the charge is at most `limit`, never a
    /// line numbered `keep_from` or later; returns the bytes freed.
    pub(crate) fn trim_to(&mut self, limit: usize, keep_from: u64) -> usize {
        let excess = self.bytes.saturating_sub(limit);
        if excess == 0 { 0 } else { self.drop_oldest(excess, keep_from) }
    }

    /// Drops the fewest oldest lines that free at least `want` bytes (all
    /// those before sequence number `keep_from` if that is not enough);
    /// returns the bytes freed.
    fn drop_oldest(&mut self, want: usize, keep_from: u64) -> usize {
        let mut freed = 0;
        while freed < want {
            let next_first = self.blocks.get(1).map_or(self.emitted, |next| next.first);
            let Some(front) = self.blocks.front_mut() else { break };
            let lines = next_first - front.first;
            let droppable = keep_from.saturating_sub(front.seq).min(lines);
            if droppable == 0 {
                break;
            }
            let need = want - freed;
            if droppable == lines && front.cost() <= need {
                freed += front.cost();
                self.evicted += lines;
                self.blocks.pop_front();
                continue;
            }
            // Part of the block: the fewest lines that free `need`, the rest
            // copied into an allocation of its own (what dropping them
            // really frees).
            let (mut cut, mut gone) = (0, 0);
            for nl in memchr_iter(b'\n', &front.text) {
                if gone == droppable || cut >= need {
                    break;
                }
                cut = nl + 1;
                gone += 1;
            }
            self.evicted += gone;
            if gone == lines {
                // Every line of it: the record goes too.
                freed += front.cost();
                self.blocks.pop_front();
                continue;
            }
            front.text = front.text[cut..].into();
            front.first += gone;
            front.seq += gone;
            front.start += cut as u64;
            freed += cut;
            if cut < need {
                break; // the next line is kept for a consumer
            }
        }
        self.bytes -= freed;
        freed
    }

    /// Bytes of text (with line ends) of the kept lines numbered `seq` or
    /// later.
    pub(crate) fn bytes_from(&self, seq: u64) -> u64 {
        let Some(oldest) = self.blocks.front() else { return 0 };
        let i = self.blocks.partition_point(|b| b.seq <= seq);
        if i == 0 {
            return self.appended - oldest.start;
        }
        let block = &self.blocks[i - 1];
        let lines = self.blocks.get(i).map_or(self.emitted, |next| next.first) - block.first;
        let skip = seq - block.seq;
        // Line `skip` begins after the block's `skip`-th line end.
        let offset = match skip {
            0 => 0,
            _ if skip >= lines => block.text.len(),
            _ => memchr_iter(b'\n', &block.text).nth(skip as usize - 1).map_or(block.text.len(), |nl| nl + 1),
        };
        self.appended - block.start - offset as u64
    }

    /// The kept lines from the first whose stream index (or, with `by_seq`,
    /// sequence number) is at least `cursor`, oldest first.
    pub(crate) fn lines_from(&self, cursor: u64, by_seq: bool) -> Walk<'_> {
        let key = |b: &Block| if by_seq { b.seq } else { b.first };
        // The block holding the cursor's line is the last one starting at
        // or before it.
        let block = self.blocks.partition_point(|b| key(b) <= cursor).saturating_sub(1);
        let mut walk = Walk { tail: self, block, offset: 0, line: 0 };
        if let Some(b) = self.blocks.get(block) {
            // Within the block only: past its last line come the next
            // block's, whose numbers (by sequence) may be far beyond.
            let lines = self.blocks.get(block + 1).map_or(self.emitted, |next| next.first) - b.first;
            let skip = cursor.saturating_sub(key(b));
            if skip >= lines {
                walk.block += 1;
            } else {
                for _ in 0..skip {
                    walk.next();
                }
            }
        }
        walk
    }
}

/// An iterator over kept lines, from a [`Tail`].
pub(crate) struct Walk<'a> {
    tail: &'a Tail,
    /// The block of the next line, its byte offset and its place in it.
    block: usize,
    offset: usize,
    line: u64,
}

impl<'a> Walk<'a> {
    /// The next line, without moving past it.
    pub(crate) fn peek(&self) -> Option<LineRef<'a>> {
        let block = self.tail.blocks.get(self.block)?;
        let rest = &block.text[self.offset..];
        let end = memchr(b'\n', rest).unwrap_or(rest.len());
        Some(LineRef {
            seq: block.seq + self.line,
            index: block.first + self.line,
            timestamp: block.timestamp,
            text: &rest[..end],
        })
    }
}

impl<'a> Iterator for Walk<'a> {
    type Item = LineRef<'a>;

    fn next(&mut self) -> Option<LineRef<'a>> {
        let line = self.peek()?;
        self.offset += line.text.len() + 1;
        self.line += 1;
        if self.offset >= self.tail.blocks[self.block].text.len() {
            self.block += 1;
            self.offset = 0;
            self.line = 0;
        }
        Some(line)
    }
}
