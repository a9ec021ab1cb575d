"""One host for the whole run: the shared cases share it, as the format
says, and every process it started is killed (and waited for) at the end.

Before anything, the guest the Rust binary embeds is written to
target/wasm/ (`sandbox-process export-wasm`, from the binary `cargo test
--workspace --no-run` builds: the README's test command's own build, so no
rebuild after it), so the tests never run a stale copy; the Node host's
build does the same."""

import os
import subprocess
from pathlib import Path

import pytest

from sandbox_process_host import Host

ROOT = Path(__file__).resolve().parents[3]


def pytest_configure(config):
    built = subprocess.run(["cargo", "test", "--quiet", "--workspace", "--no-run"], cwd=ROOT, capture_output=True, text=True)
    if built.returncode != 0:
        raise pytest.UsageError(f"building sandbox-process failed:\n{built.stderr}")
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = (ROOT / target) / "debug" / "sandbox-process"
    out = subprocess.run([str(binary), "export-wasm", "target/wasm"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise pytest.UsageError(f"`sandbox-process export-wasm target/wasm` failed:\n{out.stderr}")


@pytest.fixture(scope="session")
def host():
    with Host() as h:
        yield h
