"""The ``sandbox:process/process`` capability in Python, on ``subprocess``
and ``os``: what the guest component imports to start and manage processes
(wit/process.wit).

Unlike the Node host, waits are real: the wasmtime C API releases the GIL
while the guest runs and a host function may block, so ``read_output`` and
``wait`` sleep on the process's condition until a line, an exit or their
deadline, while the watcher thread reads the pipes and reaps.

Locking: the table lock may be taken first and a process's condition
inside it, never the other way round.
"""

import atexit
import os
import signal as signals
import threading
import time
import weakref
from collections import deque
from typing import Callable, Dict, List, Optional

from .capture import DEFAULT_CAPTURE_BYTES, DEFAULT_MAX_LINE_BYTES, Capture, Chunk
from .environment import default_base_env
from .errors import ProcessError, stdin_refused
from .process import End, Proc, ProcessInfo, Stdin, now_ms, signal_group
from .spawn import StartRequest, launch, prepare
from .watcher import Watcher, read_chunk

#: The version ``summary`` reports.
VERSION = "0.1.0"
#: The highest signal number delivered (Linux's SIGRTMAX).
MAX_SIGNAL = 64
#: The longest wait honoured, in milliseconds (a u32 from the guest).
MAX_WAIT_MS = 2**32 - 1

_live_capabilities: "weakref.WeakSet[ProcessCapability]" = weakref.WeakSet()


@atexit.register
def _kill_at_exit() -> None:
    # An interpreter that exits normally leaves no child running.
    for capability in list(_live_capabilities):
        capability.kill_all()


class ProcessCapability:
    """One host's processes: every process it started, running or ended,
    by pid in start order, and the WIT functions on them (snake_case)."""

    def __init__(
        self,
        base_env: Optional[Dict[str, str]] = None,
        default_working_dir: Optional[str] = None,
        capture_bytes: int = DEFAULT_CAPTURE_BYTES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_processes: int = 1024,
        max_retained_exited: int = 1024,
        stdin_write_timeout: float = 10.0,
        policy: Optional[Callable[[StartRequest], Optional[str]]] = None,
    ):
        self.base_env = dict(base_env) if base_env is not None else default_base_env()
        self.default_working_dir = default_working_dir or os.getcwd()
        self.capture_bytes = capture_bytes
        self.max_line_bytes = max_line_bytes
        self.max_processes = max_processes
        self.max_retained_exited = max_retained_exited
        self.stdin_write_timeout = stdin_write_timeout
        self.policy = policy
        self._lock = threading.Lock()
        self._procs: Dict[int, Proc] = {}
        self._ended: "deque[Proc]" = deque()
        # Groups whose leader was forgotten while members may remain:
        # still killed at shutdown, so nothing is orphaned.
        self._lingering: List[int] = []
        self._live = 0
        self._total = 0
        self._order = 0
        self._closing = False
        self._born = time.monotonic()
        self._watcher: Optional[Watcher] = None
        _live_capabilities.add(self)

    # ---- the WIT functions -------------------------------------------------

    def start(self, req: StartRequest) -> ProcessInfo:
        """Checks the request, then starts it in a process group of its own
        and captures its output."""
        prepared = prepare(req, self.base_env, self.default_working_dir)
        denial = self.policy(req) if self.policy else None
        if denial:
            raise ProcessError("denied", denial)
        order = self._reserve()
        try:
            launched = launch(req, prepared)
        except BaseException:
            with self._lock:
                self._live -= 1
            raise
        pid = launched.popen.pid
        capture = Capture(self.capture_bytes, self.max_line_bytes, launched.stdout is not None, launched.stderr is not None)
        proc = Proc(pid, order, req.command, req.args, now_ms(), Stdin(launched.stdin), capture)
        proc.popen = launched.popen
        # The reply describes the process as started, taken before the
        # watcher can record an exit.
        info = proc.info()
        with self._lock:
            registered = not self._closing
            self._total += 1
            old = self._procs.pop(pid, None)  # the OS reused a retained pid: newest wins
            if old is not None and old in self._ended:
                self._ended.remove(old)
            self._procs[pid] = proc
        self._watch(proc, launched.stdout, launched.stderr)
        if not registered:
            proc.kill_group()  # a shutdown began while we spawned
            raise ProcessError("internal", "the host is shutting down")
        return info

    def get(self, pid: int) -> ProcessInfo:
        return self._find(pid).info()

    def list(self) -> List[ProcessInfo]:
        with self._lock:
            procs = sorted(self._procs.values(), key=lambda p: p.order)
        return [p.info() for p in procs]

    def signal(self, pid: int, sig: int) -> None:
        """``sig`` (1 to 64) to the process group; ``not-running`` once the
        process has been reaped."""
        if not 1 <= sig <= MAX_SIGNAL:
            raise ProcessError("invalid-signal", sig)
        proc = self._find(pid)
        # Under the condition, so the watcher can't reap (and the pid be
        # reused) between the check and the signal.
        with proc.cond:
            if proc.end is not None:
                raise ProcessError("not-running", pid)
            try:
                signal_group(pid, sig)
            except ProcessLookupError:
                raise ProcessError("not-running", pid) from None
            except OSError as e:
                if e.errno == 22:  # EINVAL: the kernel knows no such signal
                    raise ProcessError("invalid-signal", sig) from None
                raise ProcessError("internal", f"signal {sig} to group {pid}: {os.strerror(e.errno)}") from None

    def kill(self, pid: int) -> None:
        """SIGKILL to the process group; on an ended process, to what it
        left behind in its group (so its output can complete)."""
        self._find(pid).kill_group()

    def write_stdin(self, pid: int, data: bytes) -> None:
        self._find(pid).stdin.write(pid, bytes(data), self.stdin_write_timeout)

    def close_stdin(self, pid: int) -> None:
        """Closes the stdin pipe; one closed already is success (a retried
        close must not fail); ``stdin-not-writable`` if it never was a pipe."""
        if not self._find(pid).stdin.close():
            raise stdin_refused(pid, "not-a-pipe")

    def read_output(self, pid: int, selector: str, cursor: int, max_lines: int, wait_ms: int) -> Chunk:
        """At most ``max_lines`` captured lines after ``cursor``; when there
        is none and the output is not complete, sleeps up to ``wait_ms``
        for one."""
        proc = self._find(pid)
        deadline = time.monotonic() + min(wait_ms, MAX_WAIT_MS) / 1000
        with proc.cond:
            while True:
                chunk = proc.capture.read(selector, cursor, max_lines)
                left = deadline - time.monotonic()
                if chunk.lines or chunk.complete or max_lines == 0 or wait_ms == 0 or left <= 0:
                    return chunk
                proc.cond.wait(left)

    def wait(self, pid: int, timeout_ms: int) -> ProcessInfo:
        """Sleeps up to ``timeout_ms`` for the process to end; its state."""
        proc = self._find(pid)
        with proc.cond:
            proc.cond.wait_for(lambda: proc.end is not None, min(timeout_ms, MAX_WAIT_MS) / 1000)
        return proc.info()

    def summary(self) -> dict:
        with self._lock:
            return {
                "version": VERSION,
                "uptime_secs": int(time.monotonic() - self._born),
                "running_processes": self._live,
                "total_processes": self._total,
            }

    def now_ms(self) -> int:
        return now_ms()

    # ---- for Python callers (not in the WIT interface) ---------------------

    def await_exit(self, pid: int, timeout: float) -> bool:
        """True once ``pid`` has ended and its output is complete (pipes
        drained), False if ``timeout`` seconds pass first."""
        proc = self._find(pid)
        with proc.cond:
            return proc.cond.wait_for(
                lambda: proc.end is not None and proc.capture.streams_done(), max(0.0, timeout)
            )

    def kill_all(self) -> None:
        """SIGKILL to every group that may have members."""
        with self._lock:
            procs, lingering = list(self._procs.values()), list(self._lingering)
        for proc in procs:
            proc.kill_group()
        for pgid in lingering:
            try:
                signal_group(pgid, signals.SIGKILL)
            except OSError:
                pass

    def shutdown(self, timeout: float = 5.0) -> None:
        """Refuses further starts, kills every group, waits (at most
        ``timeout``) until every child is reaped and its pipes drained, then
        stops the watcher thread."""
        with self._lock:
            self._closing = True
        self.kill_all()
        deadline = time.monotonic() + timeout
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            with proc.cond:
                proc.cond.wait_for(
                    lambda: proc.end is not None and proc.capture.streams_done(),
                    max(0.0, deadline - time.monotonic()),
                )
        if self._watcher is not None:
            self._watcher.stop()
        _live_capabilities.discard(self)

    # ---- internals -----------------------------------------------------------

    def _find(self, pid: int) -> Proc:
        with self._lock:
            proc = self._procs.get(pid)
        if proc is None:
            raise ProcessError("not-found", pid)
        return proc

    def _reserve(self) -> int:
        with self._lock:
            if self._closing:
                raise ProcessError("internal", "the host is shutting down")
            if self._live >= self.max_processes:
                raise ProcessError(
                    "limit-exceeded", f"{self._live} processes are running: the host's limit is {self.max_processes}"
                )
            self._live += 1
            self._order += 1
            if self._watcher is None:
                self._watcher = Watcher()
            return self._order

    def _watch(self, proc: Proc, stdout: Optional[int], stderr: Optional[int]) -> None:
        watcher = self._watcher
        assert watcher is not None
        pending = [fd for fd in (stdout, stderr) if fd is not None]
        try:
            self._watch_with(watcher, proc, stdout, stderr, pending)
        except RuntimeError:
            # A shutdown stopped the watcher while this child was spawning:
            # it was killed; reap it here rather than leave a zombie.
            for fd in pending:
                os.close(fd)
            threading.Thread(target=self._reap_blocking, args=(proc,), daemon=True).start()

    def _watch_with(self, watcher: Watcher, proc: Proc, stdout: Optional[int], stderr: Optional[int], pending) -> None:
        for stream, fd in (("stdout", stdout), ("stderr", stderr)):
            if fd is None:
                continue
            os.set_blocking(fd, False)

            def on_readable(fd: int, stream: str = stream) -> None:
                data = read_chunk(fd)
                if data is None:
                    return
                if data:
                    proc.push_output(stream, data)
                else:
                    watcher.close(fd)
                    proc.finish_output(stream)

            watcher.add(fd, on_readable)
            pending.remove(fd)
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError:
            # No pidfd (Linux before 5.3): a thread that blocks in wait().
            threading.Thread(target=self._reap_blocking, args=(proc,), daemon=True).start()
            return
        try:
            watcher.add(pidfd, lambda fd: self._reap(proc, fd))
        except RuntimeError:
            os.close(pidfd)
            raise

    def _reap(self, proc: Proc, pidfd: int) -> None:
        if proc.popen.poll() is None:
            return  # woken early: not a zombie yet
        self._watcher.close(pidfd)
        self._on_exit(proc, End.from_returncode(proc.popen.returncode, now_ms()))

    def _reap_blocking(self, proc: Proc) -> None:
        returncode = proc.popen.wait()
        self._on_exit(proc, End.from_returncode(returncode, now_ms()))

    def _on_exit(self, proc: Proc, end: End) -> None:
        """Frees the live slot, records the end, and forgets the processes
        that ended first beyond the retention limit."""
        with self._lock:
            self._live -= 1
            proc.set_ended(end)
            if self._procs.get(proc.pid) is not proc:
                return  # replaced by a process that reused its pid
            self._ended.append(proc)
            while len(self._ended) > self.max_retained_exited:
                old = self._ended.popleft()
                if self._procs.get(old.pid) is old:
                    del self._procs[old.pid]
                if old.group_may_remain():
                    self._lingering.append(old.pid)
