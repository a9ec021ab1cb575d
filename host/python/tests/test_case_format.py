"""The runner itself: a runner that accepted anything would pass every
host. Each rule of tests/cases/README.md that it enforces is shown failing."""

import pytest

from cases import CaseError, body_of, check, check_step, mismatch, placeholders, run_case, substitute
from sandbox_process_host import Reply


def test_patterns_match_as_the_format_says():
    assert mismatch({"a": "<any>", "b": "<number>"}, {"a": None, "b": 3, "c": "extra"}) is None
    assert mismatch({"a": 1}, {}) == "$.a: missing"
    assert mismatch([1, 2], [1]) is not None
    assert mismatch("<number>", "3") is not None
    assert mismatch(True, 1) is not None  # JSON true is not 1
    assert mismatch(1, 1.0) is None
    assert mismatch(None, None) is None
    assert mismatch({"x": [{"y": "z"}]}, {"x": [{"y": "w"}]}) == '$.x[0].y: expected "z", got "w"'


def test_bodies():
    assert body_of({"raw": "é"}) == "é".encode()
    assert body_of({"raw_hex": "ff00"}) == b"\xff\x00"
    assert body_of({"body": {"a": [1, "é"]}}) == '{"a":[1,"é"]}'.encode()
    with pytest.raises(CaseError):
        body_of({"raw_hex": "f"})


def test_placeholders_are_replaced_everywhere_and_unknown_ones_refused():
    home = placeholders()["HOME"]
    assert substitute({"lines": ["HOME={{HOME}}:{{HOME}}", 1, None]}) == {"lines": [f"HOME={home}:{home}", 1, None]}
    with pytest.raises(CaseError, match="unclosed placeholder"):
        substitute("{{HOME")
    with pytest.raises(CaseError, match=r"unknown placeholder \{\{home\}\}"):
        substitute(["{{home}}"])
    with pytest.raises(CaseError, match="has no value"):
        substitute("{{USER}}", {"USER": None})


def test_steps_outside_the_format_are_refused():
    check_step({"call": "get", "ref": "1", "expect": {"status": 200}})
    for bad in [
        {"call": "gett", "ref": "1", "expect": {"status": 200}},
        {"call": "get", "ref": "1", "expect": {"status": 200}, "extra": 1},
        {"call": "get", "ref": 1, "expect": {"status": 200}},
        {"call": "get", "ref": "1", "expect": {"status": 200, "cod": "X"}},
        {"call": "get", "ref": "1"},
        {"call": "start", "body": {}, "raw": "", "expect": {"status": 201}},
        {"call": "await_exit", "ref": "$pid", "expect": {"status": 200}},
    ]:
        with pytest.raises(CaseError):
            check_step(bad)


def test_checks_fail_on_what_differs():
    reply = Reply(400, '{"error":"field `env.A` is bad","code":"INVALID_REQUEST"}')
    check(reply, {"status": 400, "code": "INVALID_REQUEST", "error_contains": "env.A", "keys": ["error", "code"]}, "w")
    for expect in [
        {"status": 401},
        {"status": 400, "code": "DENIED"},
        {"status": 400, "error_contains": "env.B"},
        {"status": 400, "keys": ["error"]},
        {"status": 400, "json": {"code": "X"}},
    ]:
        with pytest.raises(CaseError):
            check(reply, expect, "w")
    with pytest.raises(CaseError, match="empty body"):
        check(Reply(204, "{}"), {"status": 204}, "w")


def test_a_wrong_expectation_fails_against_the_real_host(host):
    case = {
        "name": "echo says something else",
        "steps": [
            {"call": "start", "body": {"command": "echo", "args": ["hi"]}, "expect": {"status": 201}},
            {"call": "await_exit", "ref": "$pid"},
            {"call": "output", "ref": "$pid", "selector": "stdout", "expect": {"status": 200, "json": {"lines": ["ho"]}}},
        ],
    }
    with pytest.raises(CaseError, match=r'\$\.lines\[0\]: expected "ho", got "hi"'):
        run_case(host, case, "inline")
