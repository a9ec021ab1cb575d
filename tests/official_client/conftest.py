"""Starts each server of the API for the official client: the Rust binary
(`sandbox-process serve`) and the Node host's (`host/js/bin/`). Every test
runs against both; what one of them cannot do is skipped by name, with the
reason, in SKIPS below."""

import os
import pathlib
import re
import subprocess
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKEN = "official-client-token"

#: (server, test name) -> why that server can't pass that test.
SKIPS = {
    ("node", "test_a_real_time_signal_is_reported"): (
        "Node reports a child's death by signal with the signal's name, and has no name for the "
        "real-time signals (32 to 64): the Node host shows such a process as exited with code 0"
    ),
    ("node", "test_kill_reaches_a_descendant_that_left_the_group"): (
        "the Node host has process groups only, no cgroups: a descendant that called setsid "
        "survives DELETE (as with the Rust host on a machine without a writable cgroup v2)"
    ),
    ("node", "test_run_returns_every_line_of_a_big_output_in_order"): (
        "the Node host's run is not lossless yet: it reads the child's pipes as fast as they fill and "
        "drops the oldest lines past its cap (reported in an SSE comment), where the Rust host makes "
        "the child wait for the stream"
    ),
}


#: Set by .ci/run where a writable cgroup v2 hierarchy is mounted: the Rust
#: server then must contain each process in a cgroup (it refuses to start
#: processes otherwise), and the cgroup test runs against it.
EXPECT_CGROUPS = os.environ.get("SANDBOX_PROCESS_EXPECT_CGROUPS") == "1"
if not EXPECT_CGROUPS:
    SKIPS[("rust", "test_kill_reaches_a_descendant_that_left_the_group")] = (
        "SANDBOX_PROCESS_EXPECT_CGROUPS is not 1: this machine may have no writable cgroup v2, "
        "without which the Rust server has process groups only"
    )


def server_command(kind):
    if kind == "rust":
        binary = os.environ.get("SANDBOX_PROCESS_BIN", str(ROOT / "target/debug/sandbox-process"))
        containment = ["--containment", "cgroup"] if EXPECT_CGROUPS else []
        command = [binary, "serve", "--listen", "127.0.0.1:0", "--token", TOKEN, "--env", f"PATH={os.environ['PATH']}"]
        return command + containment, {}
    node = os.environ.get("SANDBOX_PROCESS_NODE", "node")
    script = str(ROOT / "host/js/bin/sandbox-process-node.js")
    return [node, script, "--listen", "127.0.0.1:0"], {"SANDBOX_PROCESS_TOKEN": TOKEN}


@pytest.fixture(scope="session", params=["rust", "node"])
def server(request):
    command, extra_env = server_command(request.param)
    proc = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RUST_LOG": "info", **extra_env},
    )
    found = threading.Event()
    address = {}
    log = []

    def drain():
        # Keep reading the log so the server never blocks on a full pipe.
        for line in proc.stderr:
            log.append(line)
            match = re.search(r"listen=(\S+)", line)
            if match and not found.is_set():
                address["url"] = f"http://{match.group(1)}"
                found.set()

    threading.Thread(target=drain, daemon=True).start()
    if not found.wait(60):
        proc.kill()
        proc.wait()
        pytest.fail(f"the {request.param} server did not report its address: {''.join(log)}")
    yield address["url"]
    proc.terminate()
    assert proc.wait(30) == 0, f"the {request.param} server exits 0 on SIGTERM"


@pytest.fixture()
def sandbox(server):
    from tensorlake.sandbox import Sandbox

    return Sandbox(identifier="local", proxy_url=server, api_key=TOKEN)


def pytest_collection_modifyitems(items):
    for item in items:
        kind = getattr(item, "callspec", None) and item.callspec.params.get("server")
        reason = SKIPS.get((kind, item.originalname))
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"{kind} server: {reason}"))
