"""Turning a start request into exactly what will be executed, and starting
it, as the Rust host does (host/src/capability/policy.rs, spawn.rs).

The guest has validated the request's syntax; the checks here are defence
in depth and what only the host can check: which files and directories
really exist and where symlinks and ``..`` lead. A command is resolved with
the child's PATH, not the host's, and absolute PATH entries only.
"""

import errno
import os
import stat
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .errors import ProcessError


@dataclass
class StartRequest:
    """A validated start request (WIT ``start-request``)."""

    command: str
    args: List[str]
    env: List[Tuple[str, str]]
    working_dir: Optional[str]
    stdin_mode: str  # "closed" or "pipe"
    stdout_mode: str  # "capture" or "discard"
    stderr_mode: str


@dataclass
class Prepared:
    program: str
    directory: str
    env: Dict[str, str]


def _reason(error: OSError) -> str:
    return os.strerror(error.errno) if error.errno else str(error)


#: What an errno of a start says ran out: then the host is full and the
#: start is ``limit-exceeded`` (429), not ``spawn-failed`` (400), as the
#: Rust host answers (host/src/capability/exhaustion.rs).
EXHAUSTED = {
    errno.EMFILE: "file descriptors: the host's open-file limit is reached (RLIMIT_NOFILE)",
    errno.ENFILE: "file descriptors: the system-wide limit is reached (fs.file-max)",
    errno.EAGAIN: "processes: a process limit is reached (RLIMIT_NPROC, pids.max or kernel.threads-max)",
    errno.ENOMEM: "memory or process ids (kernel.pid_max)",
}


def _failed(command: str, error: OSError) -> ProcessError:
    doing = f"starting `{command}`: {_reason(error)}"
    if error.errno in EXHAUSTED:
        return ProcessError("limit-exceeded", f"the host is out of {EXHAUSTED[error.errno]}; {doing}")
    return ProcessError("spawn-failed", f"command `{command}`: {_reason(error)}")


def check_syntax(req: StartRequest) -> None:
    """The guest's rules, again: an embedder may call the capability directly."""

    def invalid(message: str):
        raise ProcessError("invalid-request", message)

    if not req.command:
        invalid("command is empty")
    if "\0" in req.command or any("\0" in a for a in req.args):
        invalid("command and args may not contain a NUL byte")
    if req.working_dir is not None and (not req.working_dir or "\0" in req.working_dir):
        invalid("working_dir must be a non-empty path without NUL")
    for name, value in req.env:
        if not name or "=" in name or "\0" in name or "\0" in value:
            invalid(f"env `{name}`: a name is non-empty without `=` or NUL, a value has no NUL")


def working_dir(requested: Optional[str], default: str) -> str:
    """The canonical working directory: ``requested`` (relative to the
    default) or the default."""
    shown = default if requested is None else requested
    path = default if requested is None else os.path.join(default, requested)
    try:
        directory = os.path.realpath(path, strict=True)
    except OSError as e:
        raise ProcessError("spawn-failed", f"working_dir `{shown}`: {_reason(e)}") from None
    if not os.path.isdir(directory):
        raise ProcessError("spawn-failed", f"working_dir `{shown}`: Not a directory")
    return directory


def _is_executable_file(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_mode & 0o111 != 0


def resolve_command(command: str, directory: str, path: Optional[str]) -> str:
    """The canonical path of the executable ``command`` names: with a ``/``
    a path relative to ``directory``; else the first executable file in the
    absolute directories of ``path`` (relative and empty entries are
    skipped, so a request can't run a file it dropped into its own
    directory by a bare name)."""
    if "/" in command:
        try:
            program = os.path.realpath(os.path.join(directory, command), strict=True)
            st = os.stat(program)
        except OSError as e:
            raise ProcessError("spawn-failed", f"command `{command}`: {_reason(e)}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ProcessError("spawn-failed", f"command `{command}`: not a regular file")
        if st.st_mode & 0o111 == 0:
            raise ProcessError("spawn-failed", f"command `{command}`: Permission denied (not executable)")
        return program
    if path is None:
        raise ProcessError("spawn-failed", f"command `{command}` not found: the child's environment has no PATH")
    for entry in path.split(":"):
        candidate = os.path.join(entry, command)
        if os.path.isabs(entry) and _is_executable_file(candidate):
            return os.path.realpath(candidate)
    raise ProcessError("spawn-failed", f"command `{command}` not found on PATH ({path})")


def prepare(req: StartRequest, base_env: Dict[str, str], default_dir: str) -> Prepared:
    """Checks ``req`` and resolves it; nothing is started."""
    check_syntax(req)
    # A variable of the request replaces a default where it stands (dicts
    # keep insertion order), so the child's environment has a fixed order.
    env = dict(base_env)
    for name, value in req.env:
        env[name] = value
    directory = working_dir(req.working_dir, default_dir)
    program = resolve_command(req.command, directory, env.get("PATH"))
    return Prepared(program, directory, env)


@dataclass
class Launched:
    """A started child and the host's ends of its pipes."""

    popen: subprocess.Popen
    stdin: Optional[int]
    stdout: Optional[int]
    stderr: Optional[int]


def launch(req: StartRequest, prepared: Prepared) -> Launched:
    """Starts the child as the leader of a new process group, its stdin a
    pipe or /dev/null, its captured outputs pipes (else /dev/null). Every
    pipe is close-on-exec, so no other child ever holds one."""
    ours: List[int] = []
    theirs: List[int] = []

    def pipe(child_reads: bool) -> Tuple[int, int]:
        r, w = os.pipe2(os.O_CLOEXEC)
        host, child = (w, r) if child_reads else (r, w)
        ours.append(host)
        theirs.append(child)
        return host, child

    try:
        stdin = pipe(True) if req.stdin_mode == "pipe" else None
        stdout = pipe(False) if req.stdout_mode == "capture" else None
        stderr = pipe(False) if req.stderr_mode == "capture" else None
        popen = subprocess.Popen(
            [req.command, *req.args],
            executable=prepared.program,
            cwd=prepared.directory,
            env=prepared.env,
            stdin=stdin[1] if stdin else subprocess.DEVNULL,
            stdout=stdout[1] if stdout else subprocess.DEVNULL,
            stderr=stderr[1] if stderr else subprocess.DEVNULL,
            close_fds=True,
            process_group=0,
            restore_signals=True,
        )
    except BaseException as e:
        for fd in ours:
            os.close(fd)
        if isinstance(e, OSError):
            raise _failed(req.command, e) from None
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    return Launched(popen, stdin and stdin[0], stdout and stdout[0], stderr and stderr[0])
