"""One thread that serves every child of a capability: it reads their output
pipes and reaps them when they exit, woken by epoll (the pipes, and a
pidfd per child), never by polling.

One thread for all children rather than two or three per child: a
thousand quiet processes cost a thousand registrations, not three thousand
threads. The handlers run on this thread and only take a process's lock
for the moment it takes to record a read or an exit.

The thread owns the descriptors registered with it: only it closes them
(at end of file, at exit, or when it stops), so a descriptor number is
never reused while an event for it may still be pending.
"""

import logging
import os
import select
import threading
from typing import Callable, Dict, Optional

#: The most bytes taken from one pipe per wake-up: a flooding child is read
#: in large chunks, and the other pipes get their turn in between.
READ_BYTES = 64 * 1024

Handler = Callable[[int], None]
log = logging.getLogger(__name__)


class Watcher:
    def __init__(self, name: str = "sandbox-process-watcher"):
        self._epoll = select.epoll()
        self._handlers: Dict[int, Handler] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add(self, fd: int, handler: Handler) -> None:
        """Calls ``handler(fd)`` on this thread each time ``fd`` is readable
        (or at end of file) until ``close(fd)``; the watcher then owns ``fd``
        (not when this raises: the watcher has stopped)."""
        with self._lock:
            if self._stopping:
                raise RuntimeError("the watcher has stopped")
            self._handlers[fd] = handler
            self._epoll.register(fd, select.EPOLLIN)

    def close(self, fd: int) -> None:
        """Stops watching ``fd`` and closes it. Only from a handler."""
        with self._lock:
            if self._handlers.pop(fd, None) is not None:
                self._epoll.unregister(fd)
                os.close(fd)

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the thread and closes every descriptor it still owns."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        os.eventfd_write(self._wake, 1)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stopping:
                for fd, _events in self._epoll.poll():
                    if fd == self._wake:
                        continue
                    with self._lock:
                        handler = self._handlers.get(fd)
                    if handler is None:
                        continue
                    try:
                        handler(fd)
                    except Exception:  # a bug: stop that descriptor, not every child's
                        log.exception("watcher: handler of fd %d failed", fd)
                        self.close(fd)
        finally:
            with self._lock:
                for fd in self._handlers:
                    os.close(fd)
                self._handlers.clear()
                self._epoll.close()
                os.close(self._wake)


def read_chunk(fd: int) -> Optional[bytes]:
    """One read of a non-blocking pipe: bytes; b"" at end of file (an error
    reading a pipe can only mean it is over too); None when there was
    nothing to read after all."""
    try:
        return os.read(fd, READ_BYTES)
    except BlockingIOError:
        return None
    except OSError:
        return b""
