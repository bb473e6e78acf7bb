"""The rule for real components: a missing one skips locally and fails under CI."""

from __future__ import annotations

import pytest

from components import require


@pytest.mark.parametrize("value", ["true", "True", "1", "yes"])
def test_a_missing_component_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="sshd is missing"):
        require(False, "sshd is missing")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_a_missing_component_skips_outside_ci(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="sshd is missing"):
        require(False, "sshd is missing")


def test_a_present_component_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    require(True, "never said")
