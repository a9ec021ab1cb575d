"""The capability's error: the WIT ``process-error`` variant."""

#: The cases of ``process-error``, each mapped by the guest to one status.
TAGS = (
    "invalid-request",
    "not-found",
    "spawn-failed",
    "stdin-not-available",
    "not-running",
    "invalid-signal",
    "denied",
    "limit-exceeded",
    "internal",
)


class ProcessError(Exception):
    """A refused or failed capability call: ``tag`` is the case of
    ``process-error``, ``value`` its payload (a message, a pid or a signal)."""

    def __init__(self, tag: str, value):
        if tag not in TAGS:
            raise ValueError(f"{tag!r} is not a case of process-error")
        super().__init__(f"{tag}: {value}")
        self.tag = tag
        self.value = value
