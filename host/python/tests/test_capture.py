"""The capture rules, the Rust host's (host/src/capability/capture.rs)."""

from sandbox_process_host.capture import BLOCK_COST_BYTES, MAX_BLOCK_LINES, Capture, LineSplitter, char_boundary_cut


def lines_of(capture, selector="merged", cursor=0, n=10**9):
    return [l.line for l in capture.read(selector, cursor, n).lines]


def test_splitting():
    s = LineSplitter(16)
    assert s.push(b"a\nb\n\nc") == ["a", "b", ""]
    assert s.push(b"d") == []
    assert s.finish() == ["cd"]
    assert s.finish() == []
    assert LineSplitter().push(b"h\xc3\xa9 \xff!\n") == ["hé \ufffd!"]


def test_long_lines_are_cut_at_a_character_boundary():
    s = LineSplitter(4)
    assert s.push(b"abcd\n") == ["abcd"]  # exactly the limit, then its newline: one line
    assert s.push(b"abcdef\n") == ["abcd", "ef"]
    # "é" (2 bytes) would straddle the cut at 4: the piece stops before it.
    assert s.push("abcéf\n".encode()) == ["abc", "éf"]
    assert char_boundary_cut(b"ab\xe2\x9c") == 2
    assert char_boundary_cut(b"\xff\xff\xff\xff") == 4


def test_the_cap_counts_text_plus_one_a_line_and_a_block_a_read():
    c = Capture(capture_bytes=10_000, max_line_bytes=1000, stdout=True, stderr=True)
    c.push("stdout", b"abc\nde\n", 1)
    assert c.retained_bytes("stdout") == (3 + 1) + (2 + 1) + BLOCK_COST_BYTES
    c.push("stdout", b"x" * 500 + b"\n", 2)  # one line, one block
    c.push("stdout", b"\n".join([b"y"] * (MAX_BLOCK_LINES + 1)) + b"\n", 3)
    blocks = c.tails["stdout"].blocks[c.tails["stdout"].head :]
    assert [len(b) for b in blocks] == [2, 1, MAX_BLOCK_LINES, 1]


def test_past_the_cap_the_oldest_lines_of_that_stream_are_dropped_and_counted():
    c = Capture(capture_bytes=BLOCK_COST_BYTES + 20, max_line_bytes=100, stdout=True, stderr=True)
    c.push("stderr", b"keep\n", 1)
    for i in range(10):
        c.push("stdout", b"line%d\n" % i, 1)  # 6 bytes + 1, one block each
    assert lines_of(c, "stdout") == ["line9"]
    assert c.dropped("stdout") == 9 and c.dropped("stderr") == 0
    assert lines_of(c, "stderr") == ["keep"]
    assert c.retained_bytes("stdout") <= c.capture_bytes
    # Part of a block goes when that frees enough: 3 of 4 lines of 7 bytes.
    c = Capture(capture_bytes=BLOCK_COST_BYTES + 14, max_line_bytes=100, stdout=True, stderr=False)
    c.push("stdout", b"aaaaaa\nbbbbbb\ncccccc\ndddddd\n", 1)
    assert lines_of(c, "stdout") == ["cccccc", "dddddd"] and c.dropped("stdout") == 2


def test_cursors_count_lines_of_the_selection_and_skip_what_was_dropped():
    c = Capture(capture_bytes=1 << 20, max_line_bytes=100, stdout=True, stderr=True)
    c.push("stdout", b"o1\n", 1)
    c.push("stderr", b"e1\n", 2)
    c.push("stdout", b"o2\n", 3)
    chunk = c.read("merged", 0, 2)
    assert [l.line for l in chunk.lines] == ["o1", "e1"] and chunk.next_cursor == 2
    assert lines_of(c, "merged", chunk.next_cursor) == ["o2"]
    assert lines_of(c, "stdout", 1) == ["o2"]
    assert [l.stream for l in c.read("merged", 0, 9).lines] == ["stdout", "stderr", "stdout"]
    # Nothing more: the cursor moves to the next number given out, never back.
    assert c.read("stdout", 0, 9).next_cursor == 2
    assert c.read("stdout", 7, 9).next_cursor == 7
    small = Capture(capture_bytes=BLOCK_COST_BYTES + 3, max_line_bytes=100, stdout=True, stderr=False)
    for i in range(5):
        small.push("stdout", b"%d\n" % i, i)
    chunk = small.read("stdout", 0, 9)
    assert [l.line for l in chunk.lines] == ["4"] and chunk.next_cursor == 5 and chunk.dropped == 4


def test_complete_only_after_exit_end_of_file_and_reading_everything():
    c = Capture(capture_bytes=1 << 20, max_line_bytes=100, stdout=True, stderr=True)
    c.push("stdout", b"last", 1)
    c.finish("stdout", 2)
    assert not c.read("merged", 0, 9).complete
    c.finish("stderr", 2)
    c.set_exited()
    assert not c.read("merged", 0, 0).complete  # a line remains unread
    chunk = c.read("merged", 0, 9)
    assert [l.line for l in chunk.lines] == ["last"] and chunk.complete
    discarded = Capture(capture_bytes=1 << 20, max_line_bytes=100, stdout=False, stderr=False)
    discarded.set_exited()
    assert discarded.read("merged", 0, 9).complete
