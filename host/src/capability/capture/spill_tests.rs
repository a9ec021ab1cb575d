//! Unit tests of captures that spill to disk: every line readable whatever
//! memory keeps, the per-stream disk cap, unnamed files, the disk budget.

use super::budget::CaptureBudget;
use super::spill::{SpillConfig, SpillDir};
use super::*;
use crate::types::OutputSelector::{Merged, Stderr as SelErr, Stdout as SelOut};
use crate::types::OutputStream::{Stderr, Stdout};

/// A spill directory of its own under the system's temporary directory.
fn dir() -> Arc<SpillDir> {
    SpillDir::create(&std::env::temp_dir()).unwrap()
}

fn config(dir: &Arc<SpillDir>, cap: u64, budget: &Arc<CaptureBudget>) -> Option<SpillConfig> {
    Some(SpillConfig { dir: dir.clone(), cap, budget: budget.clone() })
}

/// Reads `selector` from `cursor` in reads of `step` lines until the end;
/// returns the lines and the lines skipped (the gaps between cursors).
fn page(c: &Capture, selector: OutputSelector, step: usize) -> (Vec<String>, u64) {
    let (mut lines, mut skipped, mut cursor) = (Vec::new(), 0, 0);
    loop {
        let chunk = c.read(selector, cursor, step);
        skipped += chunk.next_cursor - cursor - chunk.lines.len() as u64;
        lines.extend(chunk.lines.into_iter().map(|l| l.line));
        if chunk.next_cursor == cursor {
            return (lines, skipped);
        }
        cursor = chunk.next_cursor;
    }
}

#[test]
fn every_line_stays_readable_when_memory_keeps_only_the_newest() {
    let (dir, budget) = (dir(), CaptureBudget::new(usize::MAX));
    let mut c = Capture::with_spill(1 << 10, 1 << 10, true, true, config(&dir, 64 << 20, &budget));
    for i in 0..20_000 {
        let (stream, text) = if i % 3 == 0 { (Stderr, format!("err {i}\n")) } else { (Stdout, format!("out {i}\n")) };
        c.push(stream, text.as_bytes(), i);
    }
    assert!(c.retained_bytes(Stdout) <= 1 << 10, "memory keeps its cap");
    let want = |stream: Option<OutputStream>| -> Vec<String> {
        (0..20_000u64)
            .filter(|i| match stream {
                Some(Stderr) => i % 3 == 0,
                Some(Stdout) => i % 3 != 0,
                None => true,
            })
            .map(|i| if i % 3 == 0 { format!("err {i}") } else { format!("out {i}") })
            .collect()
    };
    for (selector, stream) in [(SelOut, Some(Stdout)), (SelErr, Some(Stderr)), (Merged, None)] {
        let chunk = c.read(selector, 0, usize::MAX);
        assert_eq!(chunk.dropped, 0);
        assert_eq!(texts(&chunk), want(stream), "{selector:?} in one read");
        for step in [7, 256, 1000] {
            let (lines, skipped) = page(&c, selector, step);
            assert_eq!((lines, skipped), (want(stream), 0), "{selector:?} in reads of {step}");
        }
    }
    // Timestamps come back from disk too.
    let first = c.read(SelOut, 0, 1);
    assert_eq!((first.lines[0].line.as_str(), first.lines[0].timestamp), ("out 1", 1));
    // The files have no names: the directory stays empty.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn past_its_disk_cap_a_stream_drops_its_oldest_lines_and_counts_them() {
    let (dir, budget) = (dir(), CaptureBudget::new(usize::MAX));
    let cap = 4 << 10;
    let mut c = Capture::with_spill(256, 1 << 10, true, true, config(&dir, cap, &budget));
    for i in 0..5000 {
        c.push(Stdout, format!("{i}\n").as_bytes(), i);
        assert!(c.spill_len(Stdout).unwrap_or(0) <= cap, "the file grew past its cap");
        assert!(c.disk_bytes()[0] <= cap);
    }
    let chunk = c.read(SelOut, 0, usize::MAX);
    let kept = chunk.lines.len() as u64;
    assert!(chunk.dropped > 0);
    assert_eq!(kept + chunk.dropped, 5000);
    // The newest, in order; about the cap's worth (one record of 32 bytes
    // per line pushed alone).
    let want: Vec<String> = (chunk.dropped..5000).map(|i| i.to_string()).collect();
    assert_eq!(texts(&chunk), want);
    assert!(kept * (32 + 5) > cap / 2, "{kept} lines kept in {cap} bytes");
    // A reader at the start is told what it missed.
    let (lines, skipped) = page(&c, SelOut, 100);
    assert_eq!((lines.len() as u64, skipped), (kept, chunk.dropped));
    assert_eq!(budget.used() as u64, c.disk_bytes()[0]);
}

#[test]
fn the_disk_budget_is_charged_and_given_back() {
    let (dir, budget) = (dir(), CaptureBudget::new(1 << 20));
    let mut a = Capture::with_spill(1 << 10, 1 << 10, true, true, config(&dir, 64 << 20, &budget));
    let text: String = (0..10_000).map(|i| format!("{i}\n")).collect();
    a.push(Stdout, text.as_bytes(), 1);
    let used = budget.used();
    assert!(used >= text.len(), "{used} bytes charged for {} on disk", text.len());
    assert!(!a.over_budget());
    // Another capture over the budget: both see it.
    let mut b = Capture::with_spill(1 << 10, 1 << 10, true, true, config(&dir, 64 << 20, &budget));
    b.push(Stderr, text.repeat(20).as_bytes(), 2);
    assert!(a.over_budget() && b.over_budget());
    // Trimming a file gives its bytes back; what memory has stays readable.
    b.trim_disk(1, 0);
    assert_eq!(b.disk_bytes(), [0, 0]);
    let chunk = b.read(SelErr, 0, usize::MAX);
    assert!(chunk.dropped > 0 && !chunk.lines.is_empty(), "memory's lines outlive the file");
    assert_eq!(chunk.dropped + chunk.lines.len() as u64, 200_000);
    drop(a);
    drop(b);
    assert_eq!(budget.used(), 0);
}

#[test]
fn a_record_larger_than_the_whole_file_empties_it() {
    let (dir, budget) = (dir(), CaptureBudget::new(usize::MAX));
    let mut c = Capture::with_spill(1 << 20, 1 << 20, true, true, config(&dir, 100, &budget));
    c.push(Stdout, b"a\nb\n", 1);
    c.push(Stdout, &[b'x'; 500], 2);
    c.push(Stdout, b"\n", 3);
    c.push(Stdout, b"c\n", 4);
    // Memory still has all of it.
    assert_eq!(texts(&c.read(SelOut, 0, usize::MAX)).len(), 4);
    // With memory emptied, what disk kept: only what fit.
    c.drop_all();
    let chunk = c.read(SelOut, 0, usize::MAX);
    assert_eq!(texts(&chunk), ["c"]);
    assert_eq!(chunk.dropped, 3);
}

fn texts(chunk: &OutputChunk) -> Vec<String> {
    chunk.lines.iter().map(|l| l.line.clone()).collect()
}

/// Reads of bounded text page through disk and memory alike, each saying
/// whether more remain, to the last line.
#[test]
fn bounded_reads_say_more_remain_across_disk_and_memory() {
    let (dir, budget) = (dir(), CaptureBudget::new(usize::MAX));
    for spill in [None, config(&dir, 64 << 20, &budget)] {
        let mut c = Capture::with_spill(2 << 10, 1 << 10, true, true, spill);
        for i in 0..3000 {
            let stream = if i % 5 == 0 { Stderr } else { Stdout };
            c.push(stream, format!("{i:09}\n").as_bytes(), i);
        }
        for selector in [SelOut, Merged] {
            let (mut cursor, mut seen) = (0, Vec::new());
            loop {
                let chunk = c.read_bounded(selector, cursor, 1000, 100);
                // The bound, passed by one line at most.
                assert!(chunk.lines.len() <= 100 / 9 + 1, "{} lines of 9 bytes for 100", chunk.lines.len());
                seen.extend(chunk.lines.iter().map(|l| l.line.clone()));
                cursor = chunk.next_cursor;
                if !chunk.more {
                    break;
                }
                assert!(!chunk.lines.is_empty());
            }
            let all = c.read(selector, 0, usize::MAX);
            assert_eq!(seen, texts(&all), "{selector:?}: bounded reads lost or repeated lines");
        }
    }
}
