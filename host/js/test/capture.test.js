// The capture buffer and line splitter on their own: cursors, caps, drops.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { BLOCK_COST_BYTES, CaptureBuffer, LINE_COST_BYTES, LineSplitter, MAX_BLOCK_LINES } from '../src/capture.js';

const texts = (read) => read.lines.map((l) => l.line);

describe('LineSplitter', () => {
  const split = (chunks, max) => {
    const out = [];
    const s = new LineSplitter((l) => out.push(l), max);
    for (const c of chunks) s.push(Buffer.from(c));
    s.end();
    return out;
  };

  test('strips the newline, keeps empty lines, flushes a partial last line', () => {
    assert.deepEqual(split(['a\nb\n\nc']), ['a', 'b', '', 'c']);
  });

  test('joins a line across chunks and keeps \\r', () => {
    assert.deepEqual(split(['he', 'llo\r', '\nwor', 'ld\n']), ['hello\r', 'world']);
  });

  test('nothing after a final newline', () => {
    assert.deepEqual(split(['x\n']), ['x']);
    assert.deepEqual(split([]), []);
  });

  test('a character split across chunks stays whole; invalid UTF-8 becomes U+FFFD', () => {
    const e = Buffer.from('é\n');
    const out = [];
    const s = new LineSplitter((l) => out.push(l));
    s.push(e.subarray(0, 1));
    s.push(e.subarray(1));
    s.push(Buffer.from([0x61, 0xff, 0x62, 0x0a]));
    assert.deepEqual(out, ['é', 'a\ufffdb']);
  });

  test('a line longer than the limit is split, at a character boundary', () => {
    assert.deepEqual(split(['abcdefghij\n'], 4), ['abcd', 'efgh', 'ij']);
    // 'é' is 2 bytes: cutting at 5 bytes would split the third one.
    assert.deepEqual(split(['ééé\n'], 5), ['éé', 'é']);
  });
});

describe('CaptureBuffer', () => {
  test('single-stream cursors count lines of that stream; merged counts both', () => {
    const b = new CaptureBuffer();
    b.push('stdout', 'o1', 1);
    b.push('stderr', 'e1', 2);
    b.push('stdout', 'o2', 3);
    b.push('stderr', 'e2', 4);

    let r = b.read('stdout', 0, 10);
    assert.deepEqual(texts(r), ['o1', 'o2']);
    assert.equal(r.nextCursor, 2);
    assert.equal(r.atEnd, true);

    r = b.read('stderr', 1, 10);
    assert.deepEqual(texts(r), ['e2']);
    assert.equal(r.nextCursor, 2);

    r = b.read('merged', 0, 3);
    assert.deepEqual(texts(r), ['o1', 'e1', 'o2']);
    assert.equal(r.nextCursor, 3);
    assert.equal(r.atEnd, false);
    r = b.read('merged', r.nextCursor, 3);
    assert.deepEqual(texts(r), ['e2']);
    assert.equal(r.nextCursor, 4);
    assert.equal(r.atEnd, true);
  });

  test('a read with nothing after the cursor keeps the cursor', () => {
    const b = new CaptureBuffer();
    b.push('stdout', 'x', 1);
    assert.deepEqual(b.read('stdout', 1, 10), { lines: [], nextCursor: 1, dropped: 0, atEnd: true });
    assert.deepEqual(b.read('merged', 7, 10), { lines: [], nextCursor: 7, dropped: 0, atEnd: true });
    assert.deepEqual(b.read('stderr', 0, 10), { lines: [], nextCursor: 0, dropped: 0, atEnd: true });
  });

  test('over the cap, the oldest lines of that stream are dropped and counted', () => {
    // A line read on its own costs 2 bytes of text + 1 for its end + 64 for
    // its block = 67: 3 fit in 201.
    const cost = 2 + LINE_COST_BYTES + BLOCK_COST_BYTES;
    const b = new CaptureBuffer({ capBytes: 3 * cost });
    for (let i = 0; i < 5; i++) b.push('stdout', `o${i}`, i);
    b.push('stderr', 'e0', 9);
    assert.deepEqual(b.stats('stdout'), { count: 5, dropped: 2, kept: 3, bytes: 3 * cost });
    assert.deepEqual(b.stats('stderr'), { count: 1, dropped: 0, kept: 1, bytes: cost });

    // From 0: the first kept line is stdout index 2; next-cursor - cursor -
    // returned = the lines this reader missed.
    let r = b.read('stdout', 0, 10);
    assert.deepEqual(texts(r), ['o2', 'o3', 'o4']);
    assert.equal(r.nextCursor, 5);
    assert.equal(r.dropped, 2);
    assert.equal(r.nextCursor - 0 - r.lines.length, 2);

    r = b.read('merged', 0, 10);
    assert.deepEqual(texts(r), ['o2', 'o3', 'o4', 'e0']);
    assert.equal(r.nextCursor, 6);
    assert.equal(r.dropped, 2);

    // stderr lost nothing.
    r = b.read('stderr', 0, 10);
    assert.deepEqual(texts(r), ['e0']);
    assert.equal(r.dropped, 0);
  });

  test('lines read together cost their text and ends, as in the Rust host', () => {
    // `yes`: 4096 lines of "y" per read into a 64 KiB cap (the figures of
    // the Rust host's the_cap_counts_the_text_kept_not_a_fixed_cost_per_line).
    const cap = 64 * 1024;
    const b = new CaptureBuffer({ capBytes: cap });
    const lines = new Array(4096).fill('y');
    const reads = Math.floor(1_000_000 / 4096);
    for (let i = 0; i < reads; i++) b.pushLines('stdout', lines, i);
    // Kept as blocks of 256 lines: the newest whole ones, and the newest
    // lines of the one before that fit.
    const block = BLOCK_COST_BYTES + MAX_BLOCK_LINES * (1 + LINE_COST_BYTES);
    const whole = Math.floor(cap / block);
    const kept = whole * MAX_BLOCK_LINES + Math.floor((cap - whole * block - BLOCK_COST_BYTES) / (1 + LINE_COST_BYTES));
    assert.equal(b.stats('stdout').kept, kept);
    assert.equal(b.stats('stdout').bytes, cap);
    const r = b.read('stdout', 0, 1e9);
    assert.equal(r.lines.length, kept);
    assert.equal(r.lines.length + r.dropped, reads * 4096);
    assert.equal(r.lines[0].index, r.dropped);
    // Cursors land inside blocks: page through in odd steps.
    let cursor = 0;
    let seen = 0;
    for (;;) {
      const page = b.read('merged', cursor, 777);
      if (page.lines.length === 0) break;
      assert.equal(page.lines[0].seq, seen === 0 ? r.dropped : cursor);
      seen += page.lines.length;
      cursor = page.nextCursor;
    }
    assert.equal(seen, kept);
  });

  test('the cap counts UTF-8 bytes, and the newest line is always kept', () => {
    const b = new CaptureBuffer({ capBytes: 10 });
    b.push('stdout', 'ééééé', 1); // 10 bytes + 1 + 64: over the cap alone
    assert.deepEqual(texts(b.read('stdout', 0, 10)), ['ééééé']);
    b.push('stdout', 'x', 2);
    assert.deepEqual(texts(b.read('stdout', 0, 10)), ['x']);
    assert.equal(b.stats('stdout').dropped, 1);
  });

  test('many lines: a long run of drops stays consistent', () => {
    const b = new CaptureBuffer({ capBytes: 1000 });
    for (let i = 0; i < 100_000; i++) b.push(i % 3 ? 'stdout' : 'stderr', String(i % 10), i);
    const out = b.read('stdout', 0, 1e9);
    const err = b.read('stderr', 0, 1e9);
    assert.equal(out.lines.length + out.dropped + err.lines.length + err.dropped, 100_000);
    const merged = b.read('merged', 0, 1e9);
    assert.equal(merged.lines.length, out.lines.length + err.lines.length);
    assert.equal(merged.nextCursor, 100_000);
    for (let i = 1; i < merged.lines.length; i++) assert.ok(merged.lines[i - 1].seq < merged.lines[i].seq);
  });
});
