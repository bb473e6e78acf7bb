"""A JITGATE_* setting that cannot be used is refused before anything runs: no database
file made, nothing migrated, the port not taken (the refusal is one line naming it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from served import free_port

JG = str(Path(sys.executable).with_name("jitgate"))
POLICY = str(Path(__file__).resolve().parents[2] / "examples" / "policy.yaml")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JITGATE_NOTIFY_TIMEOUT", "abc"),
        ("JITGATE_NOTIFY_MAX_ATTEMPTS", "0"),
        ("JITGATE_DELIVERY", "banana"),
        ("JITGATE_WEB_USER_HEADER", "X Forwarded Email"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_bad_setting_is_refused_before_the_database_is_made(
    tmp_path: Path, command: str, name: str, value: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    args = [JG, command, "--policy", POLICY, "--db", f"sqlite:///{tmp_path}/new.db"]
    if command == "serve":
        args += ["--port", str(free_port())]
    done = subprocess.run(
        args, env={**env, name: value}, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {name} must be"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert list(tmp_path.iterdir()) == []  # no database file, nothing migrated or audited
