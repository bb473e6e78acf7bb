"""Fixed-request load from Python (used when ``wrk`` is not installed).

``python -m bench._pyload --port P --path /v1/authorize --body JSON --header 'K: V'
-c 50 -d 6 --max 200000`` prints one JSON line: requests, seconds, rps, p50/p99 (ms),
errors. Each of ``-c`` connections sends the same request back to back until the time or
count bound is reached; with ``--rate R`` the connections together send R requests a
second on a fixed schedule (paced, below saturation), so latency is service time, not
queueing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from bench._common import percentile
from bench._http import Conn


async def run(
    port: int,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    c: int,
    d: float,
    limit: int,
    rate: float = 0.0,
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + d
    sent = 0

    async def client(index: int) -> None:
        nonlocal errors, sent
        conn = await Conn("127.0.0.1", port).open()
        raw = conn.encode(method, path, body, headers)
        interval = c / rate if rate > 0 else 0.0
        due = time.perf_counter() + interval * index / c  # clients evenly staggered
        try:
            while time.perf_counter() < deadline and sent < limit:
                if interval:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    due += interval
                sent += 1
                began = time.perf_counter()
                status, _ = await conn.send(raw)
                latencies.append(time.perf_counter() - began)
                if status >= 300:
                    errors += 1
        finally:
            await conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(c)))
    elapsed = time.perf_counter() - began
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "errors": errors,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--method", default="POST")
    p.add_argument("--path", required=True)
    p.add_argument("--body", default="")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("-c", type=int, default=10)
    p.add_argument("-d", type=float, default=5.0)
    p.add_argument("--max", type=int, default=1_000_000)
    p.add_argument("--rate", type=float, default=0.0, help="total req/s; 0 = back to back")
    a = p.parse_args()
    headers = dict(h.split(": ", 1) for h in a.header)
    out = asyncio.run(
        run(a.port, a.method, a.path, a.body.encode(), headers, a.c, a.d, a.max, a.rate)
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
