"""Drive one fixed request at a server: with ``wrk`` when installed (C, one thread, so the
load generator leaves a core to the server), otherwise with ``bench._pyload`` in another
process. Either way the result is requests/s and latency percentiles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from bench._common import REPO

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {{\\"requests\\":%d,\\"seconds\\":%f,\\"p50_ms\\":%f,\\"p99_ms\\":%f,"
    .. "\\"errors\\":%d}}\\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass(frozen=True)
class Load:
    tool: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @classmethod
    def parse(cls, tool: str, connections: int, data: dict[str, Any]) -> Load:
        """From the JSON a load generator printed (``requests``, ``seconds``, ``p50_ms``,
        ``p99_ms``, ``errors``)."""
        return cls(
            tool,
            connections,
            data["requests"],
            data["seconds"],
            data["p50_ms"],
            data["p99_ms"],
            data["errors"],
        )


def tool() -> str:
    return "wrk" if shutil.which("wrk") and not os.environ.get("BENCH_NO_WRK") else "python"


def describe() -> str:
    if tool() == "wrk":
        return "wrk, one thread, keep-alive"
    return "bench._pyload: asyncio, raw keep-alive HTTP/1.1, its own process"


def _lua(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def drive(
    port: int, path: str, body: str, headers: dict[str, str], connections: int, seconds: float
) -> Load:
    if tool() == "wrk":
        return _wrk(port, path, body, headers, connections, seconds)
    return _python(port, path, body, headers, connections, seconds)


def _wrk(
    port: int, path: str, body: str, headers: dict[str, str], connections: int, seconds: float
) -> Load:
    lines = "\n".join(f"wrk.headers[{_lua(k)}] = {_lua(v)}" for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.format(body=_lua(body), headers=lines))
    try:
        command = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            script.name,
            f"http://127.0.0.1:{port}{path}",
        ]
        out = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=True
        ).stdout
    finally:
        os.unlink(script.name)
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    data = json.loads(line[len("BENCH ") :])
    return Load.parse("wrk", connections, data)


def paced(
    port: int,
    path: str,
    body: str,
    headers: dict[str, str],
    connections: int,
    seconds: float,
    rate: float,
) -> Load:
    """``connections`` clients sending ``rate`` requests a second in all, on a schedule."""
    return _python(port, path, body, headers, connections, seconds, rate)


def _python(
    port: int,
    path: str,
    body: str,
    headers: dict[str, str],
    connections: int,
    seconds: float,
    rate: float = 0.0,
) -> Load:
    command = [
        sys.executable,
        "-m",
        "bench._pyload",
        "--port",
        str(port),
        "--path",
        path,
        "--body",
        body,
        "-c",
        str(connections),
        "-d",
        str(seconds),
        "--rate",
        str(rate),
    ]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=True, cwd=REPO
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return Load.parse("python", connections, data)
