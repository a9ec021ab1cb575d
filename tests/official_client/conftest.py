"""Starts the real `sandbox-process serve` binary for the official client."""

import os
import pathlib
import re
import subprocess
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKEN = "official-client-token"


@pytest.fixture(scope="session")
def server():
    binary = os.environ.get("SANDBOX_PROCESS_BIN", str(ROOT / "target/debug/sandbox-process"))
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--token", TOKEN, "--env", f"PATH={os.environ['PATH']}"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RUST_LOG": "info"},
    )
    found = threading.Event()
    address = {}

    def drain():
        # Keep reading the log so the server never blocks on a full pipe.
        for line in proc.stderr:
            match = re.search(r"listen=(\S+)", line)
            if match and not found.is_set():
                address["url"] = f"http://{match.group(1)}"
                found.set()

    threading.Thread(target=drain, daemon=True).start()
    assert found.wait(60), "the server did not report its address"
    yield address["url"]
    proc.terminate()
    assert proc.wait(30) == 0, "the server exits 0 on SIGTERM"


@pytest.fixture()
def sandbox(server):
    from tensorlake.sandbox import Sandbox

    return Sandbox(identifier="local", proxy_url=server, api_key=TOKEN)
