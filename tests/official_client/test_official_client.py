"""The official Python client (tensorlake.sandbox.Sandbox) against this server.

docs/API.md follows what the official client sends and accepts: these tests
are what "compatible" means in practice.
"""

import os
import time

import pytest
from tensorlake.sandbox.models import OutputMode, ProcessStatus, StdinMode


def value(traced):
    # The client wraps replies with a trace id.
    return getattr(traced, "value", traced)


def wait_ended(sandbox, pid):
    for _ in range(500):
        info = value(sandbox.get_process(pid))
        if info.status != ProcessStatus.RUNNING:
            return info
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not end")


def wait_lines(read, count):
    # Output is complete a moment after the exit, once the pipes drain.
    for _ in range(500):
        reply = value(read())
        if reply.line_count >= count:
            return reply
        time.sleep(0.01)
    return value(read())


def test_health_and_info(sandbox):
    assert value(sandbox.health()).healthy is True
    info = value(sandbox.daemon_info())
    assert info.version and info.uptime_secs >= 0


def test_start_get_list_and_output(sandbox):
    started = value(sandbox.start_process("echo", args=["hello", "client"]))
    assert started.command == "echo" and started.args == ["hello", "client"]
    ended = wait_ended(sandbox, started.pid)
    assert ended.status == ProcessStatus.EXITED and ended.exit_code == 0 and ended.ended_at is not None
    assert started.pid in [p.pid for p in sandbox.list_processes()]
    stdout = wait_lines(lambda: sandbox.get_stdout(started.pid), 1)
    assert stdout.lines == ["hello client"] and stdout.line_count == 1
    assert value(sandbox.get_stderr(started.pid)).lines == []


def test_stdin_round_trip_and_follow(sandbox):
    cat = value(sandbox.start_process("cat", stdin_mode=StdinMode.PIPE))
    assert cat.stdin_writable is True
    sandbox.write_stdin(cat.pid, b"one\ntwo\n")
    sandbox.close_stdin(cat.pid)
    events = list(sandbox.follow_output(cat.pid))
    assert [e.line for e in events] == ["one", "two"]
    assert all(e.stream == "stdout" for e in events)
    assert wait_ended(sandbox, cat.pid).exit_code == 0


def test_repeated_stdin_close_and_kill_succeed(sandbox):
    # What the client's retries after a broken connection would send.
    cat = value(sandbox.start_process("cat", stdin_mode=StdinMode.PIPE))
    sandbox.close_stdin(cat.pid)
    sandbox.close_stdin(cat.pid)
    assert wait_ended(sandbox, cat.pid).exit_code == 0
    sandbox.close_stdin(cat.pid)
    sandbox.kill_process(cat.pid)
    sandbox.kill_process(cat.pid)


def test_discarded_output(sandbox):
    p = value(sandbox.start_process("echo", args=["gone"], stdout_mode=OutputMode.DISCARD))
    wait_ended(sandbox, p.pid)
    assert value(sandbox.get_stdout(p.pid)).lines == []


def test_signal_and_kill(sandbox):
    sleeper = value(sandbox.start_process("sleep", args=["30"]))
    assert value(sandbox.send_signal(sleeper.pid, 15)).success is True
    info = wait_ended(sandbox, sleeper.pid)
    assert info.status == ProcessStatus.SIGNALED and info.signal == 15 and info.exit_code is None
    other = value(sandbox.start_process("sh", args=["-c", "sleep 30 & sleep 30"]))
    sandbox.kill_process(other.pid)
    assert wait_ended(sandbox, other.pid).signal == 9


def test_run_with_both_streams_and_a_timeout(sandbox):
    result = value(sandbox.run("sh", args=["-c", "echo out; echo err >&2; exit 3"]))
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out", "err")
    assert result.reason.value == "exited"
    timed = value(sandbox.run("sleep", args=["30"], timeout=0.5))
    assert timed.reason.value == "timed_out" and timed.exit_code == -9


def test_run_returns_every_line_of_a_big_output_in_order(sandbox):
    # A run stream is its process's one consumer: the child waits for the
    # client rather than lose lines (before, 166,594 of these arrived).
    result = value(sandbox.run("seq", args=["1", "2000000"]))
    assert result.exit_code == 0
    lines = result.stdout.split("\n")
    assert len(lines) == 2_000_000
    assert lines == [str(i) for i in range(1, 2_000_001)]


def test_run_returns_both_big_streams_whole(sandbox):
    # 100,000 lines of 80 bytes on each stream: twice the capture cap each.
    script = "seq -f '%079g' 1 100000; seq -f '%079g' 1 100000 >&2"
    result = value(sandbox.run("sh", args=["-c", script]))
    want = [f"{i:079d}" for i in range(1, 100_001)]
    assert result.exit_code == 0
    assert result.stdout.split("\n") == want
    assert result.stderr.split("\n") == want


def test_errors_reach_the_client_with_their_status(sandbox):
    with pytest.raises(Exception) as refused:
        sandbox.start_process("")
    assert "400" in str(refused.value) and "command" in str(refused.value)
    with pytest.raises(Exception) as missing:
        sandbox.get_process(999999999)
    assert "404" in str(missing.value) or "not found" in str(missing.value).lower()
    with pytest.raises(Exception) as managed:
        sandbox.start_process("ls", name="web")
    assert "name" in str(managed.value)


def test_a_real_time_signal_is_reported(sandbox):
    sleeper = value(sandbox.start_process("sleep", args=["30"]))
    assert value(sandbox.send_signal(sleeper.pid, 40)).success is True
    info = wait_ended(sandbox, sleeper.pid)
    assert (info.status, info.signal, info.exit_code) == (ProcessStatus.SIGNALED, 40, None)


def gone(pid):
    # Killed, then reaped by whoever inherited it (or a zombie until then).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_kill_reaches_a_descendant_that_left_the_group(sandbox):
    shell = value(sandbox.start_process("sh", args=["-c", "setsid sleep 300 & echo $!; wait"]))
    escaped = int(wait_lines(lambda: sandbox.get_stdout(shell.pid), 1).lines[0])
    # $! is known before the background child has called setsid: wait for it.
    for _ in range(500):
        if os.getpgid(escaped) != shell.pid:
            break
        time.sleep(0.01)
    assert os.getpgid(escaped) != shell.pid, "setsid left the process group"
    sandbox.kill_process(shell.pid)
    wait_ended(sandbox, shell.pid)
    for _ in range(500):
        if gone(escaped):
            break
        time.sleep(0.01)
    else:
        os.kill(escaped, 9)
        raise AssertionError(f"process {escaped}, which left the group with setsid, survived the kill")


def test_every_skip_names_a_test():
    from conftest import SKIPS

    assert {name for _, name in SKIPS} <= {name for name in globals() if name.startswith("test_")}
