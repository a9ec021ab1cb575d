"""The README's embedding example runs as written."""

import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def test_the_embedding_example_runs(tmp_path):
    readme = (PACKAGE / "README.md").read_text("utf-8")
    examples = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert examples, "the README has no Python example"
    (tmp_path / "some-file").write_text("")
    out = subprocess.run(
        [sys.executable, "-c", examples[0]],
        cwd=tmp_path,
        env={"PYTHONPATH": str(PACKAGE), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert '"lines":["hi","oops"]' in out.stdout or '"lines":["oops","hi"]' in out.stdout
    assert '"line":"some-file"' in out.stdout and '"reason":"exited"' in out.stdout
