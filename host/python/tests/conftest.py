"""One host for the whole run: the shared cases share it, as the format
says, and every process it started is killed (and waited for) at the end.

Before anything, the guest the Rust binary embeds is written to
target/wasm/ (`sandbox-process export-wasm`, through cargo), so the tests
never run a stale copy; the Node host's build does the same."""

import subprocess
from pathlib import Path

import pytest

from sandbox_process_host import Host

ROOT = Path(__file__).resolve().parents[3]


def pytest_configure(config):
    command = ["cargo", "run", "--quiet", "-p", "sandbox-process", "--bin", "sandbox-process", "--"]
    out = subprocess.run(command + ["export-wasm", "target/wasm"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise pytest.UsageError(f"`sandbox-process export-wasm target/wasm` failed:\n{out.stderr}")


@pytest.fixture(scope="session")
def host():
    with Host() as h:
        yield h
