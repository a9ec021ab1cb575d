"""The capability on real processes: waits that block until something
happens (and wake when it does), process groups, stdin that a child does
not read, limits, retention, reaping and shutdown. Time bounds are
generous: only a real failure (a missed wake-up, a poll) exceeds them."""

import os
import resource
import threading
import time

import pytest

from sandbox_process_host import ProcessCapability, ProcessError, StartRequest


def req(command, *args, stdin="closed", stdout="capture", stderr="capture", env=()):
    return StartRequest(command, list(args), list(env), None, stdin, stdout, stderr)


@pytest.fixture()
def cap():
    c = ProcessCapability()
    yield c
    c.shutdown()


def test_read_output_sleeps_until_a_line_comes(cap):
    pid = cap.start(req("sh", "-c", "sleep 0.3; echo late")).pid
    began = time.monotonic()
    chunk = cap.read_output(pid, "stdout", 0, 10, 10_000)
    waited = time.monotonic() - began
    assert [l.line for l in chunk.lines] == ["late"]
    assert 0.2 <= waited < 5, waited  # woken by the line, not by the 10 s bound


def test_read_output_returns_empty_at_its_deadline_and_at_once_without_a_wait(cap):
    pid = cap.start(req("sleep", "100")).pid
    began = time.monotonic()
    chunk = cap.read_output(pid, "merged", 0, 10, 300)
    assert chunk.lines == [] and not chunk.complete
    assert 0.25 <= time.monotonic() - began < 5
    began = time.monotonic()
    assert cap.read_output(pid, "merged", 0, 10, 0).lines == []
    assert time.monotonic() - began < 0.2


def test_wait_sleeps_until_the_exit(cap):
    pid = cap.start(req("sh", "-c", "sleep 0.3; exit 4")).pid
    assert cap.wait(pid, 0).status == "running"
    info = cap.wait(pid, 10_000)
    assert (info.status, info.exit_code) == ("exited", 4)


def test_kill_reaches_every_member_of_the_group(cap):
    pid = cap.start(req("sh", "-c", "sleep 100 & echo $!; wait")).pid
    grandchild = int(cap.read_output(pid, "stdout", 0, 1, 10_000).lines[0].line)
    cap.kill(pid)
    assert cap.await_exit(pid, 10)
    assert cap.get(pid).signal == 9
    # The grandchild was killed too (then reaped by whoever inherited it).
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{grandchild}") and time.monotonic() < deadline:
        with open(f"/proc/{grandchild}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                break
        time.sleep(0.01)
    else:
        assert not os.path.exists(f"/proc/{grandchild}"), "the grandchild survived the kill"


def test_a_write_to_a_child_that_does_not_read_times_out():
    cap = ProcessCapability(stdin_write_timeout=0.5)
    try:
        pid = cap.start(req("sleep", "100", stdin="pipe")).pid
        began = time.monotonic()
        with pytest.raises(ProcessError) as refused:
            cap.write_stdin(pid, b"x" * (4 << 20))  # more than a pipe holds
        assert refused.value.tag == "limit-exceeded"
        assert 0.4 <= time.monotonic() - began < 5
    finally:
        cap.shutdown()


def test_close_wakes_a_blocked_write(cap):
    pid = cap.start(req("sleep", "100", stdin="pipe")).pid
    outcome = {}

    def write():
        try:
            cap.write_stdin(pid, b"x" * (4 << 20))
        except ProcessError as e:
            outcome["tag"] = e.tag
        outcome["at"] = time.monotonic()

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.3)
    closed_at = time.monotonic()
    cap.close_stdin(pid)
    writer.join(5)
    assert outcome["tag"] == "stdin-not-writable"
    assert outcome["at"] - closed_at < 2  # the default timeout is 10 s
    assert not cap.get(pid).stdin_writable


def test_limits_and_retention():
    cap = ProcessCapability(max_processes=1, max_retained_exited=2)
    try:
        first = cap.start(req("sleep", "100")).pid
        with pytest.raises(ProcessError) as refused:
            cap.start(req("true"))
        assert refused.value.tag == "limit-exceeded"
        cap.kill(first)
        assert cap.await_exit(first, 10)
        later = []
        for _ in range(2):
            pid = cap.start(req("true")).pid
            assert cap.await_exit(pid, 10)
            later.append(pid)
        with pytest.raises(ProcessError) as gone:
            cap.get(first)  # the oldest ended one was forgotten
        assert gone.value.tag == "not-found"
        assert [p.pid for p in cap.list()] == later
    finally:
        cap.shutdown()


def zombies_of_this_process():
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == os.getpid():
                found.append(int(entry))
    return found


def test_every_child_is_reaped_and_shutdown_ends_the_rest():
    cap = ProcessCapability()
    pids = [cap.start(req("sh", "-c", f"exit {i}")).pid for i in range(20)]
    running = [cap.start(req("sleep", "100")).pid for _ in range(3)]
    for i, pid in enumerate(pids):
        assert cap.await_exit(pid, 10)
        assert cap.get(pid).exit_code == i
    assert zombies_of_this_process() == []
    cap.shutdown()
    for pid in running:
        info = cap.get(pid)
        assert (info.status, info.signal) == ("signaled", 9)
    assert zombies_of_this_process() == []
    with pytest.raises(ProcessError) as refused:
        cap.start(req("true"))
    assert refused.value.tag == "internal"


def test_signals_are_checked_and_reach_the_group(cap):
    pid = cap.start(req("sleep", "100")).pid
    for bad in (0, 65, -1):
        with pytest.raises(ProcessError) as refused:
            cap.signal(pid, bad)
        assert refused.value.tag == "invalid-signal"
    cap.signal(pid, 15)
    assert cap.wait(pid, 10_000).signal == 15
    with pytest.raises(ProcessError) as ended:
        cap.signal(pid, 15)
    assert ended.value.tag == "not-running"


def test_stdin_refusals_say_why_and_a_repeated_close_succeeds(cap):
    piped = cap.start(req("sleep", "100", stdin="pipe")).pid
    cap.close_stdin(piped)
    cap.close_stdin(piped)  # a retried close must not fail
    with pytest.raises(ProcessError) as closed:
        cap.write_stdin(piped, b"late")
    assert (closed.value.tag, closed.value.value.pid, closed.value.value.state) == ("stdin-not-writable", piped, "closed")
    plain = cap.start(req("sleep", "100")).pid
    for call in (lambda: cap.write_stdin(plain, b"x"), lambda: cap.close_stdin(plain)):
        with pytest.raises(ProcessError) as refused:
            call()
        assert (refused.value.tag, refused.value.value.state) == ("stdin-not-writable", "not-a-pipe")


def test_a_start_short_of_file_descriptors_is_limit_exceeded(cap):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 1, hard))
    try:
        with pytest.raises(ProcessError) as full:
            cap.start(req("true", stdin="pipe"))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert full.value.tag == "limit-exceeded"
    assert "RLIMIT_NOFILE" in full.value.value
    assert cap.list() == [] or all(p.command != "true" for p in cap.list())
    assert cap.summary()["running_processes"] == 0
