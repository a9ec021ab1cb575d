// Bounded, line-oriented capture of a child's stdout and stderr.
//
// Pure data structures with no I/O, so that they are unit-tested on their
// own (test/capture.test.js): a splitter that turns byte chunks into lines,
// and a buffer that keeps lines per stream under a byte cap, counted as the
// Rust host counts it (host/src/capability/capture/tail.rs).

/** The default cap of captured output per stream, in bytes. */
export const DEFAULT_CAPTURE_BYTES = 4 * 1024 * 1024;
/** What each kept line costs beyond its text, in bytes: its `\n`. */
export const LINE_COST_BYTES = 1;
/**
 * What each block of (up to MAX_BLOCK_LINES) lines read together costs
 * beyond their text, in bytes: the Rust host's figure (its record and
 * allocation), so that both hosts keep the same lines under the same cap.
 */
export const BLOCK_COST_BYTES = 64;
/** The most lines in one block; a chunk of more makes several. */
export const MAX_BLOCK_LINES = 256;
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
 * Lines arrive in blocks, one per chunk read from the pipe (several of up
 * to MAX_BLOCK_LINES for a chunk of more), and are kept that way: one
 * Buffer holding the block's lines, each ended by `\n`, and
 * one record (the first line's numbers and the time it was read). The cap
 * counts what that holds, as the Rust host does: each line's UTF-8 bytes
 * plus `LINE_COST_BYTES` (its end), and `BLOCK_COST_BYTES` per block. A
 * stream over its cap drops its oldest lines and counts them; the newest
 * line is always kept.
 *
 * Every line gets a global sequence number (its place among the lines of
 * both streams) and an index in its own stream. Cursors, as the
 * capability's `read-output` defines them: for one stream, the cursor
 * counts lines of that stream (the stream index); for `merged` it counts
 * lines of both (the global sequence). So cursor N means "N lines of the
 * selection came before", dropped ones included.
 */
export class CaptureBuffer {
  #capBytes;
  #seq = 0;
  #streams = {
    stdout: { blocks: new Deque(), bytes: 0, count: 0, dropped: 0 },
    stderr: { blocks: new Deque(), bytes: 0, count: 0, dropped: 0 },
  };

  constructor({ capBytes = DEFAULT_CAPTURE_BYTES } = {}) {
    this.#capBytes = capBytes;
  }

  /** The longest line (in bytes) that fits in a stream alone. */
  get maxLineBytes() {
    return Math.max(4, this.#capBytes - BLOCK_COST_BYTES - LINE_COST_BYTES);
  }

  /** Lines of both streams so far, dropped ones included. */
  get total() {
    return this.#seq;
  }

  /** @param {'stdout'|'stderr'} stream */
  stats(stream) {
    const s = this.#streams[stream];
    return { count: s.count, dropped: s.dropped, kept: s.count - s.dropped, bytes: s.bytes };
  }

  /** Adds one line, read on its own. */
  push(stream, line, timestamp) {
    this.pushLines(stream, [line], timestamp);
  }

  /**
   * Adds the lines of one read, as one block. The oldest lines of the same
   * stream are dropped while the stream is over its cap.
   *
   * @param {'stdout'|'stderr'} stream
   * @param {string[]} lines
   * @param {number} timestamp
   */
  pushLines(stream, lines, timestamp) {
    const s = this.#streams[stream];
    for (let start = 0; start < lines.length; start += MAX_BLOCK_LINES) {
      const part = lines.slice(start, start + MAX_BLOCK_LINES);
      const text = Buffer.from(`${part.join('\n')}\n`, 'utf8');
      s.blocks.push({ seq: this.#seq, index: s.count, timestamp, text });
      this.#seq += part.length;
      s.count += part.length;
      s.bytes += text.length + BLOCK_COST_BYTES;
    }
    if (s.bytes > this.#capBytes) this.#trim(s);
  }

  /** Drops the fewest oldest lines that bring `s` under the cap. */
  #trim(s) {
    while (s.bytes > this.#capBytes) {
      const front = s.blocks.at(0);
      const lines = (s.blocks.length > 1 ? s.blocks.at(1).index : s.count) - front.index;
      const need = s.bytes - this.#capBytes;
      if (front.text.length + BLOCK_COST_BYTES <= need && s.blocks.length > 1) {
        s.blocks.shift();
        s.bytes -= front.text.length + BLOCK_COST_BYTES;
        s.dropped += lines;
        continue;
      }
      // Part of the block: the fewest lines that free `need` bytes, never
      // the newest line; the rest copied so that their memory is freed.
      let cut = 0;
      let dropped = 0;
      const last = s.blocks.length === 1 ? lines - 1 : lines;
      while (dropped < last && cut < need) {
        cut = front.text.indexOf(0x0a, cut) + 1;
        dropped++;
      }
      if (dropped === 0) return;
      if (cut === front.text.length) {
        s.blocks.shift();
        s.bytes -= front.text.length + BLOCK_COST_BYTES;
      } else {
        front.text = Buffer.from(front.text.subarray(cut));
        s.bytes -= cut;
      }
      front.index += dropped;
      front.seq += dropped;
      s.dropped += dropped;
    }
  }

  /** A walk over the kept lines of `s` from the first whose key is at least `cursor`. */
  #walk(s, name, cursor, bySeq) {
    const key = bySeq ? (b) => b.seq : (b) => b.index;
    const at = s.blocks.lowerBound(cursor + 1, key);
    const walk = { s, name, block: Math.max(0, at - 1), offset: 0, line: 0 };
    const first = s.blocks.at(walk.block);
    if (!first) return walk;
    // Within the block only: past its last line come the next block's,
    // whose numbers (by sequence) may be far beyond.
    const next = s.blocks.at(walk.block + 1);
    const lines = (next ? next.index : s.count) - first.index;
    const skip = cursor - key(first);
    if (skip >= lines) walk.block++;
    else for (let i = 0; i < skip; i++) this.#advance(walk);
    return walk;
  }

  /** The next line of a walk, or undefined. */
  #peek(walk) {
    const block = walk.s.blocks.at(walk.block);
    if (!block) return undefined;
    const end = block.text.indexOf(0x0a, walk.offset);
    return {
      seq: block.seq + walk.line,
      index: block.index + walk.line,
      stream: walk.name,
      line: block.text.toString('utf8', walk.offset, end),
      timestamp: block.timestamp,
      end,
    };
  }

  #advance(walk) {
    const block = walk.s.blocks.at(walk.block);
    walk.offset = block.text.indexOf(0x0a, walk.offset) + 1;
    walk.line++;
    if (walk.offset >= block.text.length) {
      walk.block++;
      walk.offset = 0;
      walk.line = 0;
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
    const merged = selector === 'merged';
    const names = merged ? STREAMS : [selector];
    if (!merged && !this.#streams[selector]) throw new TypeError(`unknown selector ${selector}`);
    const walks = names.map((name) => this.#walk(this.#streams[name], name, cursor, merged));
    const lines = [];
    while (lines.length < maxLines) {
      let best;
      let bestWalk;
      for (const walk of walks) {
        const line = this.#peek(walk);
        if (line && (!best || line.seq < best.seq)) [best, bestWalk] = [line, walk];
      }
      if (!best) break;
      delete best.end;
      lines.push(best);
      this.#advance(bestWalk);
    }
    const key = (l) => (merged ? l.seq : l.index);
    const nextCursor = lines.length ? key(lines[lines.length - 1]) + 1 : cursor;
    const dropped = names.reduce((sum, name) => sum + this.#streams[name].dropped, 0);
    const end = merged ? this.#seq : this.#streams[selector].count;
    return { lines, nextCursor, dropped, atEnd: nextCursor >= end };
  }
}
