"""The capability's error: the WIT ``process-error`` variant."""

#: The cases of ``process-error``, each mapped by the guest to one status.
TAGS = (
    "invalid-request",
    "not-found",
    "spawn-failed",
    "stdin-not-writable",
    "not-running",
    "invalid-signal",
    "denied",
    "limit-exceeded",
    "internal",
)


class ProcessError(Exception):
    """A refused or failed capability call: ``tag`` is the case of
    ``process-error``, ``value`` its payload (a message, a pid, a signal, or
    for ``stdin-not-writable`` a ``StdinRefusal``)."""

    def __init__(self, tag: str, value):
        if tag not in TAGS:
            raise ValueError(f"{tag!r} is not a case of process-error")
        super().__init__(f"{tag}: {value}")
        self.tag = tag
        self.value = value


class StdinRefusal:
    """The payload of ``stdin-not-writable``: the process, and whether its
    stdin never was a pipe (``not-a-pipe``) or the pipe is ``closed``."""

    def __init__(self, pid: int, state: str):
        if state not in ("not-a-pipe", "closed"):
            raise ValueError(f"{state!r} is not a stdin-state")
        self.pid = pid
        self.state = state

    def __repr__(self) -> str:
        return f"StdinRefusal(pid={self.pid}, state={self.state!r})"


def stdin_refused(pid: int, state: str) -> ProcessError:
    return ProcessError("stdin-not-writable", StdinRefusal(pid, state))
