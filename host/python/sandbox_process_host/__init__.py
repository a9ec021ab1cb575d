"""A Python host of the sandbox process guest component: the very ``.wasm``
the Rust host embeds, run by wasmtime-py, with the process capability
written in Python on ``subprocess`` and ``os``."""

from .capability import ProcessCapability
from .environment import DEFAULT_LOCALE, default_base_env
from .errors import ProcessError
from .guest import DEFAULT_GUEST_WASM, Guest
from .host import Host, Reply, Stream
from .spawn import StartRequest

__all__ = [
    "DEFAULT_GUEST_WASM",
    "DEFAULT_LOCALE",
    "Guest",
    "Host",
    "ProcessCapability",
    "ProcessError",
    "Reply",
    "StartRequest",
    "Stream",
    "default_base_env",
]
