"""Where the time goes: py-spy on a server process, or cProfile in this one, summarised as
the functions with the largest share of samples (inclusive) and the packages that own the
leaf frames (self time)."""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

LANDMARKS = {
    "solve_dependencies",
    "run_in_threadpool",
    "AsyncIOBackend.run_sync_in_worker_thread",
    "Queue.put",
    "Condition.notify",
    "serialize_response",
    "_run_sync_endpoint",
    "Connection.execute",
    "Connection.commit",
    "Pool.connect",
    "H11Protocol.data_received",
    "RequestResponseCycle.send",
    "JSONResponse.render",
    "Request.json",
    "ModelField.validate",
    "TypeAdapter.validate_python",
}
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")
PACKAGES = (
    "jitgate",
    "sqlalchemy",
    "pydantic",
    "fastapi",
    "starlette",
    "uvicorn",
    "h11",
    "anyio",
    "sqlite3",
    "psycopg",
    "json",
    "asyncio",
    "concurrent",
    "threading",
    "uuid",
    "hashlib",
)


def have_pyspy() -> bool:
    return _pyspy() is not None


def _pyspy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


RATE = 250
Sampling = tuple[subprocess.Popen[bytes], str, int]


def start_pyspy(pid: int, seconds: float, *, workers: bool = False) -> Sampling | None:
    """Sample ``pid`` for ``seconds`` in the background; ``finish_pyspy`` collects it.

    By default only the thread holding the GIL is sampled (``--gil``: in a one-process
    Python server that is where capacity goes). With ``workers`` every thread is sampled,
    idle ones included, and the summary says what the thread-pool workers were doing.
    """
    binary = _pyspy()
    if binary is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as handle:
        out = handle.name
    duration = max(1, round(seconds))
    proc = subprocess.Popen(
        [
            binary,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(duration),
            *(["--idle"] if workers else ["--gil"]),
            "--rate",
            str(RATE),
            "--format",
            "raw",
            "--output",
            out,
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, out, duration if not workers else -duration


def finish_pyspy(started: Sampling | None, top: int = 15) -> str:
    if started is None:
        return "py-spy is not installed (pip install py-spy into .venv)"
    proc, out, duration = started
    proc.wait(timeout=120)
    try:
        text = Path(out).read_text()
    finally:
        os.unlink(out)
    if duration < 0:
        return summarise_workers(text)
    return summarise_collapsed(text, top, possible=RATE * duration)


def summarise_workers(text: str) -> str:
    """What the thread-pool workers were doing, as shares of their samples."""
    states: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or "WorkerThread.run" not in stack:
            continue
        leaf = stack.split(";")[-1]
        if "Queue.get" in stack:
            state = "idle, waiting for work"
        elif "SqlUnitOfWork.__enter__" in leaf:
            state = "waiting for the process-wide SQLite write lock (uow __enter__)"
        elif "commit" in leaf.lower():
            state = "in COMMIT"
        elif "execute" in leaf.lower():
            state = "in the driver, executing a statement"
        else:
            state = "running Python (or waiting for the GIL)"
        states[state] += int(count)
    total = sum(states.values())
    if not total:
        return "no worker-thread samples"
    out = [f"{total} samples of thread-pool workers (idle included):"]
    out += [f"  {100 * n / total:5.1f}%  {state}" for state, n in states.most_common()]
    return "\n".join(out)


def _label(frame: str) -> tuple[str, str]:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip(), "?"
    file = m.group("file")
    short = _short(file)
    return f"{m.group('func')} ({short})", _package(file)


def _short(file: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1].lstrip("/")
    return file


def _package(file: str) -> str:
    for name in PACKAGES:
        if f"/{name}/" in file or file.endswith(f"/{name}.py") or f"{name}/" in file:
            return name
    return Path(file).stem or "?"


def summarise_collapsed(text: str, top: int = 30, possible: int | None = None) -> str:
    inclusive: Counter[str] = Counter()
    leaf_pkg: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [
            f
            for f in stack.split(";")
            if f and not f.startswith("process ") and not f.startswith("thread ")
        ]
        labels = [_label(f) for f in frames]
        for label in {lbl for lbl, _ in labels}:
            inclusive[label] += n
        if labels:
            leaf_pkg[labels[-1][1]] += n
    if not total:
        return "no samples"
    head = f"{total} samples"
    if possible:
        head += f" with the GIL held ({100 * total / possible:.0f}% of {possible} ticks)"
    out = [head + "; inclusive share of jitgate's functions:"]
    ours = [(label, n) for label, n in inclusive.most_common() if "(jitgate/" in label]
    out += [f"  {100 * n / total:5.1f}%  {label}" for label, n in ours[:top]]
    out.append("inclusive share of framework and driver landmarks:")
    marks = [
        (label, n)
        for label, n in inclusive.most_common()
        if label.split(" (")[0] in LANDMARKS and "(jitgate/" not in label
    ]
    out += [f"  {100 * n / total:5.1f}%  {label}" for label, n in marks]
    out.append("self time by package of the leaf frame:")
    for pkg, n in leaf_pkg.most_common(12):
        out.append(f"  {100 * n / total:5.1f}%  {pkg}")
    return "\n".join(out)


def cprofile(fn: Callable[[], object], top: int = 20) -> str:
    """Profile one call of ``fn``: jitgate's functions by cumulative time, then every
    function by its own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats("cumulative").print_stats("jitgate/", top)
    stats.sort_stats("tottime").print_stats(top)
    return _trim(buffer.getvalue())


def _trim(text: str) -> str:
    lines = [
        line
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith(("Ordered by", "List reduced"))
    ]
    return "\n".join(re.sub(r"/\S*/(site-packages|src)/", "", line) for line in lines)
