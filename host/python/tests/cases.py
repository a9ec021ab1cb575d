"""The shared case format (tests/cases/README.md) as the Python runner reads
it: bodies, placeholders, the JSON pattern matcher, the checks of an
``expect``, and the steps of one case against a Host. The Rust runner
(host/tests/all/shared_cases.rs) and the Node one (host/js/test/) read the
very same files the same way."""

import json
import os
import re
import subprocess
from functools import lru_cache
from typing import Any, Dict, List, Optional

#: How long an ``await_exit`` step waits, as the format says.
AWAIT_EXIT_SECONDS = 10.0

#: The arguments each call takes besides ``call`` and ``expect``.
ARGUMENTS = {
    "start": ["body"],
    "validate": ["body"],
    "signal": ["ref", "body"],
    "get": ["ref"],
    "kill": ["ref"],
    "close_stdin": ["ref"],
    "write_stdin": ["ref", "data"],
    "output": ["ref", "selector"],
    "list": [],
    "health": [],
    "await_exit": ["ref"],
}
BODY_KEYS = ("body", "raw", "raw_hex")
EXPECT_KEYS = ("status", "code", "error_contains", "json", "keys")


class CaseError(AssertionError):
    pass


def body_of(step: Dict[str, Any]) -> bytes:
    """``raw`` as UTF-8, ``raw_hex`` decoded, or ``body`` serialized compactly."""
    if "raw" in step:
        return step["raw"].encode("utf-8")
    if "raw_hex" in step:
        if not re.fullmatch(r"(?:[0-9a-fA-F]{2})*", step["raw_hex"]):
            raise CaseError(f"raw_hex is not hex: {step['raw_hex']}")
        return bytes.fromhex(step["raw_hex"])
    return json.dumps(step["body"], separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def mismatch(pattern: Any, value: Any, path: str = "$") -> Optional[str]:
    """Where ``value`` fails to match ``pattern``, or None."""
    if pattern == "<any>":
        return None
    if pattern == "<number>":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"{path}: expected a number, got {json.dumps(value)}"
    if isinstance(pattern, list):
        if not isinstance(value, list):
            return f"{path}: expected an array, got {json.dumps(value)}"
        if len(value) != len(pattern):
            return f"{path}: expected {len(pattern)} elements, got {len(value)}: {json.dumps(value)}"
        for i, (p, v) in enumerate(zip(pattern, value)):
            found = mismatch(p, v, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return f"{path}: expected an object, got {json.dumps(value)}"
        for key, p in pattern.items():
            if key not in value:
                return f"{path}.{key}: missing"
            found = mismatch(p, value[key], f"{path}.{key}")
            if found:
                return found
        return None
    # JSON equality: true is not 1, 1 is 1.0.
    same = type(pattern) is type(value) or (
        isinstance(pattern, (int, float)) and isinstance(value, (int, float))
        and not isinstance(pattern, bool) and not isinstance(value, bool)
    )  # fmt: skip
    return None if same and pattern == value else f"{path}: expected {json.dumps(pattern)}, got {json.dumps(value)}"


@lru_cache(maxsize=None)
def placeholders() -> Dict[str, Optional[str]]:
    """The placeholders' values, found without the host's code: the user
    database through ``getent``, this process's PATH; None for a name the
    machine gives no value."""
    uid = os.geteuid()
    out = subprocess.run(["getent", "passwd", str(uid)], capture_output=True, text=True)
    if out.returncode == 0:
        fields = out.stdout.rstrip("\n").split(":")
    elif out.returncode == 2:  # no entry
        fields = []
    else:
        raise RuntimeError(f"getent passwd {uid}: {out}")

    def field(i: int) -> Optional[str]:
        return fields[i] if i < len(fields) and fields[i] else None

    return {
        "HOME": field(5) or "/",
        "USER": field(0),
        "LOGNAME": field(0),
        "SHELL": field(6) or "/bin/sh",
        "PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
    }


def substitute(value: Any, values: Optional[Dict[str, Optional[str]]] = None) -> Any:
    """``value`` with every ``{{NAME}}`` in its strings replaced; an unknown
    name, an unclosed ``{{`` or a name without a value is an error naming it."""
    values = placeholders() if values is None else values
    if isinstance(value, str):
        if re.search(r"\{\{(?![^{}]*\}\})", value):
            raise CaseError(f"unclosed placeholder in {json.dumps(value)}")

        def one(match: "re.Match[str]") -> str:
            name = match.group(1)
            if name not in values:
                raise CaseError(f"unknown placeholder {{{{{name}}}}}")
            if values[name] is None:
                raise CaseError(f"{{{{{name}}}}} has no value: the user running the tests has no user database entry")
            return values[name]  # type: ignore[return-value]

        return re.sub(r"\{\{([^{}]*)\}\}", one, value)
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, values) for k, v in value.items()}
    return value


def check(reply, expect: Dict[str, Any], where: str) -> None:
    """Checks one reply against a step's ``expect``."""
    show = f"{where}: got {reply.status} {reply.body}"
    if reply.status != expect["status"]:
        raise CaseError(f"{show}: expected status {expect['status']}")
    if reply.status == 204 and reply.body != "":
        raise CaseError(f"{show}: a 204 reply has an empty body")
    if not any(k in expect for k in ("code", "error_contains", "json", "keys")):
        return
    try:
        body = json.loads(reply.body)
    except ValueError:
        raise CaseError(f"{show}: the body is not JSON") from None
    if "code" in expect and (not isinstance(body, dict) or body.get("code") != expect["code"]):
        raise CaseError(f"{show}: expected code {expect['code']}")
    if "error_contains" in expect:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, str):
            raise CaseError(f"{show}: no error message")
        if expect["error_contains"] not in error:
            raise CaseError(f"{show}: the error should mention {json.dumps(expect['error_contains'])}")
    if "keys" in expect:
        got = sorted(body) if isinstance(body, dict) else None
        if got != sorted(expect["keys"]):
            raise CaseError(f"{show}: keys {got}, expected {sorted(expect['keys'])}")
    if "json" in expect:
        found = mismatch(expect["json"], body)
        if found:
            raise CaseError(f"{show}: {found}")


def check_step(step: Dict[str, Any]) -> None:
    """Refuses a step that is not in the format (a typo would test nothing)."""
    call = step.get("call")
    if call not in ARGUMENTS:
        raise CaseError(f"unknown call {json.dumps(call)}")
    args = ARGUMENTS[call]
    allowed = {"call", *(k for a in args for k in (BODY_KEYS if a == "body" else (a,)))}
    if call != "await_exit":
        allowed.add("expect")
    for key in step:
        if key not in allowed:
            raise CaseError(f"{call} takes no {json.dumps(key)}")
    for arg in args:
        if arg == "body":
            if sum(k in step for k in BODY_KEYS) != 1:
                raise CaseError(f"{call} needs exactly one of body, raw, raw_hex")
        elif not isinstance(step.get(arg), str):
            raise CaseError(f"{call} needs a string {json.dumps(arg)}")
    if call == "await_exit":
        return
    expect = step.get("expect")
    if not isinstance(expect, dict) or not isinstance(expect.get("status"), int):
        raise CaseError(f'{call} needs "expect" with a "status"')
    for key in expect:
        if key not in EXPECT_KEYS:
            raise CaseError(f"unknown expect key {json.dumps(key)}")


def run_case(host, case: Dict[str, Any], file: str) -> List[int]:
    """Runs the steps of one case against ``host``; returns the pids it
    started (for the caller to make sure none is left running)."""
    pid: Optional[int] = None
    started: List[int] = []
    for i, step in enumerate(case["steps"]):
        where = f"{file} / {case['name']} / step {i} ({step.get('call')})"
        try:
            check_step(step)
        except CaseError as e:
            raise CaseError(f"{where}: {e}") from None
        call = step["call"]
        ref = step.get("ref", "")
        if pid is not None:
            ref = ref.replace("$pid", str(pid))
        if call == "await_exit":
            if not re.fullmatch(r"[1-9][0-9]*", ref):
                raise CaseError(f"{where}: await_exit needs a started pid, got {ref!r}")
            if not host.await_exit(int(ref), AWAIT_EXIT_SECONDS):
                raise CaseError(f"{where}: process {ref} did not end (output complete) within {AWAIT_EXIT_SECONDS} s")
            continue
        reply = {
            "start": lambda: host.start(body_of(step)),
            "validate": lambda: host.validate(body_of(step)),
            "signal": lambda: host.signal(ref, body_of(step)),
            "get": lambda: host.get(ref),
            "kill": lambda: host.kill(ref),
            "close_stdin": lambda: host.close_stdin(ref),
            "write_stdin": lambda: host.write_stdin(ref, step["data"].encode("utf-8")),
            "output": lambda: host.output(ref, step["selector"]),
            "list": lambda: host.list(),
            "health": lambda: host.health(),
        }[call]()
        if call == "start" and reply.status == 201:
            pid = json.loads(reply.body)["pid"]
            started.append(pid)
        try:
            expect = substitute(step["expect"])
        except CaseError as e:
            raise CaseError(f"{where}: {e}") from None
        check(reply, expect, where)
    return started
