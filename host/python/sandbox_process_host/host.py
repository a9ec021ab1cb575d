"""The guest's API as Python functions: each takes what arrived (a process
reference, a body as bytes or text) and returns the reply exactly as the
guest rendered it. An HTTP server in front of it would only route.

    from sandbox_process_host import Host

    with Host() as host:
        reply = host.start('{"command":"echo","args":["hi"]}')
        pid = json.loads(reply.body)["pid"]
        host.await_exit(pid)
        host.output(str(pid), "stdout").body   # {"pid":...,"lines":["hi"],"line_count":1}
"""

import json
import logging
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Union

from .capability import ProcessCapability
from .guest import Guest

log = logging.getLogger(__name__)

Body = Union[bytes, bytearray, memoryview, str]

#: How long one stream step may wait in the capability for output. The
#: capability blocks for real, so a stream costs no polling; the bound only
#: says how often a consumer that stopped reading is noticed.
STREAM_WAIT_MS = 1000

SELECTORS = ("stdout", "stderr", "merged")


@dataclass(frozen=True)
class Reply:
    """A complete reply: the HTTP status and the JSON body (empty for 204)."""

    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _bytes(body: Body) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError("a body is bytes or str")


def _reply(value: Any) -> Reply:
    return Reply(getattr(value, "status"), getattr(value, "body"))


def _internal(message: str) -> Reply:
    return Reply(500, json.dumps({"error": f"internal error: {message}", "code": "INTERNAL"}, separators=(",", ":")))


def _trapped(name: str) -> Reply:
    # A trap (a guest bug, or an exception in an import that has no error
    # case, which wasmtime-py re-raises as itself): this call fails, the
    # next gets a fresh instance, the processes live on in the capability.
    log.exception("guest call %s failed", name)
    return _internal(f"the guest trapped in {name}")


class Stream:
    """The frames of a follow or run stream: iterate for server-sent-event
    text, each item one or more complete frames; ends with the stream.
    ``close()`` (or leaving a ``with`` block) stops it early."""

    def __init__(self, host: "Host", position: Any, first: str):
        self._host = host
        self._position = position
        self._first = first
        self._done = False

    def __iter__(self) -> Iterator[str]:
        if self._first:
            yield self._first
        while not self._done:
            try:
                step = self._host._guest.call("stream-next", self._position, STREAM_WAIT_MS)
            except Exception:  # noqa: BLE001
                log.exception("stream step failed")
                error = {"error": "internal error: the guest trapped", "code": "INTERNAL"}
                yield f"event: error\ndata: {json.dumps(error, separators=(',', ':'))}\n\n"
                return
            self._position = getattr(step, "position")
            frames = getattr(step, "frames")
            self._done = getattr(step, "done")
            if frames:
                yield frames

    def close(self) -> None:
        self._done = True

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Host:
    """The guest over a process capability (a new ProcessCapability made
    with ``capability_options`` unless one is given)."""

    def __init__(self, capability: Optional[ProcessCapability] = None, wasm=None, **capability_options: Any):
        self.capability = capability or ProcessCapability(**capability_options)
        self._guest = Guest(self.capability, wasm)

    # ---- the exported API, one function per endpoint -----------------------

    def start(self, body: Body) -> Reply:
        return self._call("start", _bytes(body))

    def list(self) -> Reply:
        return self._call("list")

    def get(self, ref: str) -> Reply:
        return self._call("get", str(ref))

    def kill(self, ref: str) -> Reply:
        return self._call("kill", str(ref))

    def signal(self, ref: str, body: Body) -> Reply:
        return self._call("signal", str(ref), _bytes(body))

    def write_stdin(self, ref: str, data: Body) -> Reply:
        return self._call("write-stdin", str(ref), _bytes(data))

    def close_stdin(self, ref: str) -> Reply:
        return self._call("close-stdin", str(ref))

    def output(self, ref: str, selector: str) -> Reply:
        """``selector``: ``stdout``, ``stderr`` or ``merged``."""
        if selector not in SELECTORS:
            raise ValueError(f"selector {selector!r} is not one of {SELECTORS}")
        return self._call("output", str(ref), selector)

    def health(self) -> Reply:
        return self._call("health")

    def info(self) -> Reply:
        return self._call("info")

    def validate(self, body: Body) -> Reply:
        return self._call("validate", _bytes(body))

    def follow(self, ref: str, selector: str) -> Union[Reply, Stream]:
        """The refusal as a Reply, or the follow stream."""
        if selector not in SELECTORS:
            raise ValueError(f"selector {selector!r} is not one of {SELECTORS}")
        opened = self._open("follow-open", str(ref), selector)
        return opened if isinstance(opened, Reply) else Stream(self, opened, "")

    def run(self, body: Body) -> Union[Reply, Stream]:
        """The refusal as a Reply, or the run stream (its first frames
        carry the start)."""
        opened = self._open("run-open", _bytes(body))
        if isinstance(opened, Reply):
            return opened
        return Stream(self, getattr(opened, "position"), getattr(opened, "frames"))

    # ---- native helpers ----------------------------------------------------

    def await_exit(self, pid: int, timeout: float = 10.0) -> bool:
        """True once ``pid`` has ended and its output is complete."""
        return self.capability.await_exit(int(pid), timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """SIGKILL to every live group; waits (bounded) for them to end."""
        self.capability.shutdown(timeout)

    def __enter__(self) -> "Host":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # ---- internals ----------------------------------------------------------

    def _call(self, name: str, *args: Any) -> Reply:
        try:
            return _reply(self._guest.call(name, *args))
        except Exception:  # noqa: BLE001
            return _trapped(name)

    def _open(self, name: str, *args: Any) -> Any:
        try:
            result = self._guest.call(name, *args)
        except Exception:  # noqa: BLE001
            return _trapped(name)
        # result<T, reply> with two record cases comes back tagged.
        if result.tag == "err":
            return _reply(result.payload)
        return result.payload


__all__ = ["Host", "Reply", "Stream"]
