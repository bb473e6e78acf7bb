"""``jitgate policy check`` as an operator meets it: a subfolder of a policy folder and a
policy with no roles are warned about (``--strict`` fails on them), and one mistake in a
section is one error, not also an error at every place that names what it defines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from served import EXAMPLE_POLICY_PATH

JG = str(Path(sys.executable).with_name("jitgate"))
Done = subprocess.CompletedProcess[str]


def check(*args: str) -> Done:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    return subprocess.run(
        [JG, "policy", "check", *args], capture_output=True, text=True, env=env, timeout=60
    )


def errors(done: Done) -> list[str]:
    """The problem lines (not the count line at the end)."""
    return [line for line in done.stderr.splitlines() if re.match(r"^\S+:\d+: ", line)]


def test_a_subfolder_of_a_policy_folder_is_named_in_a_warning(tmp_path: Path) -> None:
    folder = tmp_path / "policy"
    (folder / "sub").mkdir(parents=True)
    (folder / "empty-notes").mkdir()  # no policy file in it: nothing to say
    text = EXAMPLE_POLICY_PATH.read_text()
    (folder / "main.yaml").write_text(text)
    (folder / "sub" / "roles.yaml").write_text("roles: {}\n")
    done = check(str(folder))
    assert done.returncode == 0, done.stderr
    sub = str(folder / "sub")
    warned = [line for line in done.stderr.splitlines() if sub in line]
    assert len(warned) == 1 and warned[0].startswith("warning: "), done.stderr
    assert "non-recursively" in warned[0]
    assert "empty-notes" not in done.stderr
    strict = check("--strict", str(folder))
    assert strict.returncode == 1 and sub in strict.stderr


def test_a_folder_whose_files_are_all_in_a_subfolder_names_it(tmp_path: Path) -> None:
    (tmp_path / "policy" / "sub").mkdir(parents=True)
    (tmp_path / "policy" / "sub" / "all.yaml").write_text("version: 1\n")
    done = check(str(tmp_path / "policy"))
    assert done.returncode == 1
    assert "subfolders are not read" in done.stderr and "sub" in done.stderr, done.stderr


def test_a_policy_with_no_roles_is_a_warning_that_strict_fails_on(tmp_path: Path) -> None:
    empty = tmp_path / "policy.yaml"
    empty.write_text("version: 1\n")
    done = check(str(empty))
    assert done.returncode == 0, done.stderr
    assert f"warning: {empty}:1: roles: the policy defines no roles" in done.stderr
    assert "1 warning(s)" in done.stdout
    assert check("--strict", str(empty)).returncode == 1


def test_the_help_says_a_folder_is_read_non_recursively() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    shown = subprocess.run(
        [JG, "policy", "check", "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert "non-recursively" in " ".join(shown.stdout.split())


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE_POLICY_PATH.read_text()
    assert text.count(old) == 1, old
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_a_schedule_that_does_not_parse_is_one_error_not_one_per_use(tmp_path: Path) -> None:
    old = "      rotation: [sam@example.com, sue@example.com]\n      shift: 7d\n"
    path = _broken(tmp_path, old, old.replace("7d", "7"))  # directory.oncall.sre.shift: 7
    line = path.read_text().splitlines().index("      shift: 7") + 1
    done = check(str(path))
    assert done.returncode == 1
    found = errors(done)
    assert len(found) == 1, done.stderr
    assert found[0].startswith(f"{path}:{line}: directory.oncall.sre.shift: ")
    assert "unknown on-call schedule" not in done.stderr


def test_a_schedule_missing_a_key_is_one_error_too(tmp_path: Path) -> None:
    old = "      rotation: [sam@example.com, sue@example.com]\n"
    done = check(str(_broken(tmp_path, old, "")))
    found = errors(done)
    assert len(found) == 1 and "directory.oncall.sre.rotation:" in found[0], done.stderr


SMALL = """\
version: 1
directory:
  users:
    sam@example.com: {groups: [sre]}
roles:
  one:
    grants: [{type: ssh, environment: production}]
    requestable_by: [sre]
    max_duration: 1h
    backends: [ssh-prod]
  two:
    grants: [{type: ssh, environment: production}]
    requestable_by: [sre]
    max_duration: 1h
    backends: [ssh-prod]
approval:
  - match: {type: ssh}
    any: [{group: sre}]
backends:
  ssh-prod: ssh-ca
"""


def test_a_backend_that_is_not_a_mapping_is_one_error_not_one_per_role(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(SMALL)
    done = check(str(path))
    assert done.returncode == 1
    found = errors(done)
    assert len(found) == 1 and "backends.ssh-prod:" in found[0], done.stderr
    assert "unknown backend" not in done.stderr
