"""``jitgate policy check|explain|oncall`` and ``serve`` on the edge cases a review found:
a time out of range is one ``file:line: key.path: message`` and exit 1 (never a
traceback); overlapping on-call overrides resolve to the one that started latest; the
``--user`` of ``explain`` is read as the API reads an email."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from jitgate.entrypoints.cli.main import cli

JG = str(Path(sys.executable).with_name("jitgate"))
EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "policy.yaml")
NO_ENV = {"JITGATE_TOKEN": None, "JITGATE_DATABASE_URL": None, "JITGATE_POLICY": None}

OVERLAPPING = """\
version: 1
directory:
  users:
    sam@example.com: {groups: [sre]}
    sue@example.com: {groups: [sre]}
    lee@example.com: {groups: [sre]}
  oncall:
    sre:
      rotation: [sam@example.com]
      shift: 7d
      starts: 2026-01-05T09:00:00Z
      overrides:
        - {user: sue@example.com, from: 2026-02-02T09:00:00Z, until: 2026-02-09T09:00:00Z}
        - {user: lee@example.com, from: 2026-02-04T09:00:00Z, until: 2026-02-04T21:00:00Z}
"""


def invoke(*args: str) -> Result:
    return CliRunner(env=NO_ENV).invoke(cli, list(args), prog_name="jitgate")


def _overflowing(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "policy.yaml"
    text = Path(EXAMPLE).read_text()
    path.write_text(text.replace("until: 2026-02-03T09:00:00Z", "until: 9999-12-31T23:59:59-01:00"))
    line = text[: text.index("until: 2026-02-03T09:00:00Z")].count("\n") + 1
    problem = (
        f"{path}:{line}: directory.oncall.sre.overrides[0].until: 9999-12-31T23:59:59-01:00 "
        "is outside the years 1 to 9999 in UTC"
    )
    return path, problem


@pytest.mark.parametrize(
    "command",
    [
        ["policy", "check", "{path}"],
        ["policy", "explain", "--policy", "{path}", "--user", "jane.doe@example.com", "--role",
         "dev-ssh"],
        ["policy", "oncall", "--policy", "{path}", "sre"],
    ],
    ids=["check", "explain", "oncall"],
)  # fmt: skip
def test_a_time_out_of_range_is_one_problem_and_exit_1(tmp_path: Path, command: list[str]) -> None:
    path, problem = _overflowing(tmp_path)
    done = invoke(*(part.format(path=path) for part in command))
    assert done.exit_code == 1, done.output
    assert problem in done.stderr.splitlines()
    assert "Traceback" not in done.stderr
    assert done.exception is None or isinstance(done.exception, SystemExit)


def test_serve_refuses_a_time_out_of_range_without_a_traceback(tmp_path: Path) -> None:
    path, problem = _overflowing(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    done = subprocess.run(
        [JG, "serve", "--policy", str(path), "--db", f"sqlite:///{tmp_path}/jg.db", "--port", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert problem in done.stderr.splitlines()
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("at", "who"),
    [
        ("2026-02-02T08:59:59Z", "sam@example.com"),  # the rotation
        ("2026-02-03T12:00:00Z", "sue@example.com"),  # the week-long cover
        ("2026-02-04T09:00:00Z", "lee@example.com"),  # the half-day cover inside it wins
        ("2026-02-04T20:59:59Z", "lee@example.com"),
        ("2026-02-04T21:00:00Z", "sue@example.com"),  # and ends: back to the week-long one
        ("2026-02-09T09:00:00Z", "sam@example.com"),
    ],
)
def test_oncall_at_a_time_of_overlapping_overrides(tmp_path: Path, at: str, who: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(OVERLAPPING)
    done = invoke("policy", "oncall", "--policy", str(path), "sre", "--at", at)
    assert (done.exit_code, done.stdout) == (0, f"{who}\n"), done.stderr
    reordered = tmp_path / "reordered.yaml"
    lines = OVERLAPPING.splitlines(keepends=True)
    reordered.write_text("".join([*lines[:-2], lines[-1], lines[-2]]))
    again = invoke("policy", "oncall", "--policy", str(reordered), "sre", "--at", at)
    assert again.stdout == done.stdout  # the order they are listed in does not matter


def test_explain_reads_the_user_as_the_api_does() -> None:
    done = invoke(
        "policy", "explain", "--policy", EXAMPLE, "--user", "  Jane.Doe@Example.com ",
        "--role", "sre-oncall", "--at", "2026-03-02T10:00:00Z",
    )  # fmt: skip
    assert done.exit_code == 0, done.stderr
    assert done.stdout.splitlines()[0] == "user:    jane.doe@example.com"
    assert "manager: mark.lee@example.com  (jane.doe@example.com's manager)" in done.stdout
