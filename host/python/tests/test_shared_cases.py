"""Runs the shared cases (tests/cases/*.json at the repository root; the
format is tests/cases/README.md) against the Python host: one test per case,
in file order. The Rust and the Node hosts run the very same files."""

import json
from pathlib import Path

import pytest

from cases import run_case

CASES = Path(__file__).resolve().parents[3] / "tests" / "cases"
FILES = sorted(CASES.glob("*.json"))

#: Cases this host does not pass, by (file, case name), with the reason.
#: Empty: the Python host passes every shared case. A skip names a case
#: that exists (checked below), so none can hide a gap silently.
SKIPS: dict = {}


def all_cases():
    for path in FILES:
        spec = json.loads(path.read_text("utf-8"))
        for case in spec["cases"]:
            yield path.name, case


def params():
    for file, case in all_cases():
        marks = [pytest.mark.skip(reason=SKIPS[(file, case["name"])])] if (file, case["name"]) in SKIPS else []
        yield pytest.param(file, case, id=f"{file}::{case['name']}", marks=marks)


def test_the_case_files_are_there():
    assert FILES, f"no case file in {CASES}"
    assert sum(1 for _ in all_cases()) >= 30, "expected at least 30 shared cases"


def test_every_skip_names_a_case():
    names = {(file, case["name"]) for file, case in all_cases()}
    assert set(SKIPS) <= names, f"skips of no case: {set(SKIPS) - names}"


@pytest.mark.parametrize("file, case", list(params()))
def test_shared_case(host, file, case):
    started = run_case(host, case, file)
    # Cases kill what may outlive them; this catches one that does not.
    for pid in started:
        info = host.capability.get(pid)
        if info.status == "running":
            host.capability.kill(pid)
            host.await_exit(pid, 10)
