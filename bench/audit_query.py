"""The events of one request among 1,000,000 stored audit events (about 10 per request, over
100,000 requests), goal < 20 ms at the median and at p99 over 200 random request ids:
through ``GET /v1/requests/{id}/events`` in-process (the app under a test client), through
the service function ``queries.request_events`` behind it, and through the repository
(``uow.audit.find``). Baseline: a primary-key lookup of one row of the same table.

The rows are bulk-inserted with ``executemany`` on a raw connection (valid-looking, not a
valid chain: chain validity is not what this measures); each request's events are spread
over the whole log (a shuffled order), the worst case for locality. Every method queries
its own random ids, so one does not warm the pages of another.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from bench._common import (
    JANE,
    POLICY_PATH,
    Result,
    example_policy,
    median,
    migrated,
    parser,
    percentile,
    quiet_notifiers,
    report,
    self_approved_grant,
    sqlite_url,
    tempdir,
    token,
)
from bench._profile import cprofile
from jitgate.adapters.db import tables as t
from jitgate.bootstrap import App, bootstrap
from jitgate.config import Settings
from jitgate.service import queries
from jitgate.service.ports import AuditQuery

EVENTS = int(os.environ.get("BENCH_AUDIT_EVENTS", "1000000"))
PER_REQUEST = 10
QUERIES = 200
WARMUP = 20
GOAL_MS = 20.0
USERS = (JANE, "ravi@example.com", "priya@example.com", "sam@example.com")
TYPES = (
    "request.created",
    "approval.recorded",
    "request.approved",
    "access.granted",
    "access.used",
    "session.ended",
    "access.expiring",
    "access.expired",
)


def _load(path: str, template_id: str) -> list[tuple[str, str]]:
    """Bulk rows: ``EVENTS / PER_REQUEST`` requests and ``EVENTS`` audit events. Returns the
    (request id, requester) of every request."""
    rnd = random.Random(7)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    try:
        template = conn.execute("SELECT * FROM requests WHERE id = ?", (template_id,)).fetchone()
        columns = [d[0] for d in conn.execute("SELECT * FROM requests LIMIT 0").description]
        at_id, at_requester = columns.index("id"), columns.index("requester")
        count = EVENTS // PER_REQUEST
        requests = [
            (str(uuid.UUID(int=rnd.getrandbits(128), version=4)), USERS[i % len(USERS)])
            for i in range(count)
        ]
        marks = ",".join("?" * len(columns))
        conn.execute("BEGIN")
        rows = []
        for rid, who in requests:
            row = list(template)
            row[at_id], row[at_requester] = rid, who
            rows.append(row)
        conn.executemany(f"INSERT INTO requests VALUES ({marks})", rows)
        conn.execute("COMMIT")
        seq = conn.execute("SELECT coalesce(max(seq), 0) FROM audit_events").fetchone()[0]
        prev = conn.execute("SELECT hash FROM audit_head WHERE id = 1").fetchone()[0]
        order = [i for i in range(count) for _ in range(PER_REQUEST)]
        rnd.shuffle(order)
        # Secondary indexes are dropped for the load and created again after it (same SQL,
        # from sqlite_master): building an index from sorted data is several times faster.
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = 'audit_events' AND sql IS NOT NULL"
        ).fetchall()
        for name, _sql in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        chunk = 100_000
        for start in range(0, len(order), chunk):
            batch = []
            for offset, index in enumerate(order[start : start + chunk]):
                seq += 1
                rid, who = requests[index]
                kind = TYPES[(start + offset) % len(TYPES)]
                digest = rnd.getrandbits(256).to_bytes(32, "big").hex()
                batch.append(
                    (
                        seq,
                        _event_id(seq, rnd),
                        _at(seq),
                        kind,
                        who if offset % 3 else "system",
                        rid,
                        f'{{"kind":"{kind}","requester":"{who}","n":{seq}}}',
                        prev,
                        digest,
                    )
                )
                prev = digest
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO audit_events VALUES (?,?,?,?,?,?,?,?,?)", batch)
            conn.execute("COMMIT")
        for _name, sql in indexes:
            conn.execute(sql)
        conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, prev))
        conn.execute("ANALYZE")
        return requests
    finally:
        conn.close()


def _event_id(seq: int, rnd: random.Random) -> str:
    """Time-ordered, UUIDv7-shaped (what a bulk export would hold); cheap to make."""
    return f"{seq >> 16:08x}-{seq & 0xFFFF:04x}-7{rnd.getrandbits(12):03x}-8000-" + (
        f"{rnd.getrandbits(48):012x}"
    )


def _at(seq: int) -> str:
    """``2026-01-01`` plus ``seq`` x 50 ms, in the audit log's text form."""
    ms = seq * 50
    return (
        f"2026-01-01T{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}."
        f"{ms % 1000 * 1000:06d}Z"
    )


def _time(
    fn: Callable[[Any], object], inputs: list[Any], warm: list[Any]
) -> tuple[float, float, list[float]]:
    for item in warm:
        fn(item)
    took = []
    for item in inputs:
        began = time.perf_counter()
        fn(item)
        took.append(1000 * (time.perf_counter() - began))
    return median(took), percentile(took, 99), took


def run(profile: bool = False) -> list[Result]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's note about httpx in its test client
        from fastapi.testclient import TestClient

    from jitgate.entrypoints.api.app import create_app

    os.environ.setdefault("JITGATE_LINK_SECRET", "bench-only-link-secret")
    quiet_notifiers()
    with tempdir("audit") as tmp:
        url = sqlite_url(tmp)
        migrated(url).dispose()
        app: App = bootstrap(
            Settings(database_url=url, policy_path=str(POLICY_PATH)), policy=example_policy()
        )
        try:
            template = self_approved_grant(app.ctx)
            began = time.perf_counter()
            requests = _load(url.removeprefix("sqlite:///"), template.id)
            load_s = time.perf_counter() - began
            tokens = {who: token(app.ctx, "user", who) for who in USERS}
            rnd = random.Random(11)
            picks = rnd.sample(requests, 4 * (QUERIES + WARMUP))
            sets = [picks[i::4] for i in range(4)]
            total = _count(app)
            assert total >= EVENTS, total
            A = t.audit_events
            seqs = [rnd.randrange(1, total) for _ in range(QUERIES + WARMUP)]

            def pk(seq: int) -> object:
                with app.db.engine.connect() as conn:
                    row = conn.execute(sa.select(A).where(A.c.seq == seq)).first()
                assert row is not None
                return row

            def repo(item: tuple[str, str]) -> object:
                with app.ctx.uow(write=False) as uow:
                    found = uow.audit.find(AuditQuery(request_id=item[0], limit=10_000))
                assert len(found) == PER_REQUEST, len(found)
                return found

            def service(item: tuple[str, str]) -> object:
                found = queries.request_events(app.ctx, request_id=item[0], viewer=item[1])
                assert len(found) == PER_REQUEST, len(found)
                return found

            client = TestClient(create_app(app))

            def http(item: tuple[str, str]) -> object:
                answer = client.get(
                    f"/v1/requests/{item[0]}/events",
                    headers={"Authorization": f"Bearer {tokens[item[1]]}"},
                )
                assert answer.status_code == 200, answer.text
                assert len(answer.json()["items"]) == PER_REQUEST
                return answer

            base = _time(pk, seqs[WARMUP:], seqs[:WARMUP])
            measured = {
                "repository uow.audit.find": _time(repo, sets[0][WARMUP:], sets[0][:WARMUP]),
                "service queries.request_events": _time(
                    service, sets[1][WARMUP:], sets[1][:WARMUP]
                ),
                "GET /v1/requests/{id}/events": _time(http, sets[2][WARMUP:], sets[2][:WARMUP]),
            }
            plan = _plan(app, requests[0][0])
            profiled = None
            if profile:
                profiled = cprofile(lambda: [service(item) for item in sets[3]])
            client.close()
        finally:
            app.close()

    results = []
    for label, (med, p99, _) in measured.items():
        results.append(
            Result(
                "audit_query",
                f"{label} median",
                med,
                "ms",
                f"< {GOAL_MS:g} ms",
                med < GOAL_MS,
                baseline=base[0],
                baseline_label="PK lookup of one audit row, median",
            )
        )
        results.append(
            Result(
                "audit_query",
                f"{label} p99",
                p99,
                "ms",
                f"< {GOAL_MS:g} ms",
                p99 < GOAL_MS,
                baseline=base[1],
                baseline_label="PK lookup of one audit row, p99",
            )
        )
    results[0].notes += [
        f"{total:,} audit events over {len(requests):,} requests, generated in {load_s:.1f} s; "
        f"{QUERIES} queries per method after {WARMUP} warm-up, each method its own ids",
        f"query plan: {plan}",
    ]
    if profiled:
        results[-1].notes.append(
            f"cProfile of {QUERIES + WARMUP} queries.request_events:\n{profiled}"
        )
    return results


def _count(app: App) -> int:
    with app.db.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT max(seq) FROM audit_events")).scalar_one())


def _plan(app: App, request_id: str) -> str:
    A = t.audit_events
    stmt = sa.select(A).where(A.c.request_id == request_id).order_by(A.c.seq).limit(10_000)
    sql = str(stmt.compile(app.db.engine, compile_kwargs={"literal_binds": True}))
    with app.db.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
    return "; ".join(str(r[-1]) for r in rows)


def main() -> None:
    args = parser(__doc__.splitlines()[0] if __doc__ else None).parse_args()
    report(run(profile=args.profile))


if __name__ == "__main__":
    main()
