//! The output replies, `GET .../stdout|stderr|output`: whole in one string
//! ([`output`]), or in pages of bounded size ([`output_open`],
//! [`output_next`]) so that output of any size never sits whole in the
//! guest's memory or the host's.
//!
//! Both read the captured output from the start, a batch at a time, until
//! they have caught up with what is there (the host says no more lines
//! are captured) or the writer has lapped them (lines they had not reached
//! were dropped since their previous read: a child writing faster than
//! they read would keep them reading for ever). So the reply is what was
//! captured when the call began, give or take a read.

use crate::model::{Capability, OutputPage, OutputPosition, OutputSelector, Pid, Reply};
use crate::prelude::*;
use crate::render::{self, ApiError};
use crate::request;

/// Lines asked for per read (the host also bounds the text of one read).
pub const OUTPUT_BATCH: u32 = 4096;

/// What one read gives a reply.
struct Read {
    lines: Vec<String>,
    cursor: u64,
    /// Lines dropped so far (the count is since the start: the latest is
    /// the total).
    dropped: u64,
    /// The reply ends with these lines.
    last: bool,
}

/// Reads the batch after `cursor`. `started` once lines were read: then a
/// skip over lines dropped since that read means the writer lapped the
/// reader. (A skip over lines dropped before is no such thing: in merged
/// output, the gaps of a stream that kept less than the other.)
fn read<C: Capability + ?Sized>(
    cap: &C,
    pid: Pid,
    selector: OutputSelector,
    cursor: u64,
    dropped: u64,
    started: bool,
) -> Result<Read, ApiError> {
    let chunk = cap.read_output(pid, selector, cursor, OUTPUT_BATCH, 0)?;
    let returned = chunk.lines.len() as u64;
    let skipped = chunk.next_cursor.saturating_sub(cursor) > returned;
    let lapped = started && skipped && chunk.dropped > dropped;
    Ok(Read {
        lines: chunk.lines.into_iter().map(|line| line.line).collect(),
        cursor: chunk.next_cursor,
        dropped: dropped.max(chunk.dropped),
        last: !chunk.more || lapped,
    })
}

/// `GET /processes/{ref}/stdout|stderr|output`: every captured line so
/// far, the whole reply at once.
pub fn output<C: Capability + ?Sized>(cap: &C, process_ref: &str, selector: OutputSelector) -> Reply {
    let reply = (|| {
        let pid = request::parse_ref(process_ref)?;
        let (mut lines, mut cursor, mut dropped) = (Vec::new(), 0, 0);
        loop {
            let read = read(cap, pid, selector, cursor, dropped, !lines.is_empty())?;
            (cursor, dropped) = (read.cursor, read.dropped);
            lines.extend(read.lines);
            if read.last {
                return Ok(Reply { status: 200, body: render::output_reply(pid, &lines, dropped) });
            }
        }
    })();
    reply.unwrap_or_else(|error: ApiError| error.reply())
}

/// The same reply in pages: checks the reference and the process, and
/// returns the first page (status 200), or the error reply.
pub fn output_open<C: Capability + ?Sized>(
    cap: &C,
    process_ref: &str,
    selector: OutputSelector,
) -> Result<OutputPage, Reply> {
    let opened = (|| {
        let pid = request::parse_ref(process_ref)?;
        cap.get(pid)?;
        Ok(pid)
    })();
    let pid = opened.map_err(|error: ApiError| error.reply())?;
    let position = OutputPosition { pid, selector, cursor: 0, lines: 0, dropped: 0 };
    Ok(page(cap, position, render::output_head(pid)))
}

/// The next page of a paged reply.
pub fn output_next<C: Capability + ?Sized>(cap: &C, position: OutputPosition) -> OutputPage {
    page(cap, position, String::new())
}

/// One read's lines after `text`; the end of the JSON after the last.
fn page<C: Capability + ?Sized>(cap: &C, mut position: OutputPosition, mut text: String) -> OutputPage {
    let p = &position;
    let read = match read(cap, p.pid, p.selector, p.cursor, p.dropped, p.lines > 0) {
        Ok(read) => read,
        // Cut short (the process was forgotten meanwhile, say): the JSON
        // stays open, so that no client takes this for all of it.
        Err(_) => return OutputPage { text, position, done: true },
    };
    for line in &read.lines {
        render::push_output_line(&mut text, line, position.lines == 0);
        position.lines += 1;
    }
    (position.cursor, position.dropped) = (read.cursor, read.dropped);
    if read.last {
        text.push_str(&render::output_tail(position.lines, position.dropped));
    }
    OutputPage { text, position, done: read.last }
}
