"""One process the capability knows: what was asked, what became of it, its
captured output and stdin, and the condition its waiters sleep on.

Waiters (``read-output`` with a wait, ``wait``) never poll: every change
(new lines, end of file, exit) is made under the process's condition and
notifies it, and a waiter looks at the state under that same condition
before it sleeps, so no change can slip in between.
"""

import os
import select
import signal as signals
import threading
import time
from dataclasses import dataclass
from typing import List, Optional

from .capture import Capture
from .errors import ProcessError, stdin_refused


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class End:
    """How a process ended, as the API reports it."""

    status: str  # "exited" or "signaled"
    exit_code: Optional[int]
    signal: Optional[int]
    ended_at: int

    @classmethod
    def from_returncode(cls, returncode: int, ended_at: int) -> "End":
        # subprocess reports death by signal N as -N.
        if returncode < 0:
            return cls("signaled", None, -returncode, ended_at)
        return cls("exited", returncode, None, ended_at)


@dataclass
class ProcessInfo:
    """The process-info object (WIT ``process-info``)."""

    pid: int
    status: str
    stdin_writable: bool
    command: str
    args: List[str]
    started_at: int
    exit_code: Optional[int]
    signal: Optional[int]
    ended_at: Optional[int]


def group_id(pid: int) -> Optional[int]:
    """The group id led by ``pid``, or None for an id whose ``killpg`` would
    reach beyond that group (0, 1, our own group)."""
    if pid <= 1 or pid == os.getpgrp():
        return None
    return pid


def signal_group(pid: int, sig: int) -> None:
    """``sig`` to the group led by ``pid``; ProcessLookupError when it has
    no member (or is an id never to signal)."""
    gid = group_id(pid)
    if gid is None:
        raise ProcessLookupError(pid)
    os.killpg(gid, sig)


def group_may_exist(pid: int) -> bool:
    """False once the kernel says the group has no member (a zombie member
    still counts: it holds the id)."""
    try:
        signal_group(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except OSError:
        return True


class Stdin:
    """The child's stdin pipe: writes bounded in time, serialized, and a close
    that wakes a write blocked on a child that does not read."""

    def __init__(self, fd: Optional[int]):
        self._lock = threading.Lock()
        self._writer = threading.Lock()
        self._fd = fd
        self._was_pipe = fd is not None
        self._open = fd is not None
        self._writing = False
        # Wakes a blocked writer when the pipe is closed under it.
        self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK) if fd is not None else None
        if fd is not None:
            os.set_blocking(fd, False)

    def writable(self) -> bool:
        with self._lock:
            return self._open

    def close(self) -> bool:
        """Closes the pipe. A pipe closed already is success too (a client
        that retries a close whose answer it lost must not get an error);
        False only if stdin never was a pipe."""
        with self._lock:
            if not self._was_pipe:
                return False
            if not self._open:
                return True
            self._open = False
            if self._writing:
                os.eventfd_write(self._wake, 1)  # the writer closes the fds
            else:
                self._release()
        return True

    def write(self, pid: int, data: bytes, timeout: float) -> None:
        """Writes all of ``data``, waiting at most ``timeout`` seconds for
        earlier writers and for the child to read."""
        deadline = time.monotonic() + timeout
        too_slow = ProcessError("limit-exceeded", f"child did not read stdin within {timeout:g}s")
        if not self._writer.acquire(timeout=max(0.0, timeout)):
            raise too_slow
        try:
            with self._lock:
                if not self._open:
                    raise stdin_refused(pid, "closed" if self._was_pipe else "not-a-pipe")
                self._writing = True
            try:
                self._write_all(pid, memoryview(data), deadline, too_slow)
            finally:
                with self._lock:
                    self._writing = False
                    if not self._open:
                        self._release()
        finally:
            self._writer.release()

    def _write_all(self, pid: int, view: memoryview, deadline: float, too_slow: ProcessError) -> None:
        fd, wake = self._fd, self._wake
        poller = select.poll()
        poller.register(wake, select.POLLIN)
        poller.register(fd, select.POLLOUT)
        while view:
            if not self.writable():
                raise stdin_refused(pid, "closed")
            try:
                view = view[os.write(fd, view) :]
                continue
            except BlockingIOError:
                pass
            except BrokenPipeError:
                # The child closed its end: nothing can ever be written.
                with self._lock:
                    self._open = False
                raise stdin_refused(pid, "closed") from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise too_slow
            poller.poll(max(1, int(left * 1000)))

    def _release(self) -> None:
        for fd in (self._fd, self._wake):
            if fd is not None:
                os.close(fd)
        self._fd = self._wake = None


class Proc:
    """One started process. ``cond`` guards ``end``, ``capture`` and
    ``group_alive``, and is notified at every change of them."""

    def __init__(self, pid, order, command, args, started_at, stdin: Stdin, capture: Capture):
        self.pid = pid
        self.order = order
        self.command = command
        self.args = list(args)
        self.started_at = started_at
        self.stdin = stdin
        self.capture = capture
        self.cond = threading.Condition()
        self.end: Optional[End] = None
        # False once the kernel said the group is empty: from then on its id
        # may be someone else's and is never signalled again.
        self.group_alive = True
        self.popen = None

    def info(self) -> ProcessInfo:
        with self.cond:
            end = self.end
        return ProcessInfo(
            pid=self.pid,
            status=end.status if end else "running",
            stdin_writable=self.stdin.writable(),
            command=self.command,
            args=list(self.args),
            started_at=self.started_at,
            exit_code=end.exit_code if end else None,
            signal=end.signal if end else None,
            ended_at=end.ended_at if end else None,
        )

    def finished(self) -> bool:
        """Reaped, and every captured pipe at end of file."""
        with self.cond:
            return self.end is not None and self.capture.streams_done()

    def push_output(self, stream: str, data: bytes) -> None:
        with self.cond:
            if self.capture.push(stream, data, now_ms()):
                self.cond.notify_all()

    def finish_output(self, stream: str) -> None:
        with self.cond:
            self.capture.finish(stream, now_ms())
            self.cond.notify_all()

    def set_ended(self, end: End) -> None:
        """Records the reaped child's end. Stdin is closed: nobody is left to
        read it but stray members of the group, which should see end of file."""
        with self.cond:
            self.end = end
            self.capture.set_exited()
            self.group_alive = group_may_exist(self.pid)
            self.cond.notify_all()
        self.stdin.close()

    def kill_group(self) -> bool:
        """SIGKILL to the group while the leader runs, or after its end while
        members may remain; returns whether the group may still have some."""
        with self.cond:
            if self.end is None or self.group_alive:
                try:
                    signal_group(self.pid, signals.SIGKILL)
                    alive = True
                except ProcessLookupError:
                    alive = False
                except OSError:
                    alive = True
                # A failed kill can't make a running leader's group empty.
                self.group_alive = alive or self.end is None
            return self.group_alive

    def group_may_remain(self) -> bool:
        with self.cond:
            if self.end is not None and self.group_alive:
                self.group_alive = group_may_exist(self.pid)
            return self.group_alive
