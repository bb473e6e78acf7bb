"""``scripts/demo.sh`` (what ``make run`` runs) as people use it: run again after
``source .demo-tokens`` on another PORT, stopped by closing the terminal (SIGHUP to its
process group), Ctrl-C (SIGINT) or SIGTERM, started while an earlier demo holds the port.

Each run is a real ``bash scripts/demo.sh`` in a session of its own, serving a real
``jitgate serve`` and mail catcher on free loopback ports."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from served import free_port

REPO = Path(__file__).resolve().parents[2]
JG = str(Path(sys.executable).with_name("jitgate"))


def free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ports(count: int) -> list[int]:
    """``count`` distinct free ports, for the demo's processes to bind."""
    found: list[int] = []
    while len(found) < count:
        port = free_port()
        if port not in found:
            found.append(port)
    return found


class Demo:
    """One run of demo.sh; ``stop(signum)`` signals its whole process group, as a terminal
    does, and waits for the script to end."""

    def __init__(self, env: dict[str, str], out: Path, port: int) -> None:
        self.out, self.port = out, port
        with out.open("w") as log:
            self.proc = subprocess.Popen(
                ["bash", str(REPO / "scripts" / "demo.sh")],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def output(self) -> str:
        return self.out.read_text()

    def ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "demo.sh ended:\n" + self.output
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("the demo did not become ready:\n" + self.output)

    def stop(self, signum: signal.Signals) -> None:
        os.killpg(self.proc.pid, signum)
        self.proc.wait(60)

    def left(self) -> bool:
        """Whether any process of its group (the server, the catcher) is still there."""
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        if self.proc.poll() is None or self.left():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def demos() -> Iterator[list[Demo]]:
    started: list[Demo] = []
    try:
        yield started
    finally:
        for demo in started:
            demo.kill()


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    env.pop("PORT", None)
    env.pop("MAIL_PORT", None)
    env["DEMO_TOKENS"] = str(tmp_path / ".demo-tokens")
    env["JITGATE_DATABASE_URL"] = f"sqlite:///{tmp_path}/demo.db"
    return env


def sourced(tokens: Path) -> dict[str, str]:
    """What ``source .demo-tokens`` exports (PATH aside)."""
    found = dict(re.findall(r"^export (\w+)=(.*)$", tokens.read_text(), re.M))
    found.pop("PATH")
    return found


def live_tokens(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [JG, "token", "ls", "--json"], env=env, capture_output=True, text=True, check=True
    )
    return [token["id"] for token in json.loads(done.stdout)]


def gone(demo: Demo, *busy: int) -> bool:
    """Within 30 s: nothing of the demo left, its ports free again."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not demo.left() and all(free(port) for port in busy):
            return True
        time.sleep(0.2)
    return False


def test_a_hangup_stops_it_and_a_rerun_after_source_follows_port_keeping_the_tokens(
    tmp_path: Path, demos: list[Demo]
) -> None:
    port, mail, port2, mail2 = ports(4)
    env = base_env(tmp_path) | {"PORT": str(port), "MAIL_PORT": str(mail)}
    first = Demo(env, tmp_path / "first.out", port)
    demos.append(first)
    first.ready()
    tokens = tmp_path / ".demo-tokens"
    before = sourced(tokens)
    first.stop(signal.SIGHUP)  # the terminal is closed
    assert gone(first, port, mail), first.output
    assert "jitgate serve stopped on SIGTERM" in first.output

    # source .demo-tokens, then PORT=… MAIL_PORT=… make run
    again = base_env(tmp_path) | before | {"PORT": str(port2), "MAIL_PORT": str(mail2)}
    second = Demo(again, tmp_path / "second.out", port2)
    demos.append(second)
    second.ready()
    served = re.search(r"^policy: +(\S+)$", second.output, re.M)
    assert served, second.output
    policy = Path(served.group(1)).read_text()
    assert f"  public_url: http://127.0.0.1:{port2} " in policy  # the links, to this port
    assert f"      smtp_port: {mail2}\n" in policy  # the mail, to this catcher
    after = sourced(tokens)
    assert after["JITGATE_SERVER"] == f"http://127.0.0.1:{port2}"
    kept = {k: v for k, v in after.items() if k.startswith("TOKEN_")}
    assert kept == {k: v for k, v in before.items() if k.startswith("TOKEN_")}
    assert len(live_tokens(env)) == 9  # 8 people and the gateway: none minted again

    second.stop(signal.SIGTERM)
    assert gone(second, port2, mail2), second.output


def test_a_rerun_revokes_the_previous_tokens_when_one_no_longer_works_and_ctrl_c_stops_it(
    tmp_path: Path, demos: list[Demo]
) -> None:
    port, mail = ports(2)
    env = base_env(tmp_path) | {"PORT": str(port), "MAIL_PORT": str(mail)}
    first = Demo(env, tmp_path / "first.out", port)
    demos.append(first)
    first.ready()
    tokens = tmp_path / ".demo-tokens"
    before = {v for k, v in sourced(tokens).items() if k.startswith("TOKEN_")}
    first.stop(signal.SIGINT)
    assert gone(first, port, mail), first.output
    revoked = subprocess.run(
        [JG, "token", "revoke", sourced(tokens)["TOKEN_JANE_DOE"]],
        env=env,
        capture_output=True,
        check=False,
    )
    assert revoked.returncode == 0

    second = Demo(env, tmp_path / "second.out", port)
    demos.append(second)
    second.ready()
    after = {v for k, v in sourced(tokens).items() if k.startswith("TOKEN_")}
    assert not before & after
    assert len(live_tokens(env)) == 9  # the earlier ones revoked, not piled up
    second.stop(signal.SIGINT)
    assert gone(second, port, mail), second.output


def test_a_busy_port_stops_the_demo_before_a_token_or_the_banner(tmp_path: Path) -> None:
    port, mail = ports(2)
    env = base_env(tmp_path) | {"PORT": str(port), "MAIL_PORT": str(mail)}
    with socket.socket() as taken:  # an earlier `make run` still serving
        taken.bind(("127.0.0.1", port))
        taken.listen()
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / "demo.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"error: port {port} is in use (by an earlier `make run`?): stop it, or pick "
        "another with PORT="
    ]
    assert not (tmp_path / ".demo-tokens").exists() and not (tmp_path / "demo.db").exists()
