"""10,000 grants ending in the same second: from the clock passing ``ends_at`` until all are
``expired``, each with its ``access.expired`` audit event, through
``jitgate.service.lifecycle.tick(ctx)``; goal <= 3 s. Baseline: the same number of plain
``UPDATE requests SET state = 'expired' ... WHERE id = ?`` in one transaction (executemany,
same engine and pragmas), on an identical database.

Setup (not timed): a migrated database, one ``dev-ssh`` grant created through the service
with a ``ManualClock`` (wired by ``bootstrap``, so the notification planner is in place),
and 9,999 copies of its row bulk-inserted with new ids and ``ends_at`` spread over 10 ms of
the same second. After the tick the bench checks every row is ``expired``, every id has
exactly one ``access.expired`` event and the audit chain verifies (that walk is timed and
printed separately). SQLite always; PostgreSQL too when a throwaway server can start.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from bench._common import (
    JANE,
    START,
    Result,
    example_policy,
    median,
    migrated,
    parser,
    quiet_notifiers,
    report,
    self_approved_grant,
    sqlite_url,
    tempdir,
)
from bench._pg import postgres
from bench._profile import cprofile
from jitgate.adapters.clock import ManualClock
from jitgate.adapters.db import tables as t
from jitgate.bootstrap import App, bootstrap
from jitgate.config import Settings
from jitgate.service.lifecycle import tick

GRANTS = int(os.environ.get("BENCH_GRANTS", "10000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
GOAL_S = 3.0
USERS = (JANE, "ravi@example.com", "priya@example.com", "sam@example.com")


@dataclass
class Built:
    app: App
    clock: ManualClock
    ids: list[str]
    ends: Any

    def close(self) -> None:
        self.app.close()


def build(url: str) -> Built:
    """A migrated database holding ``GRANTS`` active grants that end in one second."""
    os.environ.setdefault("JITGATE_LINK_SECRET", "bench-only-link-secret")
    quiet_notifiers()
    migrated(url).dispose()
    clock = ManualClock(START)
    app = bootstrap(Settings(database_url=url), policy=example_policy(), clock=clock)
    template = self_approved_grant(app.ctx, hours=1)
    R = t.requests
    with app.db.engine.connect() as conn:
        row = dict(conn.execute(sa.select(R).where(R.c.id == template.id)).one()._mapping)
    assert template.ends_at is not None
    rows = []
    for i in range(GRANTS - 1):
        copy = dict(row)
        copy["id"] = str(uuid.uuid4())
        copy["requester"] = USERS[i % len(USERS)]
        copy["ends_at"] = template.ends_at + timedelta(microseconds=i)
        rows.append(copy)
    with app.db.engine.begin() as conn:
        for start in range(0, len(rows), 2000):
            conn.execute(R.insert(), rows[start : start + 2000])
    return Built(app, clock, [template.id, *(r["id"] for r in rows)], template.ends_at)


def expire_with_tick(built: Built) -> tuple[float, int]:
    built.clock.set(built.ends + timedelta(seconds=1))
    began = time.perf_counter()
    done = tick(built.app.ctx)
    return time.perf_counter() - began, done.expired


def check(built: Built) -> float:
    """Every grant expired with exactly one ``access.expired`` event; the chain verifies.
    Returns the seconds the chain walk took."""
    R, A = t.requests, t.audit_events
    with built.app.db.engine.connect() as conn:
        states: dict[str, int] = dict(
            conn.execute(sa.select(R.c.state, sa.func.count()).group_by(R.c.state)).all()
        )
        events = conn.execute(
            sa.select(A.c.request_id, sa.func.count())
            .where(A.c.type == "access.expired")
            .group_by(A.c.request_id)
        ).all()
    assert states == {"expired": GRANTS}, states
    per_request: dict[str, int] = {str(rid): int(n) for rid, n in events}
    assert len(per_request) == GRANTS and set(per_request.values()) == {1}, len(per_request)
    assert set(per_request) == set(built.ids)
    began = time.perf_counter()
    with built.app.ctx.uow(write=False) as uow:
        verdict = uow.audit.verify()
    assert verdict.ok, verdict
    return time.perf_counter() - began


def plain_updates(built: Built) -> float:
    closed = built.ends + timedelta(seconds=1)
    stmt = sa.text(
        "UPDATE requests SET state = 'expired', closed_at = :closed, "
        "close_reason = 'grant ended', version = version + 1 WHERE id = :id"
    ).bindparams(sa.bindparam("closed", type_=t.UTCDateTime()))
    params = [{"id": i, "closed": closed} for i in built.ids]
    began = time.perf_counter()
    conn = built.app.db.engine.connect().execution_options(jitgate_write=True)
    with conn, conn.begin():
        result = conn.execute(stmt, params)
    elapsed = time.perf_counter() - began
    assert result.rowcount in (GRANTS, -1), result.rowcount
    return elapsed


def measure(label: str, url_of: Any, profile: bool) -> Result:
    ticks, walks, baselines = [], [], []
    for n in range(REPEATS):
        jit = build(url_of(f"jit{n}"))
        try:
            seconds, expired = expire_with_tick(jit)
            assert expired == GRANTS, expired
            ticks.append(seconds)
            walks.append(check(jit))
        finally:
            jit.close()
        base = build(url_of(f"base{n}"))
        try:
            baselines.append(plain_updates(base))
        finally:
            base.close()
    seconds, baseline, walk = median(ticks), median(baselines), median(walks)
    result = Result(
        "expiry",
        f"{GRANTS:,} grants expired by tick ({label})",
        seconds,
        "s",
        f"<= {GOAL_S:g} s",
        seconds <= GOAL_S,
        baseline=baseline,
        baseline_label=f"{GRANTS:,} plain UPDATEs, one transaction",
        notes=[
            f"median of {REPEATS} fresh databases; tick runs "
            + ", ".join(f"{x:.2f}" for x in ticks)
            + " s; baseline runs "
            + ", ".join(f"{x:.2f}" for x in baselines)
            + " s",
            f"{GRANTS / seconds:,.0f} grants/s; chain verify afterwards {walk:.2f} s "
            f"(tick + verify {seconds + walk:.2f} s); all {GRANTS:,} expired, one "
            "access.expired event each, chain verifies",
        ],
    )
    if profile:
        again = build(url_of("prof"))
        try:
            again.clock.set(again.ends + timedelta(seconds=1))
            result.notes.append("cProfile of one tick:\n" + cprofile(lambda: tick(again.app.ctx)))
        finally:
            again.close()
    return result


def run(profile: bool = False, pg: bool = True) -> list[Result]:
    results = []
    with tempdir("expiry") as tmp:
        results.append(measure("SQLite", lambda name: sqlite_url(tmp, f"{name}.db"), profile))
    if pg and not os.environ.get("BENCH_NO_PG"):
        with postgres() as server:
            if server is not None:
                results.append(measure("PostgreSQL", server.create_database, profile))
    return results


def main() -> None:
    p = parser(__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = p.parse_args()
    report(run(profile=args.profile, pg=not args.no_pg))


if __name__ == "__main__":
    main()
