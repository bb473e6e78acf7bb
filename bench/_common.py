"""Shared pieces: results and their printing, a migrated jitgate on a temporary database,
free ports, and bounded timing helpers."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jitgate.adapters.clock import ManualClock, SystemClock
from jitgate.adapters.db.engine import Database, connect
from jitgate.adapters.db.migrate import upgrade
from jitgate.adapters.db.uow import SqlUnitOfWorkFactory
from jitgate.adapters.policy import load_policy
from jitgate.domain.creation import Draft
from jitgate.domain.policy import Policy
from jitgate.domain.request import AccessRequest
from jitgate.service import requests as use
from jitgate.service.context import Context, PolicyHolder
from jitgate.service.ports import Clock, Principal
from jitgate.service.tokens import create_token

REPO = Path(__file__).resolve().parent.parent
POLICY_PATH = REPO / "examples" / "policy.yaml"
#: A fixed Monday 10:00 UTC for benches that drive a ManualClock.
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

JANE = "jane.doe@example.com"
PRIYA = "priya@example.com"


# -- results -----------------------------------------------------------------------------


@dataclass
class Result:
    """One figure, its baseline from the same run, and the goal it is held to.

    ``ratio`` is ``value / baseline``. ``met`` is decided by ``check`` on the figure itself
    (``value``) or on the ratio, whichever the goal is stated in.
    """

    bench: str
    metric: str
    value: float
    unit: str
    goal: str
    met: bool | None
    baseline: float | None = None
    baseline_label: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    def line(self) -> str:
        parts = [f"{self.bench:<12} {self.metric:<38} {fmt(self.value):>10} {self.unit:<12}"]
        if self.baseline is not None:
            parts.append(f"baseline {fmt(self.baseline)} {self.unit} ({self.baseline_label})")
            parts.append(f"ratio {self.ratio:.3f}x")
        parts.append(f"goal {self.goal}: {verdict(self.met)}")
        return " | ".join(parts)


def verdict(met: bool | None) -> str:
    return {True: "MET", False: "MISSED", None: "n/a"}[met]


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def report(results: Sequence[Result]) -> None:
    for result in results:
        print(result.line())
        for note in result.notes:
            print(f"{'':12} - {note}")
    sys.stdout.flush()


def summary_table(results: Sequence[Result]) -> str:
    rows = [("bench", "metric", "figure", "baseline", "ratio", "goal", "verdict")]
    for r in results:
        rows.append(
            (
                r.bench,
                r.metric,
                f"{fmt(r.value)} {r.unit}",
                f"{fmt(r.baseline)} {r.unit}" if r.baseline is not None else "-",
                f"{r.ratio:.3f}x" if r.ratio is not None else "-",
                r.goal,
                verdict(r.met),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def parser(description: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--profile",
        action="store_true",
        help="also sample the code under test with py-spy/cProfile and print where time goes",
    )
    return p


# -- statistics --------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


# -- a jitgate on a temporary database ---------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tempdir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=f"jitgate-bench-{prefix}-")


def sqlite_url(directory: str, name: str = "jitgate.db") -> str:
    return f"sqlite:///{Path(directory) / name}"


def quiet_notifiers() -> None:
    """The example policy names channels whose secrets a bench does not set; bootstrap warns
    about each once per call. Keep those warnings out of the figures."""
    logging.getLogger("jitgate.notifiers").setLevel(logging.ERROR)


def example_policy() -> Policy:
    return load_policy(POLICY_PATH)


def migrated(url: str) -> Database:
    db = connect(url)
    upgrade(db)
    return db


def context(db: Database, policy: Policy, clock: Clock | None = None) -> Context:
    return Context(
        uow=SqlUnitOfWorkFactory(db), clock=clock or SystemClock(), policy=PolicyHolder(policy)
    )


def manual_clock(at: datetime = START) -> ManualClock:
    return ManualClock(at)


def token(ctx: Context, kind: str, subject: str) -> str:
    assert kind in ("user", "service")
    return create_token(ctx, principal=Principal(kind, subject))  # type: ignore[arg-type]


def self_approved_grant(
    ctx: Context, user: str = JANE, hours: float = 4, role: str = "dev-ssh"
) -> AccessRequest:
    """An active grant created through the service (``dev-ssh`` approves itself)."""
    draft = Draft(roles=(role,), reason="bench: active grant", duration=timedelta(hours=hours))
    request = use.create_request(ctx, requester=user, draft=draft).request
    assert request.state.value == "active", request.state
    return request
