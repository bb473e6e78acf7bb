"""A reload that fails, for a bad policy or a bug, keeps the last good policy and says so
in one log line: the SIGHUP handler (``jitgate serve``/``worker``) and ``guarded`` (the
reload route's loader)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from jitgate.adapters.policy import PolicyError, guarded, load_policy
from jitgate.entrypoints.cli.server import _on_sighup

OVERFLOW = """\
version: 1
directory:
  oncall:
    sre: {rotation: [sam@example.com], shift: 7d, starts: 9999-12-31T23:59:59-01:00}
"""


def _sighup_handler(reload_policy: Callable[[], Any], path: Path) -> Callable[[int, Any], None]:
    """The handler ``_on_sighup`` installs, for a stand-in app; the old handler is put back."""
    app = SimpleNamespace(reload_policy=reload_policy, settings=SimpleNamespace(policy_path=path))
    previous = signal.getsignal(signal.SIGHUP)
    try:
        _on_sighup(app)  # type: ignore[arg-type]
        handler = signal.getsignal(signal.SIGHUP)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert callable(handler)
    return handler


def _boom() -> Any:
    raise RuntimeError("boom")


def test_sighup_on_a_time_out_of_range_logs_one_refusal_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(OVERFLOW)
    handler = _sighup_handler(lambda: load_policy(path), path)
    with caplog.at_level(logging.DEBUG, logger="jitgate"):
        handler(signal.SIGHUP, None)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is None
    assert record.getMessage() == (
        f"policy reload refused: {path}:4: directory.oncall.sre.starts: "
        "9999-12-31T23:59:59-01:00 is outside the years 1 to 9999 in UTC "
        "(the last good policy stays)"
    )


def test_sighup_on_a_bug_logs_one_line_and_the_traceback_at_debug_level(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    handler = _sighup_handler(_boom, tmp_path / "policy.yaml")
    with caplog.at_level(logging.DEBUG, logger="jitgate"):
        handler(signal.SIGHUP, None)
    error, debug = caplog.records
    assert error.levelno == logging.ERROR and error.exc_info is None
    assert error.getMessage() == (
        "policy reload refused: unexpected RuntimeError: boom (a bug in jitgate; the last "
        "good policy stays)"
    )
    assert debug.levelno == logging.DEBUG and debug.exc_info is not None


def test_guarded_turns_a_bug_into_a_policy_error_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="jitgate"), pytest.raises(PolicyError) as caught:
        guarded(_boom, "p.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "p.yaml:1: the policy could not be loaded: unexpected RuntimeError (see the server log)"
    ]
    assert isinstance(caught.value.__cause__, RuntimeError)
    error, debug = caplog.records
    assert error.levelno == logging.ERROR
    assert error.getMessage() == "policy p.yaml could not be loaded: unexpected RuntimeError: boom"
    assert debug.levelno == logging.DEBUG and debug.exc_info is not None


def test_guarded_passes_a_policy_error_and_a_policy_through(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(OVERFLOW)
    with pytest.raises(PolicyError) as caught:
        guarded(lambda: load_policy(path), str(path))
    assert caught.value.problems[0].path == "directory.oncall.sre.starts"
    assert guarded(lambda: 42, "x") == 42
