"""``jitgate ssh reap`` signals only the process it remembered: same pid, same start time,
still sshd serving the login's account. Checked on a real process that looks like sshd's
(a copy of ``sleep`` named ``sshd``, titled ``sshd: USER [priv]``)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from jitgate.entrypoints.cli import ssh_sessions as s


def _titled(tmp_path: Path, title: str) -> subprocess.Popen[bytes]:
    binary = tmp_path / "sshd"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", binary)
    return subprocess.Popen([title, "60"], executable=binary)


def _started(pid: int) -> int:
    for _ in range(100):
        found = s.stat_of(pid)
        if found is not None and found[0] == "sshd":
            return found[2]
        time.sleep(0.01)
    raise AssertionError("the process did not start")


def test_only_the_same_sshd_process_of_the_same_account_counts(tmp_path: Path) -> None:
    process = _titled(tmp_path, "sshd: jgtest [priv]")
    try:
        start = _started(process.pid)
        assert s.alive(s.Connection(process.pid, start), "jgtest")
        assert not s.alive(s.Connection(process.pid, start + 1), "jgtest")  # a reused pid
        assert not s.alive(s.Connection(process.pid, start), "root")  # another account
        assert not s.alive(s.Connection(process.pid, start), "jgtes")  # nor a prefix of it
    finally:
        process.kill()
        process.wait()
    assert not s.alive(s.Connection(process.pid, start), "jgtest")  # gone


def test_a_process_that_is_not_sshd_is_never_signalled(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "60"])
    try:
        found = s.stat_of(other.pid)
        assert found is not None
        login = s.Login(other.pid, found[2], "sid", "rid", "u@example.com", "sleep", "rid")
        assert not s.end_connection(login)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_the_remembered_login_of_a_connection_is_recalled_for_its_certificate_only(
    tmp_path: Path,
) -> None:
    login = s.Login(4242, 77, "session-1", "request-1", "jane@example.com", "ubuntu", "request-1")
    s.remember(tmp_path, login)
    assert s.recalled(tmp_path, s.Connection(4242, 77), "request-1") == "session-1"
    assert s.recalled(tmp_path, s.Connection(4242, 77), "request-2") is None
    assert s.recalled(tmp_path, s.Connection(4242, 78), "request-1") is None
    assert [found for _, found in s.logins(tmp_path)] == [login]
