"""The README walk-through runs verbatim against `scripts/demo.sh` (what `make run` runs):
a real `jitgate serve` process, the real CLI and curl, on the real clock."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from served import free_port

REPO = Path(__file__).resolve().parents[2]


def walkthrough_block() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Walk-through", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "README has no bash block under Walk-through"
    return match.group(1)


def wait_ready(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, "jitgate exited during start-up"
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("jitgate did not become ready")


def test_readme_walkthrough_runs_verbatim(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")},
        "PORT": str(port),
        "DEMO_TOKENS": str(tmp_path / ".demo-tokens"),
        "JITGATE_DATABASE_URL": f"sqlite:///{tmp_path}/demo.db",
    }
    server = subprocess.Popen(
        ["bash", str(REPO / "scripts" / "demo.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", walkthrough_block()],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        assert server.stdout is not None
        server.stdout.close()
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "refused: nobody approves their own request" in out
    assert "state     active" in out
    assert '"allowed":true' in out and '"request_id"' in out
    assert "state     revoked" in out
    assert "access.revoked" in out and "access.used" in out
    assert re.search(r"^ok: \d+ events", out, re.M)
    assert (tmp_path / "evidence.json").exists()
