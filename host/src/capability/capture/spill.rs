//! The output of one stream on disk, so that memory holds only its tail.
//!
//! Every block of lines a stream keeps is also written to its spill file as
//! one record: a 32-byte header (the stream index and sequence number of
//! its first line, its timestamp, its length and line count) and its text,
//! each line ended by `\n`. The file is a ring of at most `cap` bytes:
//! record offsets grow forever, and a byte at offset `o` lives at `o % cap`,
//! so the file never grows past `cap`; to make room the oldest records are
//! dropped (their lines are then gone unless memory still holds them).
//!
//! Memory keeps a sparse index, one mark per 64 KiB of records, so that a
//! reader from any cursor reads at most that much to find its line.
//!
//! Files are created unnamed (`O_TMPFILE`, or created and unlinked at once
//! where the filesystem can't) with mode 0600, in a 0700 directory of this
//! server ([`SpillDir`]): only the server's user can read them, and they are
//! gone as soon as the capture closes them (its process forgotten, the
//! server stopped or killed).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memchr::memchr_iter;

use super::budget::{Account, CaptureBudget};

/// The header of a record: first index, sequence number, timestamp (u64
/// each), text length and line count (u32 each), little-endian.
const HEADER: u64 = 32;
/// A mark of the sparse index every this many bytes of records.
const MARK_EVERY: u64 = 64 << 10;

/// The directory of one server's spill files: private to its user, and
/// removed when dropped (the files in it have no names, so it is empty).
#[derive(Debug)]
pub struct SpillDir {
    path: PathBuf,
    /// Files opened so far, for unique fallback names.
    opened: AtomicU64,
}

impl SpillDir {
    /// Creates `sandbox-process-capture-<pid>-<n>` (mode 0700) in `parent`.
    pub fn create(parent: &Path) -> io::Result<Arc<SpillDir>> {
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        for n in 0..100u32 {
            let path = parent.join(format!("sandbox-process-capture-{pid}-{}", nanos.wrapping_add(n)));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Arc::new(SpillDir { path, opened: AtomicU64::new(0) })),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free name for the capture directory"))
    }

    /// Where the directory is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new, empty, unnamed file in the directory, readable and writable
    /// by this user only.
    fn open(&self) -> io::Result<File> {
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).mode(0o600);
        match options.clone().custom_flags(libc::O_TMPFILE).open(&self.path) {
            Ok(file) => Ok(file),
            // A filesystem without unnamed files: a name, removed at once.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {
                let n = self.opened.fetch_add(1, Ordering::Relaxed);
                let path = self.path.join(format!("stream-{n}"));
                let file = options.create_new(true).open(&path)?;
                std::fs::remove_file(&path)?;
                Ok(file)
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Where a capture's streams spill, and how much they may.
#[derive(Debug, Clone)]
pub(crate) struct SpillConfig {
    pub(crate) dir: Arc<SpillDir>,
    /// The most bytes of records one stream's file holds.
    pub(crate) cap: u64,
    /// The disk budget of all spill files together.
    pub(crate) budget: Arc<CaptureBudget>,
}

/// A mark of the sparse index: a record's offset and its first line.
#[derive(Debug, Clone, Copy)]
struct Mark {
    offset: u64,
    first: u64,
    seq: u64,
}

/// One line as a read finds it, from disk or from memory.
#[derive(Debug)]
pub(crate) struct KeptLine {
    pub(crate) seq: u64,
    pub(crate) index: u64,
    pub(crate) timestamp: u64,
    pub(crate) text: String,
}

/// The spill file of one stream.
#[derive(Debug)]
pub(crate) struct Spill {
    file: File,
    cap: u64,
    /// The offset of the oldest record kept, and where the next one goes.
    start: u64,
    end: u64,
    /// The stream index of the oldest line kept (of the next one to come,
    /// when the file is empty).
    first: u64,
    marks: VecDeque<Mark>,
    /// The file's bytes, charged to the disk budget.
    account: Account,
}

impl Spill {
    /// An empty spill for a stream whose next line has index `first`.
    pub(crate) fn open(config: &SpillConfig, first: u64) -> io::Result<Spill> {
        let file = config.dir.open()?;
        Ok(Spill {
            file,
            cap: config.cap,
            start: 0,
            end: 0,
            first,
            marks: VecDeque::new(),
            account: Account::new(config.budget.clone()),
        })
    }

    /// The index of the oldest line on disk; the next line's when empty.
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// Bytes of records in the file.
    pub(crate) fn bytes(&self) -> u64 {
        self.end - self.start
    }

    /// The file's length, as the filesystem says.
    #[cfg(test)]
    pub(crate) fn file_len(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
    }

    /// What the sparse index takes in memory.
    pub(crate) fn memory(&self) -> usize {
        self.marks.capacity() * std::mem::size_of::<Mark>()
    }

    /// Writes the block of `count` lines `text` (each ended by `\n`), the
    /// first of index `first` and sequence number `seq`, dropping the
    /// oldest records as needed. A block larger than the whole file empties
    /// it and is not kept.
    pub(crate) fn append(&mut self, first: u64, seq: u64, timestamp: u64, text: &[u8], count: u64) -> io::Result<()> {
        let size = HEADER + text.len() as u64;
        if size > self.cap {
            self.drop_oldest(u64::MAX)?;
            self.first = first + count;
            return Ok(());
        }
        if self.start == self.end {
            self.first = first;
        }
        let room = self.cap - self.bytes();
        if size > room {
            self.drop_oldest(size - room)?;
        }
        let mut header = [0u8; HEADER as usize];
        header[0..8].copy_from_slice(&first.to_le_bytes());
        header[8..16].copy_from_slice(&seq.to_le_bytes());
        header[16..24].copy_from_slice(&timestamp.to_le_bytes());
        header[24..28].copy_from_slice(&(text.len() as u32).to_le_bytes());
        header[28..32].copy_from_slice(&(count as u32).to_le_bytes());
        self.write_at(self.end, &header)?;
        self.write_at(self.end + HEADER, text)?;
        if self.marks.back().is_none_or(|m| self.end - m.offset >= MARK_EVERY) {
            self.marks.push_back(Mark { offset: self.end, first, seq });
        }
        self.end += size;
        self.account.set(self.bytes() as usize);
        Ok(())
    }

    /// Drops the oldest records until at least `want` bytes are free (all
    /// of them if that is not enough).
    pub(crate) fn drop_oldest(&mut self, want: u64) -> io::Result<()> {
        let mut freed = 0;
        while freed < want && self.start < self.end {
            let (_, _, _, len, count) = self.header(self.start)?;
            self.start += HEADER + len;
            self.first += count;
            freed += HEADER + len;
        }
        while self.marks.front().is_some_and(|m| m.offset < self.start) {
            self.marks.pop_front();
        }
        self.account.set(self.bytes() as usize);
        Ok(())
    }

    /// Up to `limit` lines from the first whose index (with `by_seq`, whose
    /// sequence number) is at least `cursor`, and below index `stop`; one
    /// more at most once their text reaches `max_bytes`. True if that one
    /// more was taken: the caller takes no more.
    pub(crate) fn read(
        &self,
        cursor: u64,
        by_seq: bool,
        stop: u64,
        limit: usize,
        max_bytes: usize,
        out: &mut Vec<KeptLine>,
    ) -> io::Result<bool> {
        let (mut bytes, mut full) = (0, false);
        let key = |m: &Mark| if by_seq { m.seq } else { m.first };
        let at = self.marks.partition_point(|m| key(m) <= cursor);
        let mut offset = if at == 0 { self.start } else { self.marks[at - 1].offset };
        let mut text = Vec::new();
        while offset < self.end && out.len() < limit && !full {
            let (first, seq, timestamp, len, count) = self.header(offset)?;
            let record = HEADER + len;
            let base = if by_seq { seq } else { first };
            if first >= stop {
                break;
            }
            if base + count <= cursor {
                offset += record;
                continue;
            }
            text.resize(len as usize, 0);
            self.read_at(offset + HEADER, &mut text)?;
            let mut from = 0;
            for (k, nl) in (0u64..).zip(memchr_iter(b'\n', &text)) {
                let line = &text[from..nl];
                from = nl + 1;
                if first + k >= stop || out.len() >= limit || full {
                    break;
                }
                if base + k < cursor {
                    continue;
                }
                full = bytes >= max_bytes;
                bytes += line.len();
                let text = String::from_utf8_lossy(line).into_owned();
                out.push(KeptLine { seq: seq + k, index: first + k, timestamp, text });
            }
            offset += record;
        }
        Ok(full)
    }

    /// The header of the record at `offset`: first index, sequence
    /// number, timestamp, text length, line count.
    fn header(&self, offset: u64) -> io::Result<(u64, u64, u64, u64, u64)> {
        let mut h = [0u8; HEADER as usize];
        self.read_at(offset, &mut h)?;
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u64::from(u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes")));
        let (len, count) = (u32_at(24), u32_at(28));
        if HEADER + len > self.cap {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "a spill record longer than its file"));
        }
        Ok((u64_at(0), u64_at(8), u64_at(16), len, count))
    }

    /// Writes at ring offset `offset`, wrapping at the end of the file.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let at = offset % self.cap;
        let first = data.len().min((self.cap - at) as usize);
        self.file.write_all_at(&data[..first], at)?;
        self.file.write_all_at(&data[first..], 0)
    }

    /// Reads at ring offset `offset`, wrapping at the end of the file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let at = offset % self.cap;
        let first = buf.len().min((self.cap - at) as usize);
        let (head, tail) = buf.split_at_mut(first);
        self.file.read_exact_at(head, at)?;
        self.file.read_exact_at(tail, 0)
    }
}
