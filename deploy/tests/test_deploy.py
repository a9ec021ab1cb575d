"""The deployment artifacts, checked as far as this machine allows without a
container engine, a cluster or a registry (deploy/README.md says what is
left to check where those exist):

- the Dockerfile passes hadolint; its entrypoint, run with the real
  binary, serves; its HEALTHCHECK passes against it, and fails with a
  wrong token;
- the systemd unit passes `systemd-analyze verify` without a warning; its
  ExecStart, run with a token file where systemd puts the credential,
  serves;
- the Kubernetes manifests validate against the API's schemas
  (kubernetes-validate, strict, offline); the Deployment's arguments, run
  after the image's entrypoint, serve; its probes pass, and fail with a
  wrong token; the NetworkPolicy and the Service select the sandbox's pods
  and its port, and admit only the proxy.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = os.environ.get("SANDBOX_PROCESS_BIN", str(ROOT / "target/debug/sandbox-process"))
INSTALLED = "/usr/local/bin/sandbox-process"
TOOLS = Path(os.environ.get("DEPLOY_TOOLS_BIN", ROOT / "target/deploy-tools/bin"))
TOKEN = "deploy-test-token"


class Server:
    """The binary started with an artifact's command line, on a free loopback port."""

    def __init__(self, argv, env=None):
        argv = [BIN if a == INSTALLED else a for a in argv]
        argv = [re.sub(r"^0\.0\.0\.0:8080$", "127.0.0.1:0", a) for a in argv]
        assert "127.0.0.1:0" in argv, f"the command line does not listen on 0.0.0.0:8080: {argv}"
        self.proc = subprocess.Popen(
            argv, stderr=subprocess.PIPE, text=True, env={"PATH": os.environ["PATH"], **(env or {})}
        )
        found = threading.Event()
        self.log = []

        def drain():
            for line in self.proc.stderr:
                self.log.append(line)
                match = re.search(r"listen=127\.0\.0\.1:(\d+)", line)
                if match and not found.is_set():
                    self.port = int(match.group(1))
                    found.set()

            found.set()  # it exited without listening

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(30) or not hasattr(self, "port"):
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{argv} did not start: {''.join(self.log)}")

    def health(self, token):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1/health", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req, timeout=5) as reply:
            return reply.status, reply.read().decode()

    def check(self, command, env=None):
        """Runs a health-check command (its port made this server's): its status."""
        command = [c.replace("127.0.0.1:8080", f"127.0.0.1:{self.port}") for c in command]
        return subprocess.run(command, env={"PATH": os.environ["PATH"], **(env or {})}, timeout=30).returncode

    def stop(self):
        self.proc.terminate()
        assert self.proc.wait(30) == 0, "the server exits 0 on SIGTERM"


def tool(name):
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: pip install -r deploy/requirements.txt into {TOOLS.parent}")
    return str(path)


# ---- the Dockerfile ----------------------------------------------------------


def dockerfile_instructions():
    """(instruction, arguments) pairs, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    return [tuple(line.strip().split(None, 1)) for line in joined.splitlines() if line.strip()]


def exec_form(instruction):
    (args,) = [a for i, a in dockerfile_instructions() if i == instruction]
    return json.loads(args)


def healthcheck_command():
    (args,) = [a for i, a in dockerfile_instructions() if i == "HEALTHCHECK"]
    return json.loads(args.split(" CMD ", 1)[1])


def test_the_dockerfile_passes_hadolint():
    out = subprocess.run([tool("hadolint"), "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


def test_the_dockerfile_is_multi_stage_and_runs_the_binary_as_an_unprivileged_user():
    instructions = dockerfile_instructions()
    stages = [a for i, a in instructions if i == "FROM"]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    assert ("USER", "1000:1000") in instructions
    assert exec_form("ENTRYPOINT")[:2] == [INSTALLED, "serve"]


def test_the_image_command_serves_and_its_healthcheck_checks_the_token(tmp_path):
    entrypoint = exec_form("ENTRYPOINT") + exec_form("CMD")
    health = healthcheck_command()
    # With the token in the environment.
    server = Server(entrypoint, {"SANDBOX_PROCESS_TOKEN": TOKEN})
    try:
        assert server.health(TOKEN) == (200, '{"healthy":true}')
        assert server.check(health, {"SANDBOX_PROCESS_TOKEN": TOKEN}) == 0
        assert server.check(health, {"SANDBOX_PROCESS_TOKEN": "wrong"}) != 0
    finally:
        server.stop()
    # With the token in the mounted file the examples use.
    token_file = tmp_path / "sandbox-process-token"
    token_file.write_text(TOKEN + "\n")
    server = Server(entrypoint + ["--token-file", str(token_file)])
    try:
        assert server.health(TOKEN)[0] == 200
        from_file = [c.replace("/run/secrets/sandbox-process-token", str(token_file)) for c in health]
        assert from_file != health, "the health check reads the mounted token file"
        assert server.check(from_file) == 0
        token_file.write_text("wrong\n")
        assert server.check(from_file) != 0
    finally:
        server.stop()


# ---- the systemd unit ----------------------------------------------------------

UNIT = DEPLOY / "systemd" / "sandbox-process.service"


def verify(unit_text, tmp_path):
    unit = tmp_path / "sandbox-process.service"
    unit.write_text(unit_text)
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (Debian: apt-get install systemd)")
    out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    # verify exits 0 on unknown keys and bad values: every line it prints is a finding.
    return out.returncode, (out.stdout + out.stderr).strip()


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    text = UNIT.read_text().replace(INSTALLED, BIN)  # verify wants the executable to exist
    assert verify(text, tmp_path) == (0, "")
    for key in ("Delegate=yes", "LimitNOFILE=", "OOMScoreAdjust=-", "OOMPolicy=continue", "Restart=", "LoadCredential=token:"):
        assert key in text, key
    # The check finds what it should: a misspelt key, a bad value.
    broken = text.replace("Delegate=yes", "Delegat=yes").replace("LimitNOFILE=65536", "LimitNOFILE=lots")
    _, findings = verify(broken, tmp_path)
    assert "Delegat" in findings and "lots" in findings


def test_the_units_command_serves_with_the_credential(tmp_path):
    (line,) = [l for l in UNIT.read_text().splitlines() if l.startswith("ExecStart=")]
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "token").write_text(TOKEN + "\n")
    argv = shlex.split(line[len("ExecStart=") :].replace("${CREDENTIALS_DIRECTORY}", str(credentials)))
    server = Server(argv)
    try:
        assert server.health(TOKEN)[0] == 200
    finally:
        server.stop()


# ---- the Kubernetes manifests ------------------------------------------------

MANIFEST = DEPLOY / "kubernetes" / "sandbox-process.yaml"


def resources():
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text())}


def test_the_manifests_validate_against_the_kubernetes_schemas():
    out = subprocess.run([tool("kubernetes-validate"), "--strict", str(MANIFEST)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(" passed ") == 3, out.stdout


def test_only_the_proxy_is_admitted_to_the_sandboxes_port():
    r = resources()
    pod = r["Deployment"]["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert r["Deployment"]["spec"]["selector"]["matchLabels"] == labels
    (container,) = pod["spec"]["containers"]
    (port,) = container["ports"]
    policy = r["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == labels
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "sandbox-proxy"}
    assert rule["ports"] == [{"port": port["containerPort"], "protocol": "TCP"}]
    assert r["Service"]["spec"]["selector"] == labels
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_the_pods_command_serves_and_its_probes_check_the_token(tmp_path):
    spec = resources()["Deployment"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    args = container["args"]
    token_path = args[args.index("--token-file") + 1]
    (mount,) = [m for m in container["volumeMounts"] if token_path.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "sandbox-process-token"
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    local = str(secret_dir / Path(token_path).name)
    Path(local).write_text(TOKEN)
    server = Server(exec_form("ENTRYPOINT") + [local if a == token_path else a for a in args])
    try:
        for probe in ("readinessProbe", "livenessProbe"):
            command = [c.replace(token_path, local) for c in container[probe]["exec"]["command"]]
            assert server.check(command) == 0, probe
            Path(local).write_text("wrong")
            assert server.check(command) != 0, probe
            Path(local).write_text(TOKEN)
    finally:
        server.stop()
