"""Bounded, line-oriented capture of a child's stdout and stderr.

Pure data structures with no I/O, so that every rule is unit-tested on its
own (tests/test_capture.py). The rules are the Rust host's
(host/src/capability/capture.rs), so that the three hosts keep and drop
the same lines:

- bytes are split into lines at ``\\n`` (only the ``\\n`` is removed);
  invalid UTF-8 becomes U+FFFD; a line longer than ``max_line_bytes`` is
  cut into pieces at a character boundary where there is one; a last line
  without ``\\n`` is kept at end of file;
- every line gets a sequence number shared by both streams (the merged
  order is the arrival order) and an index in its own stream; a cursor
  counts lines of its selection: the index for one stream, the sequence
  number for both;
- the lines of one read are kept together as a block (at most
  ``MAX_BLOCK_LINES``); each stream is charged each line's UTF-8 bytes plus
  ``LINE_COST_BYTES``, and ``BLOCK_COST_BYTES`` per block, and past
  ``capture_bytes`` its oldest lines are dropped and counted, so output is
  never lost silently and a noisy stderr can't evict stdout.
"""

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

#: The default cap of captured output per stream, in bytes.
DEFAULT_CAPTURE_BYTES = 4 * 1024 * 1024
#: The longest line kept whole, in bytes; a longer one is split.
DEFAULT_MAX_LINE_BYTES = 64 * 1024
#: What each kept line costs beyond its text: the ``\\n`` that ends it.
LINE_COST_BYTES = 1
#: What each block of lines read together costs beyond its text.
BLOCK_COST_BYTES = 64
#: A read of more lines makes several blocks.
MAX_BLOCK_LINES = 256
#: A piece must hold a whole UTF-8 character, or cutting could not progress.
MIN_LINE_BYTES = 4

STREAMS = ("stdout", "stderr")


def char_boundary_cut(data: bytes) -> int:
    """The length of the longest prefix of ``data`` that does not end inside
    a UTF-8 sequence, unless that prefix would be empty; invalid bytes stay
    where they are (the lossy decode deals with them)."""
    length = len(data)
    for back in range(1, min(3, length) + 1):
        i = length - back
        b = data[i]
        if b & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead
        width = 2 if 0xC0 <= b <= 0xDF else 3 if 0xE0 <= b <= 0xEF else 4 if 0xF0 <= b <= 0xF7 else 1
        return i if back < width and i > 0 else length
    return length


class LineSplitter:
    """Turns the bytes of one stream into lines; ``push`` returns the lines
    a read completed, ``finish`` the partial last one."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES):
        self.max = max(MIN_LINE_BYTES, max_line_bytes)
        self.partial = bytearray()

    def push(self, data: bytes) -> List[str]:
        out: List[str] = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl == -1:
                break
            line = data[start:nl]
            if not self.partial and len(line) <= self.max:
                out.append(line.decode("utf-8", "replace"))
            else:
                self._append(line, out)
                out.append(self.partial.decode("utf-8", "replace"))
                self.partial.clear()
            start = nl + 1
        self._append(data[start:], out)
        return out

    def finish(self) -> List[str]:
        if not self.partial:
            return []
        line = self.partial.decode("utf-8", "replace")
        self.partial.clear()
        return [line]

    def _append(self, data: bytes, out: List[str]) -> None:
        # A full partial line is kept while nothing follows it, so a line of
        # exactly max bytes and its newline make one line, not two.
        while data:
            if len(self.partial) >= self.max:
                cut = char_boundary_cut(bytes(self.partial))
                out.append(self.partial[:cut].decode("utf-8", "replace"))
                del self.partial[:cut]
            take = min(self.max - len(self.partial), len(data))
            self.partial += data[:take]
            data = data[take:]


@dataclass
class Block:
    """The kept lines of one read: consecutive indexes from ``first`` and
    consecutive sequence numbers from ``seq``."""

    first: int
    seq: int
    timestamp: int
    lines: List[str]
    costs: List[int]
    #: Lines before it were dropped.
    start: int = 0
    text_bytes: int = 0

    def cost(self) -> int:
        return self.text_bytes + BLOCK_COST_BYTES

    def __len__(self) -> int:
        return len(self.lines) - self.start


@dataclass
class Tail:
    """The kept blocks of one stream, oldest first."""

    blocks: List[Block] = field(default_factory=list)
    head: int = 0  # blocks before it are gone (compacted now and then)
    bytes: int = 0
    emitted: int = 0
    dropped: int = 0
    done: bool = False

    def live(self) -> List[Block]:
        if self.head > 1024 and self.head * 2 > len(self.blocks):
            del self.blocks[: self.head]
            self.head = 0
        return self.blocks

    def append(self, lines: List[str], seq: int, timestamp: int) -> None:
        for at in range(0, len(lines), MAX_BLOCK_LINES):
            chunk = lines[at : at + MAX_BLOCK_LINES]
            costs = [len(line.encode("utf-8")) + LINE_COST_BYTES for line in chunk]
            block = Block(self.emitted, seq + at, timestamp, chunk, costs, 0, sum(costs))
            self.live().append(block)
            self.bytes += block.cost()
            self.emitted += len(chunk)

    def trim_to(self, limit: int) -> None:
        """Drops the fewest oldest lines that bring the charge to ``limit``
        (every line if that is not enough)."""
        want = self.bytes - limit
        freed = 0
        while freed < want and self.head < len(self.blocks):
            front = self.blocks[self.head]
            need = want - freed
            if front.cost() <= need:
                self._drop_block(front)
                freed += front.cost()
                continue
            cut = lines = 0
            while cut < need and front.start + lines < len(front.lines):
                cut += front.costs[front.start + lines]
                lines += 1
            if lines == len(front):
                self._drop_block(front)
                freed += front.cost()
                continue
            front.start += lines
            front.first += lines
            front.seq += lines
            front.text_bytes -= cut
            self.dropped += lines
            freed += cut
        self.bytes -= freed

    def _drop_block(self, block: Block) -> None:
        self.dropped += len(block)
        self.blocks[self.head] = None  # type: ignore[call-overload]
        self.head += 1

    def walk_from(self, cursor: int, by_seq: bool) -> Tuple[int, int]:
        """Where the first kept line whose key (index, or sequence number)
        is at least ``cursor`` is: (block position, line within it)."""
        key = (lambda b: b.seq) if by_seq else (lambda b: b.first)
        pos = bisect_right(self.blocks, cursor, lo=self.head, key=key) - 1
        if pos < self.head:
            return self.head, 0
        skip = cursor - key(self.blocks[pos])
        return (pos + 1, 0) if skip >= len(self.blocks[pos]) else (pos, skip)


@dataclass
class OutputLine:
    stream: str
    line: str
    timestamp: int


@dataclass
class Chunk:
    """The answer to one read: as the WIT ``output-chunk``."""

    lines: List[OutputLine]
    next_cursor: int
    dropped: int
    #: Lines after these were captured already (the WIT's ``more``).
    more: bool
    complete: bool


class Capture:
    """The captured output of one process: both streams, one cursor space."""

    def __init__(self, capture_bytes: int, max_line_bytes: int, stdout: bool, stderr: bool):
        self.capture_bytes = capture_bytes
        self.splitters = {s: LineSplitter(max_line_bytes) for s in STREAMS}
        self.tails = {s: Tail() for s in STREAMS}
        self.tails["stdout"].done = not stdout
        self.tails["stderr"].done = not stderr
        self.next_seq = 0
        self.exited = False

    def push(self, stream: str, data: bytes, timestamp: int) -> int:
        """Adds the bytes of one read; returns how many lines they completed."""
        return self._keep(stream, self.splitters[stream].push(data), timestamp)

    def finish(self, stream: str, timestamp: int) -> None:
        """End of file on ``stream``: keeps its partial last line."""
        self._keep(stream, self.splitters[stream].finish(), timestamp)
        self.tails[stream].done = True

    def set_exited(self) -> None:
        self.exited = True

    def streams_done(self) -> bool:
        return all(t.done for t in self.tails.values())

    def dropped(self, stream: str) -> int:
        return self.tails[stream].dropped

    def retained_bytes(self, stream: str) -> int:
        return self.tails[stream].bytes

    def _keep(self, stream: str, lines: List[str], timestamp: int) -> int:
        if lines:
            tail = self.tails[stream]
            tail.append(lines, self.next_seq, timestamp)
            self.next_seq += len(lines)
            tail.trim_to(self.capture_bytes)
        return len(lines)

    def read(self, selector: str, cursor: int, max_lines: int) -> Chunk:
        """At most ``max_lines`` lines of the selection at or after
        ``cursor``, oldest first (merged by sequence number).

        ``next_cursor`` is one past the last line returned while kept lines
        remain after it; when none remains it moves on to the next number
        that will be given out (never backwards), so a reader sees the lines
        it missed to the cap as a gap and keeps a fresh cursor."""
        names = list(STREAMS) if selector == "merged" else [selector]
        if any(n not in STREAMS for n in names):
            raise ValueError(f"unknown selector {selector!r}")
        merged = len(names) > 1
        at = {n: self.tails[n].walk_from(cursor, merged) for n in names}

        def head(name: str) -> Optional[Tuple[int, int]]:
            tail, (pos, line) = self.tails[name], at[name]
            if pos >= len(tail.blocks):
                return None
            block = tail.blocks[pos]
            return block.seq + line, block.first + line

        lines: List[OutputLine] = []
        last_key = None
        while len(lines) < max_lines:
            heads = [(h, n) for n in names if (h := head(n)) is not None]
            if not heads:
                break
            (seq, index), name = min(heads)
            pos, line = at[name]
            block = self.tails[name].blocks[pos]
            lines.append(OutputLine(name, block.lines[block.start + line], block.timestamp))
            at[name] = (pos + 1, 0) if line + 1 >= len(block) else (pos, line + 1)
            last_key = seq if merged else index
        more = any(head(n) is not None for n in names)
        next_key = self.next_seq if merged else self.tails[names[0]].emitted
        if last_key is not None:
            next_cursor = last_key + 1 if more else max(next_key, last_key + 1)
        else:
            next_cursor = cursor if more else max(cursor, next_key)
        return Chunk(
            lines=lines,
            next_cursor=next_cursor,
            dropped=sum(self.tails[n].dropped for n in names),
            more=more,
            complete=self.exited and self.streams_done() and not more,
        )
