"""``POST /v1/authorize``: requests/s at 50 concurrent clients against a bare FastAPI POST
(same uvicorn settings, same body and headers, small JSON answer), goal >= 0.6x; and p99
latency at 10 concurrent clients, goal <= 5 ms.

jitgate side: SQLite in a temporary directory, the example policy, a service token, and
jane.doe with an active ``dev-ssh`` grant (self-approved through the service); every call
authorizes ``{user: jane, type: ssh, environment: development}`` and must answer allowed.
Each server is one uvicorn worker in its own process, both up for the whole run; runs
alternate bare / jitgate in rounds and the median round is reported, so load from other
processes on the machine hits both sides alike. The load comes from ``wrk`` (one thread)
when installed, else from ``bench._pyload`` in another process. Server CPU per request
(from ``/proc``) is printed too: it is far less sensitive to a busy machine than req/s.
With PostgreSQL's server binaries on the machine (and no ``--no-pg``), the throughput figure
is measured again with jitgate on a throwaway PostgreSQL, the production setup.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass

import httpx

from bench._common import (
    JANE,
    POLICY_PATH,
    Result,
    context,
    example_policy,
    migrated,
    parser,
    report,
    self_approved_grant,
    sqlite_url,
    tempdir,
    token,
)
from bench._load import Load, describe, drive, paced
from bench._pg import postgres
from bench._profile import finish_pyspy, start_pyspy
from bench._servers import Served, cpu_seconds, served

SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WARMUP = 2.0
THROUGHPUT_CLIENTS = 50
LATENCY_CLIENTS = 10
PACED_RATE = 500.0  # total req/s for the paced latency figure: well below saturation
RATIO_GOAL = 0.6
P99_GOAL_MS = 5.0
BODY = json.dumps({"user": JANE, "type": "ssh", "environment": "development"})
PATH = "/v1/authorize"


@dataclass(frozen=True)
class Run:
    load: Load
    cpu_ms: float  # server CPU per request

    @property
    def rps(self) -> float:
        return self.load.rps


def check(server: Served, headers: dict[str, str], path: str = PATH) -> None:
    answer = httpx.post(
        server.url + path,
        content=BODY,
        headers={**headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["allowed"] is True, answer.text


def measure(server: Served, headers: dict[str, str], clients: int, path: str = PATH) -> Run:
    before = cpu_seconds(server.pid)
    load = drive(server.port, path, BODY, headers, clients, SECONDS)
    used = cpu_seconds(server.pid) - before
    assert load.errors == 0, f"{load.errors} failed requests against {server.kind} {path}"
    return Run(load, 1000 * used / max(1, load.requests))


def median_run(runs: list[Run], key: str) -> Run:
    ordered = sorted(runs, key=lambda r: getattr(r.load, key) if key != "rps" else r.rps)
    return ordered[len(ordered) // 2]


def prepare(tmp: str, url: str | None = None) -> tuple[str, dict[str, str]]:
    url = url or sqlite_url(tmp)
    db = migrated(url)
    ctx = context(db, example_policy())
    gateway = token(ctx, "service", "bench-gateway")
    self_approved_grant(ctx)
    db.dispose()
    return url, {"Authorization": f"Bearer {gateway}"}


def on_postgres(bare: Served) -> Result | None:
    """The same throughput figure with jitgate on PostgreSQL (the production setup): the
    read is then awaited on the event loop (``AsyncPgGrantReader``, which coalesces the
    calls waiting together into one statement). ``None`` without PostgreSQL."""
    if os.environ.get("BENCH_NO_PG"):
        return None
    with postgres() as server:
        if server is None:
            return None
        with tempdir("authorize-pg") as tmp:
            url, headers = prepare(tmp, server.create_database("authorize"))
            with served("jitgate", db=url, policy=str(POLICY_PATH)) as jit:
                check(jit, headers)
                drive(jit.port, PATH, BODY, headers, THROUGHPUT_CLIENTS, WARMUP)
                runs: dict[str, list[Run]] = {"bare": [], "jitgate": []}
                for _ in range(ROUNDS):
                    for side in (bare, jit):
                        runs[side.kind].append(measure(side, headers, THROUGHPUT_CLIENTS))
    j, b = median_run(runs["jitgate"], "rps"), median_run(runs["bare"], "rps")
    cpu_j = statistics.median(r.cpu_ms for r in runs["jitgate"])
    return _throughput(
        "PostgreSQL",
        j,
        b,
        [
            f"rounds jitgate/bare req/s: {_rounds(runs)}",
            f"jitgate server CPU per request {cpu_j:.2f} ms (PostgreSQL's own CPU not "
            f"counted); @50 p50 {j.load.p50_ms:.1f} ms p99 {j.load.p99_ms:.1f} ms",
        ],
    )


def _rounds(runs: dict[str, list[Run]]) -> str:
    pairs = zip(runs["jitgate"], runs["bare"], strict=True)
    return ", ".join(f"{j.rps:,.0f}/{b.rps:,.0f}" for j, b in pairs)


def _throughput(where: str, jitgate: Run, bare: Run, notes: list[str]) -> Result:
    return Result(
        "authorize",
        f"req/s @{THROUGHPUT_CLIENTS} clients{where and ', ' + where}",
        jitgate.rps,
        "req/s",
        f">= {RATIO_GOAL}x bare",
        jitgate.rps / bare.rps >= RATIO_GOAL,
        baseline=bare.rps,
        baseline_label="bare async FastAPI POST",
        notes=notes,
    )


def run(profile: bool = False, pg: bool = True) -> list[Result]:
    busy: dict[str, list[Run]] = {"bare": [], "jitgate": []}
    calm: dict[str, list[Run]] = {"bare": [], "jitgate": []}
    paced_runs: dict[str, Load] = {}
    profiled = None
    with tempdir("authorize") as tmp:
        url, headers = prepare(tmp)
        with served("bare") as bare, served("jitgate", db=url, policy=str(POLICY_PATH)) as jit:
            for server in (bare, jit):
                check(server, headers)
                drive(server.port, PATH, BODY, headers, THROUGHPUT_CLIENTS, WARMUP)
            for _ in range(ROUNDS):
                for server in (bare, jit):
                    busy[server.kind].append(measure(server, headers, THROUGHPUT_CLIENTS))
                for server in (bare, jit):
                    calm[server.kind].append(measure(server, headers, LATENCY_CLIENTS))
            for server in (bare, jit):
                paced_runs[server.kind] = paced(
                    server.port, PATH, BODY, headers, LATENCY_CLIENTS, SECONDS * 2, PACED_RATE
                )
            check(bare, headers, "/sync")
            sync = measure(bare, headers, THROUGHPUT_CLIENTS, "/sync")
            check(bare, headers, "/raw")
            raw = measure(bare, headers, THROUGHPUT_CLIENTS, "/raw")
            postgres_result = on_postgres(bare) if pg else None
            if profile:
                sampler = start_pyspy(jit.pid, SECONDS * 2)
                drive(jit.port, PATH, BODY, headers, THROUGHPUT_CLIENTS, SECONDS * 2)
                profiled = finish_pyspy(sampler)

    jb, bb = median_run(busy["jitgate"], "rps"), median_run(busy["bare"], "rps")
    jc, bc = median_run(calm["jitgate"], "p99_ms"), median_run(calm["bare"], "p99_ms")
    cpu_j = statistics.median(r.cpu_ms for r in busy["jitgate"])
    cpu_b = statistics.median(r.cpu_ms for r in busy["bare"])
    throughput = _throughput(
        "",
        jb,
        bb,
        [
            f"load: {describe()}; {ROUNDS} rounds of {SECONDS:g}s per side, median "
            f"round shown; rounds jitgate/bare req/s: {_rounds(busy)}",
            f"server CPU per request: jitgate {cpu_j:.2f} ms, bare {cpu_b:.2f} ms "
            f"(capacity ratio on an idle core ~ {cpu_b / cpu_j:.2f}x)",
            f"@50 latency: jitgate p50 {jb.load.p50_ms:.1f} ms p99 {jb.load.p99_ms:.1f} ms; "
            f"bare p50 {bb.load.p50_ms:.1f} ms p99 {bb.load.p99_ms:.1f} ms",
            f"reference: the same bare endpoint as a sync (thread-pool) route: "
            f"{sync.rps:,.0f} req/s, {sync.cpu_ms:.2f} ms CPU/request",
            f"reference: the same answer from a plain ASGI callable, no framework at all "
            f"(jitgate's fast path skips the framework too): {raw.rps:,.0f} req/s, "
            f"{raw.cpu_ms:.2f} ms CPU/request; jitgate = {jb.rps / raw.rps:.2f}x of it",
        ],
    )
    latency = Result(
        "authorize",
        f"p99 latency @{LATENCY_CLIENTS} clients",
        jc.load.p99_ms,
        "ms",
        f"<= {P99_GOAL_MS:g} ms",
        jc.load.p99_ms <= P99_GOAL_MS,
        baseline=bc.load.p99_ms,
        baseline_label="bare async FastAPI POST",
        notes=[
            f"jitgate p50 {jc.load.p50_ms:.2f} ms at {jc.rps:,.0f} req/s; "
            f"bare p50 {bc.load.p50_ms:.2f} ms at {bc.rps:,.0f} req/s "
            f"(closed loop: p50 ~ {LATENCY_CLIENTS} / req/s)",
            "rounds p99 jitgate/bare ms: "
            + ", ".join(
                f"{j.load.p99_ms:.1f}/{b.load.p99_ms:.1f}"
                for j, b in zip(calm["jitgate"], calm["bare"], strict=True)
            ),
        ],
    )
    pj, pb = paced_runs["jitgate"], paced_runs["bare"]
    steady = Result(
        "authorize",
        f"p99 latency @{LATENCY_CLIENTS} clients paced {PACED_RATE:g} req/s",
        pj.p99_ms,
        "ms",
        f"<= {P99_GOAL_MS:g} ms",
        pj.p99_ms <= P99_GOAL_MS,
        baseline=pb.p99_ms,
        baseline_label="bare async FastAPI POST, same pace",
        notes=[
            f"{LATENCY_CLIENTS} clients sending {PACED_RATE:g} req/s in all on a schedule "
            f"(below saturation): latency is service time, not queueing; "
            f"jitgate p50 {pj.p50_ms:.2f} ms, bare p50 {pb.p50_ms:.2f} ms; "
            f"{pj.requests} and {pb.requests} requests, errors {pj.errors}/{pb.errors}",
        ],
    )
    if profiled:
        throughput.notes.append("py-spy --gil of the jitgate server at @50:\n" + profiled)
    return [throughput, latency, steady, *([postgres_result] if postgres_result else [])]


def main() -> None:
    p = parser(__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = p.parse_args()
    report(run(profile=args.profile, pg=not args.no_pg))


if __name__ == "__main__":
    main()
