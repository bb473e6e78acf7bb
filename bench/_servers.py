"""Start a server of ``bench._serve`` in a subprocess on a free loopback port; stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from bench._common import REPO, free_port

STARTUP_SECONDS = 30.0


@dataclass(frozen=True)
class Served:
    kind: str
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def served(kind: str, *, db: str | None = None, policy: str | None = None) -> Iterator[Served]:
    port = free_port()
    command = [sys.executable, "-m", "bench._serve", kind, "--port", str(port)]
    if db:
        command += ["--db", db]
    if policy:
        command += ["--policy", policy]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "JITGATE_LINK_SECRET": "bench-only-secret",
        "JITGATE_DELIVERY": "0",
    }
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed after the server stops)
    proc = subprocess.Popen(command, cwd=REPO, env=env, stderr=log)
    try:
        try:
            _wait_ready(proc, f"http://127.0.0.1:{port}/healthz")
        except RuntimeError:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise
        yield Served(kind, port, proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()


def _wait_ready(proc: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready at {url} after {STARTUP_SECONDS:.0f}s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from ``/proc``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
