"""The guest component on wasmtime-py: compiled once, linked with a process
capability written in Python, instantiated in a fresh store for every call.

A fresh store per call, as the Rust host does: calls from several threads
run at once (a stream blocked waiting for output holds only its own), no
state carries over between calls, and a trap costs only its own call.

Values cross the boundary as wasmtime-py makes them: records are
``Record`` objects whose attributes keep the WIT's kebab-case names (hence
``getattr``/``setattr``), variants are ``Variant(tag, payload)``, enums
their case names, options the value or None, ``list<u8>`` is ``bytes``.
"""

import os
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import wasmtime
from wasmtime import component as wc

from .capability import ProcessCapability
from .capture import Chunk
from .errors import ProcessError
from .process import ProcessInfo
from .spawn import StartRequest

PROCESS_INTERFACE = "sandbox:process/process@0.1.0"
API_INTERFACE = "sandbox:process/api@0.1.0"

#: Where ``sandbox-process export-wasm target/wasm`` (at the repository
#: root) writes the guest the binary embeds.
DEFAULT_GUEST_WASM = Path(__file__).resolve().parents[3] / "target" / "wasm" / "sandbox_process_guest.wasm"

def _cache_record_fields() -> None:
    """Makes ``RecordType.fields`` computed once per type object.

    wasmtime-py asks the C API for a record type's field names and types
    again for every record it lowers: for a read of 4,096 output lines that
    is 4,096 times the same answer, and about 40% of the time a line takes
    to cross (measured: 45 to 26 microseconds a line). A type's fields never
    change, so remembering them changes nothing else.
    """
    prop = wc.RecordType.fields
    if getattr(prop.fget, "_sandbox_process_cached", False):
        return

    def fields(self: wc.RecordType) -> Any:
        cached = self.__dict__.get("_sandbox_process_fields")
        if cached is None:
            cached = self.__dict__["_sandbox_process_fields"] = prop.fget(self)
        return cached

    fields._sandbox_process_cached = True  # type: ignore[attr-defined]
    wc.RecordType.fields = property(fields)  # type: ignore[method-assign]


_cache_record_fields()

#: The functions the guest exports (WIT names).
EXPORTS = (
    "start", "list", "get", "kill", "signal", "write-stdin", "close-stdin", "output",
    "health", "info", "validate", "follow-open", "run-open", "stream-next",
)  # fmt: skip


def record(**fields: Any) -> wc.Record:
    """A WIT record; ``snake_case`` keywords become kebab-case fields."""
    value = wc.Record()
    for name, field in fields.items():
        setattr(value, name.replace("_", "-"), field)
    return value


def field(value: wc.Record, name: str) -> Any:
    return getattr(value, name)


def lower_info(info: ProcessInfo) -> wc.Record:
    return record(
        pid=info.pid,
        status=info.status,
        stdin_writable=info.stdin_writable,
        command=info.command,
        args=list(info.args),
        started_at=info.started_at,
        exit_code=info.exit_code,
        signal=info.signal,
        ended_at=info.ended_at,
    )


def lower_chunk(chunk: Chunk) -> wc.Record:
    lines = [record(stream=l.stream, line=l.line, timestamp=l.timestamp) for l in chunk.lines]
    return record(lines=lines, next_cursor=chunk.next_cursor, dropped=chunk.dropped, more=chunk.more, complete=chunk.complete
    )


def lift_request(value: wc.Record) -> StartRequest:
    return StartRequest(
        command=field(value, "command"),
        args=list(field(value, "args")),
        env=[(field(v, "name"), field(v, "value")) for v in field(value, "env")],
        working_dir=field(value, "working-dir"),
        stdin_mode=field(value, "stdin-mode"),
        stdout_mode=field(value, "stdout-mode"),
        stderr_mode=field(value, "stderr-mode"),
    )


def imports_of(cap: ProcessCapability) -> Dict[str, Callable[..., Any]]:
    """The capability as the functions of the WIT ``process`` interface,
    by WIT name, each taking the store first as wasmtime-py calls them."""
    summary = cap.summary
    return {
        "start": lambda _s, req: lower_info(cap.start(lift_request(req))),
        "get": lambda _s, pid: lower_info(cap.get(pid)),
        "list": lambda _s: [lower_info(i) for i in cap.list()],
        "signal": lambda _s, pid, sig: cap.signal(pid, sig),
        "kill": lambda _s, pid: cap.kill(pid),
        "write-stdin": lambda _s, pid, data: cap.write_stdin(pid, data),
        "close-stdin": lambda _s, pid: cap.close_stdin(pid),
        "read-output": lambda _s, pid, sel, cursor, n, wait: lower_chunk(cap.read_output(pid, sel, cursor, n, wait)),
        "wait": lambda _s, pid, ms: lower_info(cap.wait(pid, ms)),
        "summary": lambda _s: record(**summary()),
        "now-ms": lambda _s: cap.now_ms(),
    }


#: The functions whose WIT result has no error case: an exception in them
#: can only trap.
INFALLIBLE = {"list", "summary", "now-ms"}


def guarded(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with a ProcessError returned as the ``err`` of its result, and
    any other exception (a bug here) as ``internal`` rather than a trap."""
    if name in INFALLIBLE:
        return fn

    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except ProcessError as e:
            return wc.Variant(e.tag, e.value)
        except Exception as e:  # noqa: BLE001 - reported to the guest, which answers 500
            return wc.Variant("internal", f"{name}: {e}")

    return call


class Guest:
    """The compiled guest, linked to one capability; ``call`` runs one
    exported function in a fresh instance."""

    def __init__(
        self,
        capability: ProcessCapability,
        wasm: Union[str, os.PathLike, bytes, None] = None,
        imports: Optional[Dict[str, Callable[..., Any]]] = None,
    ):
        self.engine = wasmtime.Engine()
        if isinstance(wasm, bytes):
            self.component = wc.Component(self.engine, wasm)
        else:
            path = Path(wasm) if wasm is not None else DEFAULT_GUEST_WASM
            if not path.exists():
                raise FileNotFoundError(
                    f"{path} does not exist: write it first with `sandbox-process export-wasm DIR` (at the "
                    "repository root: `cargo run -p sandbox-process-server --bin sandbox-process -- export-wasm target/wasm`)"
                )
            self.component = wc.Component.from_file(self.engine, str(path))
        self.linker = wc.Linker(self.engine)
        with self.linker.root() as root:
            with root.add_instance(PROCESS_INTERFACE) as iface:
                for name, fn in (imports or imports_of(capability)).items():
                    iface.add_func(name, guarded(name, fn))
        api = self.component.get_export_index(API_INTERFACE)
        if api is None:
            raise ValueError(f"the component does not export {API_INTERFACE}")
        self._exports = {}
        for name in EXPORTS:
            index = self.component.get_export_index(name, api)
            if index is None:
                raise ValueError(f"the component's {API_INTERFACE} has no function {name}")
            self._exports[name] = index
        # Instantiation touches the linker's Python wrapper: one at a time.
        self._instantiating = threading.Lock()

    def call(self, name: str, *args: Any) -> Any:
        """Calls the exported ``name`` in a fresh store; raises
        ``wasmtime.WasmtimeError`` (a trap, a failed link) on failure."""
        store = wasmtime.Store(self.engine)
        with self._instantiating:
            instance = self.linker.instantiate(store, self.component)
        func = instance.get_func(store, self._exports[name])
        return func(store, *args)
