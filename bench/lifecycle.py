"""Request lifecycles through the HTTP API: ``POST /v1/requests`` (jane.doe asks for
``staging-ssh``, which needs one approval) then ``POST /v1/requests/{id}/approve`` by her
team lead priya, answered ``active``; lifecycles/s at 8 concurrent clients against a bare
FastAPI POST that does one SQLite insert (SQLAlchemy Core, an engine from jitgate's own
``connect``, so WAL and the same pragmas) with the same body; goal >= 0.5x.

Both servers are one uvicorn worker in their own process on a file in one temporary
directory; the clients run in another process (``bench.lifecycle --drive``: asyncio and a
minimal keep-alive HTTP/1.1 client). Runs alternate bare / jitgate in rounds; the median
round is reported. A lifecycle is two HTTP calls and two write transactions, the baseline
one of each: the per-call ratio is printed as well. The same rounds at 1 client show how
each side scales with concurrency. With PostgreSQL's server binaries on the machine (and no
``--no-pg``), the figure is measured again with both servers on one throwaway PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from bench._common import (
    JANE,
    POLICY_PATH,
    PRIYA,
    REPO,
    Result,
    context,
    example_policy,
    migrated,
    parser,
    percentile,
    quiet_notifiers,
    report,
    sqlite_url,
    tempdir,
    token,
)
from bench._http import Conn
from bench._pg import postgres
from bench._profile import finish_pyspy, start_pyspy
from bench._servers import Served, cpu_seconds, served

SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
MAX_PER_RUN = 20_000
CLIENTS = 8
GOAL = 0.5
ROLE = "staging-ssh"
CREATE = {"roles": [ROLE], "reason": "bench: lifecycle (INC-0000)", "duration": "1h"}


# -- the clients (run in their own process) ------------------------------------------------


async def _drive(
    port: int, mode: str, jane: str, priya: str, clients: int, seconds: float, limit: int
) -> dict[str, Any]:
    creates: list[float] = []
    approves: list[float] = []
    deadline = time.perf_counter() + seconds
    started = 0
    failures: list[str] = []
    as_jane = {"Authorization": f"Bearer {jane}"}
    as_priya = {"Authorization": f"Bearer {priya}"}

    async def client() -> None:
        nonlocal started
        conn = await Conn("127.0.0.1", port).open()
        try:
            while time.perf_counter() < deadline and started < limit and not failures:
                started += 1
                t0 = time.perf_counter()
                if mode in ("bare", "floor"):
                    path, expected = ("/insert", 201) if mode == "bare" else ("/sync", 200)
                    status, body = await conn.request("POST", path, CREATE, as_jane)
                    creates.append(time.perf_counter() - t0)
                    if status != expected:
                        failures.append(f"{path}: {status} {body}")
                    continue
                status, body = await conn.request("POST", "/v1/requests", CREATE, as_jane)
                t1 = time.perf_counter()
                creates.append(t1 - t0)
                if status != 201 or body.get("state") != "pending":
                    failures.append(f"create: {status} {body}")
                    break
                path = f"/v1/requests/{body['id']}/approve"
                status, body = await conn.request("POST", path, {"comment": "ok"}, as_priya)
                approves.append(time.perf_counter() - t1)
                if status != 200 or body.get("state") != "active":
                    failures.append(f"approve: {status} {body}")
        finally:
            await conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    done = len(approves) if mode == "jitgate" else len(creates)
    return {
        "done": done,
        "seconds": elapsed,
        "create_p50_ms": percentile(creates, 50) * 1000,
        "create_p99_ms": percentile(creates, 99) * 1000,
        "approve_p50_ms": percentile(approves, 50) * 1000 if approves else 0.0,
        "approve_p99_ms": percentile(approves, 99) * 1000 if approves else 0.0,
        "failures": failures[:3],
    }


def drive_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--drive", action="store_true")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["bare", "floor", "jitgate"], required=True)
    p.add_argument("--jane", required=True)
    p.add_argument("--priya", required=True)
    p.add_argument("-c", type=int, default=CLIENTS)
    p.add_argument("-d", type=float, default=SECONDS)
    p.add_argument("--max", type=int, default=MAX_PER_RUN)
    a = p.parse_args(argv)
    out = asyncio.run(_drive(a.port, a.mode, a.jane, a.priya, a.c, a.d, a.max))
    print(json.dumps(out))


# -- the bench -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    kind: str
    done: int
    seconds: float
    cpu_ms: float
    data: dict[str, Any]

    @property
    def rate(self) -> float:
        return self.done / self.seconds


def measure(
    server: Served,
    tokens: tuple[str, str],
    seconds: float = SECONDS,
    clients: int = CLIENTS,
    mode: str | None = None,
) -> Run:
    """``mode`` is the server's kind, or ``floor``: the bare server's ``POST /sync``, which
    answers the same body with no database (the framework's own cost per call)."""
    command = [
        sys.executable,
        "-m",
        "bench.lifecycle",
        "--drive",
        "--port",
        str(server.port),
        "--mode",
        mode or server.kind,
        "--jane",
        tokens[0],
        "--priya",
        tokens[1],
        "-c",
        str(clients),
        "-d",
        str(seconds),
    ]
    before = cpu_seconds(server.pid)
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=True, cwd=REPO
    ).stdout
    used = cpu_seconds(server.pid) - before
    data = json.loads(out.strip().splitlines()[-1])
    assert not data["failures"], data["failures"]
    return Run(server.kind, data["done"], data["seconds"], 1000 * used / max(1, data["done"]), data)


def _active_count(url: str) -> tuple[int, bool]:
    from jitgate.adapters.db.engine import connect
    from jitgate.adapters.db.uow import SqlUnitOfWork

    db = connect(url)
    try:
        with db.engine.connect() as conn:
            active = conn.execute(
                sa.text("SELECT count(*) FROM requests WHERE state = 'active'")
            ).scalar_one()
        with SqlUnitOfWork(db, write=False) as uow:
            ok = uow.audit.verify().ok
        return int(active), ok
    finally:
        db.dispose()


Runs = dict[str, list[Run]]


def _tokens(url: str) -> tuple[str, str]:
    db = migrated(url)
    ctx = context(db, example_policy())
    tokens = (token(ctx, "user", JANE), token(ctx, "user", PRIYA))
    db.dispose()
    return tokens


def _alternate(servers: tuple[Served, Served], tokens: tuple[str, str], clients: int) -> Runs:
    """``ROUNDS`` runs per side, alternating bare / jitgate, after a warm-up of each."""
    runs: Runs = {"bare": [], "jitgate": []}
    for server in servers:
        measure(server, tokens, 1.0, clients)  # warm-up
    for _ in range(ROUNDS):
        for server in servers:
            runs[server.kind].append(measure(server, tokens, clients=clients))
    return runs


def _middle(runs: list[Run]) -> Run:
    ordered = sorted(runs, key=lambda r: r.rate)
    return ordered[len(ordered) // 2]


def _rounds(runs: Runs) -> str:
    pairs = zip(runs["jitgate"], runs["bare"], strict=True)
    return ", ".join(f"{x.rate:,.0f}/{y.rate:,.0f}" for x, y in pairs)


def _result(where: str, runs: Runs, notes: list[str]) -> Result:
    j, b = _middle(runs["jitgate"]), _middle(runs["bare"])
    cpu_j = statistics.median(r.cpu_ms for r in runs["jitgate"])
    cpu_b = statistics.median(r.cpu_ms for r in runs["bare"])
    ratio = j.rate / b.rate
    return Result(
        "lifecycle",
        f"create+approve->active /s @{CLIENTS} clients{where and ', ' + where}",
        j.rate,
        "ops/s",
        f">= {GOAL}x bare insert",
        ratio >= GOAL,
        baseline=b.rate,
        baseline_label=f"bare FastAPI POST, one {where or 'SQLite'} insert",
        notes=[
            f"{ROUNDS} rounds of {SECONDS:g}s per side, median round; rounds jitgate/bare: "
            + _rounds(runs),
            f"per HTTP call: jitgate {2 * j.rate:,.0f} calls/s = {2 * ratio:.3f}x the bare insert",
            f"jitgate create p50 {j.data['create_p50_ms']:.1f} ms p99 "
            f"{j.data['create_p99_ms']:.1f} ms; approve p50 {j.data['approve_p50_ms']:.1f} ms "
            f"p99 {j.data['approve_p99_ms']:.1f} ms; bare insert p50 "
            f"{b.data['create_p50_ms']:.1f} ms p99 {b.data['create_p99_ms']:.1f} ms",
            f"server CPU per op: jitgate {cpu_j:.2f} ms per lifecycle, bare {cpu_b:.2f} ms "
            f"per insert (capacity ratio on an idle core ~ {cpu_b / cpu_j:.2f}x)",
            *notes,
        ],
    )


def service_cost(url: str, count: int = 300) -> float:
    """CPU ms per create + approve, called in-process on one thread (no HTTP), with the
    wiring of the served app (``bootstrap``: notification planner, backends, policy)."""
    from jitgate.bootstrap import bootstrap
    from jitgate.config import Settings
    from jitgate.domain.creation import Draft
    from jitgate.service.decisions import approve_request
    from jitgate.service.requests import create_request

    os.environ.setdefault("JITGATE_LINK_SECRET", "bench-only-link-secret")
    quiet_notifiers()
    migrated(url).dispose()
    app = bootstrap(Settings(policy_path=str(POLICY_PATH), database_url=url, scheduler=False))
    draft = Draft(roles=(ROLE,), reason=CREATE["reason"], duration=timedelta(hours=1))

    def lifecycle() -> None:
        created = create_request(app.ctx, requester=JANE, draft=draft).request
        decided = approve_request(app.ctx, request_id=created.id, approver=PRIYA, comment="ok")
        assert decided.request.state.value == "active", decided.request.state

    try:
        for _ in range(count // 5):  # warm-up
            lifecycle()
        began = time.process_time()
        for _ in range(count):
            lifecycle()
        return 1000 * (time.process_time() - began) / count
    finally:
        app.close()


def on_postgres() -> Result | None:
    """The same figure with both servers on one throwaway PostgreSQL (the production
    setup); ``None`` without PostgreSQL's server binaries or with ``BENCH_NO_PG``."""
    if os.environ.get("BENCH_NO_PG"):
        return None
    with postgres() as server:
        if server is None:
            return None
        url = server.create_database("lifecycle")
        tokens = _tokens(url)
        bare_url = server.create_database("lifecycle_bare")
        with (
            served("bare", db=bare_url) as bare,
            served("jitgate", db=url, policy=str(POLICY_PATH)) as jit,
        ):
            runs = _alternate((bare, jit), tokens, CLIENTS)
        active, chain_ok = _active_count(url)
    assert chain_ok, "the audit chain does not verify after the PostgreSQL lifecycle runs"
    note = f"check: {active} requests active at the end, audit chain verifies: {chain_ok}"
    return _result("PostgreSQL", runs, [note])


def run(profile: bool = False, pg: bool = True) -> list[Result]:
    profiled = None
    with tempdir("lifecycle") as tmp:
        url = sqlite_url(tmp)
        tokens = _tokens(url)
        with (
            served("bare", db=sqlite_url(tmp, "bare.db")) as bare,
            served("jitgate", db=url, policy=str(POLICY_PATH)) as jit,
        ):
            runs = _alternate((bare, jit), tokens, CLIENTS)
            alone = _alternate((bare, jit), tokens, 1)
            floor = statistics.median(
                measure(bare, tokens, mode="floor").cpu_ms for _ in range(ROUNDS)
            )
            if profile:
                sampler = start_pyspy(jit.pid, SECONDS * 2)
                measure(jit, tokens, SECONDS * 2)
                profiled = finish_pyspy(sampler)
                sampler = start_pyspy(jit.pid, SECONDS * 2, workers=True)
                measure(jit, tokens, SECONDS * 2)
                profiled += "\n" + finish_pyspy(sampler)
        active, chain_ok = _active_count(url)
        service_ms = service_cost(sqlite_url(tmp, "service.db"))

    j1, b1 = _middle(alone["jitgate"]), _middle(alone["bare"])
    budget = 2 * statistics.median(r.cpu_ms for r in runs["bare"])
    result = _result(
        "",
        runs,
        [
            f"at 1 client: jitgate {j1.rate:,.0f} /s, bare {b1.rate:,.0f} /s "
            f"({j1.rate / b1.rate:.3f}x); jitgate's rate at {CLIENTS} clients is "
            f"{_middle(runs['jitgate']).rate / j1.rate:.2f}x its rate at 1, the bare "
            f"insert's {_middle(runs['bare']).rate / b1.rate:.2f}x",
            f"budget for {GOAL}x: two bare inserts' CPU, {budget:.2f} ms per lifecycle. The "
            f"framework alone (the bare app's POST /sync, same body, no database) costs "
            f"{floor:.2f} ms a call, so two calls leave {budget - 2 * floor:.2f} ms for two "
            f"audited write transactions; jitgate's create + approve without HTTP (in-process, "
            f"one thread) cost {service_ms:.2f} ms in this run",
            f"check: {active} requests active at the end, audit chain verifies: {chain_ok}",
        ],
    )
    assert chain_ok, "the audit chain does not verify after the lifecycle runs"
    if profiled:
        result.notes.append("py-spy --gil of the jitgate server:\n" + profiled)
    postgres_result = on_postgres() if pg else None
    return [result, *([postgres_result] if postgres_result else [])]


def main() -> None:
    if "--drive" in sys.argv[1:]:
        drive_main(sys.argv[1:])
        return
    p = parser(__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = p.parse_args()
    report(run(profile=args.profile, pg=not args.no_pg))


if __name__ == "__main__":
    main()
