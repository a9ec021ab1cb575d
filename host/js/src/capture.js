// Bounded, line-oriented capture of a child's stdout and stderr.
//
// Pure data structures with no I/O, so that they are unit-tested on their
// own (test/capture.test.js): a splitter that turns byte chunks into lines,
// and a buffer that keeps lines per stream under a byte cap.

/** The default cap of captured output per stream, in bytes. */
export const DEFAULT_CAPTURE_BYTES = 4 * 1024 * 1024;
/** What each kept line costs beyond its text, in bytes (bookkeeping). */
export const LINE_OVERHEAD_BYTES = 32;
/** The longest line kept whole, in bytes; a longer one is split. */
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024;

/**
 * Splits a byte stream into lines: `\n` ends a line and is not kept; a line
 * longer than `maxLineBytes` is cut (at a UTF-8 character boundary where
 * there is one); invalid UTF-8 becomes U+FFFD. `end()` flushes a last line
 * that has no newline.
 */
export class LineSplitter {
  #pending = [];
  #pendingBytes = 0;
  #maxLineBytes;
  #emit;

  /**
   * @param {(line: string) => void} emit called once per complete line
   * @param {number} maxLineBytes
   */
  constructor(emit, maxLineBytes = DEFAULT_MAX_LINE_BYTES) {
    this.#emit = emit;
    this.#maxLineBytes = Math.max(4, maxLineBytes);
  }

  /** @param {Uint8Array} chunk */
  push(chunk) {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) break;
      this.#append(chunk.subarray(start, nl));
      this.#flush();
      start = nl + 1;
    }
    if (start < chunk.length) this.#append(chunk.subarray(start));
  }

  /** Flushes a last line without newline, if any. Idempotent. */
  end() {
    if (this.#pendingBytes > 0) this.#flush();
  }

  #append(bytes) {
    if (bytes.length === 0) return;
    this.#pending.push(bytes);
    this.#pendingBytes += bytes.length;
    while (this.#pendingBytes > this.#maxLineBytes) {
      const all = Buffer.concat(this.#pending, this.#pendingBytes);
      let cut = this.#maxLineBytes;
      // Back up over UTF-8 continuation bytes so a character stays whole.
      while (cut > this.#maxLineBytes - 4 && (all[cut] & 0xc0) === 0x80) cut--;
      if ((all[cut] & 0xc0) === 0x80) cut = this.#maxLineBytes;
      this.#emit(all.subarray(0, cut).toString('utf8'));
      const rest = all.subarray(cut);
      this.#pending = rest.length ? [Buffer.from(rest)] : [];
      this.#pendingBytes = rest.length;
    }
  }

  #flush() {
    const line = Buffer.concat(this.#pending, this.#pendingBytes).toString('utf8');
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#emit(line);
  }
}

/** A queue with O(1) push and amortized O(1) shift, indexable. */
class Deque {
  #items = [];
  #head = 0;

  get length() {
    return this.#items.length - this.#head;
  }

  at(i) {
    return this.#items[this.#head + i];
  }

  push(item) {
    this.#items.push(item);
  }

  shift() {
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** The first index whose item has `key(item) >= value` (items sorted). */
  lowerBound(value, key) {
    let lo = 0;
    let hi = this.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (key(this.at(mid)) < value) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

const STREAMS = ['stdout', 'stderr'];

/**
 * The captured lines of one process, bounded per stream.
 *
 * Every line gets a global sequence number (its place among the lines of
 * both streams) and an index in its own stream. A stream whose kept lines
 * would cost more than `capBytes` (text bytes plus `lineOverhead` per line)
 * drops its oldest lines and counts them.
 *
 * Cursors, as the capability's `read-output` defines them: for one stream,
 * the cursor counts lines of that stream (the stream index); for `merged`
 * it counts lines of both (the global sequence). So cursor N means "N lines
 * of the selection came before", dropped ones included.
 */
export class CaptureBuffer {
  #capBytes;
  #lineOverhead;
  #seq = 0;
  #streams = {
    stdout: { lines: new Deque(), bytes: 0, count: 0, dropped: 0 },
    stderr: { lines: new Deque(), bytes: 0, count: 0, dropped: 0 },
  };

  constructor({ capBytes = DEFAULT_CAPTURE_BYTES, lineOverhead = LINE_OVERHEAD_BYTES } = {}) {
    this.#capBytes = capBytes;
    this.#lineOverhead = lineOverhead;
  }

  /** The longest line (in bytes) that fits in a stream alone. */
  get maxLineBytes() {
    return Math.max(4, this.#capBytes - this.#lineOverhead);
  }

  /** Lines of both streams so far, dropped ones included. */
  get total() {
    return this.#seq;
  }

  /** @param {'stdout'|'stderr'} stream */
  stats(stream) {
    const s = this.#streams[stream];
    return { count: s.count, dropped: s.dropped, kept: s.lines.length, bytes: s.bytes };
  }

  /**
   * Adds one line. The oldest lines of the same stream are dropped while the
   * stream is over its cap (the newest line is always kept).
   */
  push(stream, line, timestamp) {
    const s = this.#streams[stream];
    const cost = Buffer.byteLength(line, 'utf8') + this.#lineOverhead;
    s.lines.push({ seq: this.#seq++, index: s.count++, stream, line, timestamp, cost });
    s.bytes += cost;
    while (s.bytes > this.#capBytes && s.lines.length > 1) {
      s.bytes -= s.lines.shift().cost;
      s.dropped++;
    }
  }

  /**
   * Reads up to `maxLines` lines of `selector` after `cursor`.
   *
   * @param {'stdout'|'stderr'|'merged'} selector
   * @param {number} cursor lines of the selection to skip (see the class doc)
   * @param {number} maxLines
   * @returns {{lines: object[], nextCursor: number, dropped: number, atEnd: boolean}}
   *   `nextCursor` is the index after the last line returned (the cursor
   *   itself when none is), `dropped` the selection's dropped lines so far,
   *   `atEnd` true when no captured line follows `nextCursor`.
   */
  read(selector, cursor, maxLines) {
    if (selector === 'merged') return this.#readMerged(cursor, maxLines);
    const s = this.#streams[selector];
    if (!s) throw new TypeError(`unknown selector ${selector}`);
    const lines = [];
    const from = Math.max(cursor, s.dropped) - s.dropped;
    for (let i = from; i < s.lines.length && lines.length < maxLines; i++) lines.push(s.lines.at(i));
    const nextCursor = lines.length ? lines[lines.length - 1].index + 1 : cursor;
    return { lines, nextCursor, dropped: s.dropped, atEnd: nextCursor >= s.count };
  }

  #readMerged(cursor, maxLines) {
    const bySeq = (l) => l.seq;
    const [a, b] = STREAMS.map((name) => this.#streams[name].lines);
    let i = a.lowerBound(cursor, bySeq);
    let j = b.lowerBound(cursor, bySeq);
    const lines = [];
    while (lines.length < maxLines && (i < a.length || j < b.length)) {
      if (j >= b.length || (i < a.length && a.at(i).seq < b.at(j).seq)) lines.push(a.at(i++));
      else lines.push(b.at(j++));
    }
    const nextCursor = lines.length ? lines[lines.length - 1].seq + 1 : cursor;
    const dropped = this.#streams.stdout.dropped + this.#streams.stderr.dropped;
    return { lines, nextCursor, dropped, atEnd: nextCursor >= this.#seq };
  }
}
