"""The guest over wasmtime-py: streams that wait in the capability, calls
from several threads at once, and failures that cost one call only."""

import json
import threading
import time

from sandbox_process_host import Host, ProcessCapability, Reply, Stream


def frames_of(stream):
    return "".join(stream)


def test_follow_streams_lines_as_they_come_and_ends_after_the_exit(host):
    pid = host.start('{"command":"sh","args":["-c","echo one; sleep 0.3; echo two >&2"]}').json()["pid"]
    stream = host.follow(str(pid), "merged")
    assert isinstance(stream, Stream)
    events = [f for f in frames_of(stream).split("\n\n") if f]
    assert events[0].startswith("event: output\ndata: ") and '"line":"one"' in events[0]
    assert '"line":"two"' in events[1] and '"stream":"stderr"' in events[1]
    assert events[-1] == "event: eof\ndata: {}"


def test_follow_of_an_unknown_process_is_the_error_reply(host):
    reply = host.follow("2147483647", "stdout")
    assert isinstance(reply, Reply) and reply.status == 404 and reply.json()["code"] == "NOT_FOUND"
    assert host.follow("042", "stdout").status == 400


def test_run_reports_the_exit_and_kills_at_the_timeout(host):
    text = frames_of(host.run('{"command":"sh","args":["-c","echo out; exit 3"]}'))
    datas = [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]
    assert set(datas[0]) == {"pid", "started_at"}
    assert datas[1]["line"] == "out"
    assert datas[-1] == {"exit_code": 3, "signal": None, "reason": "exited"}
    began = time.monotonic()
    text = frames_of(host.run('{"command":"sleep","args":["100"],"timeout":0.5}'))
    assert '"reason":"timed_out"' in text
    assert time.monotonic() - began < 5
    refused = host.run('{"command":"ls","timeout":0}')
    assert isinstance(refused, Reply) and refused.status == 400


def test_a_call_blocked_in_the_capability_does_not_hold_up_others(host):
    pid = host.start('{"command":"sleep","args":["100"]}').json()["pid"]
    stream = host.follow(str(pid), "stdout")
    position = stream._position
    returned = {}

    def blocked_step():
        # Asks the guest to wait up to 20 s for output: only the exit wakes it.
        host._guest.call("stream-next", position, 20_000)
        returned["at"] = time.monotonic()

    waiter = threading.Thread(target=blocked_step)
    waiter.start()
    time.sleep(0.3)
    began = time.monotonic()
    assert host.health().status == 200 and host.get(str(pid)).status == 200
    assert time.monotonic() - began < 2
    assert "at" not in returned  # still waiting, for real
    killed_at = time.monotonic()
    assert host.kill(str(pid)).status == 204
    waiter.join(10)
    assert returned["at"] - killed_at < 5  # woken by the exit, not the 20 s


class Faulty(ProcessCapability):
    def get(self, pid):
        raise RuntimeError("a bug in the capability")

    def list(self):
        raise RuntimeError("list has no error case: this traps the guest")


def test_a_capability_bug_is_a_500_and_a_trap_costs_one_call():
    with Host(Faulty()) as host:
        reply = host.get("12")
        assert reply.status == 500 and reply.json()["code"] == "INTERNAL"
        assert "a bug in the capability" in reply.json()["error"]
        trapped = host.list()
        assert trapped.status == 500 and trapped.json()["code"] == "INTERNAL"
        assert host.health().status == 200  # a fresh instance
