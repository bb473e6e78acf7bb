"""Notification throughput: 1,000 requests created back to back, and the time until every
approver notification reached a real local HTTP sink (a fake Slack Web API on 127.0.0.1).

Each request of the example policy's ``sre-oncall`` role has two eligible approvers, so 1,000
requests make 2,000 Slack direct messages, written to the outbox in the creating transaction
and delivered by the outbox worker (polling every 50 ms, 8 sends in flight) while requests
are still being created. The baseline, measured in the same run against the same sink, is
2,000 bare ``httpx`` POSTs one after the other.

Run: ``.venv/bin/python bench/bench_notifications.py [--requests N]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from notify_sinks import BOT_TOKEN, FakePeers, HttpSink, with_notifications  # noqa: E402

from jitgate.adapters.clock import SystemClock  # noqa: E402
from jitgate.adapters.db.engine import connect  # noqa: E402
from jitgate.adapters.db.migrate import upgrade  # noqa: E402
from jitgate.adapters.db.uow import SqlUnitOfWorkFactory  # noqa: E402
from jitgate.adapters.notifiers.wiring import runtime  # noqa: E402
from jitgate.adapters.policy import load_policy  # noqa: E402
from jitgate.domain.creation import Draft  # noqa: E402
from jitgate.domain.policy import OncallSchedule  # noqa: E402
from jitgate.service.context import Context, PolicyHolder  # noqa: E402
from jitgate.service.delivery import DeliveryOptions, deliver_due  # noqa: E402
from jitgate.service.requests import create_request  # noqa: E402


def baseline(sink: HttpSink, count: int) -> float:
    body = b'{"channel":"U1","text":"baseline"}'
    with httpx.Client() as client:
        started = time.perf_counter()
        for _ in range(count):
            client.post(
                f"{sink.url}/baseline", content=body, headers={"content-type": "application/json"}
            )
        return time.perf_counter() - started


def jitgate_run(sink: HttpSink, requests: int, workdir: Path) -> tuple[float, float, int]:
    policy = load_policy(ROOT / "examples" / "policy.yaml")
    # keep sam on call whatever today's date is: two approvers per request (sam and mark)
    sre = policy.directory.oncall["sre"]
    rotation = replace(sre, rotation=("sam@example.com",))
    directory = replace(policy.directory, oncall={**policy.directory.oncall, "sre": rotation})
    assert isinstance(rotation, OncallSchedule)
    policy = replace(policy, directory=directory)
    channels = {
        "slack": {"type": "slack", "bot_token_env": "BOT", "api_url": f"{sink.url}/slack/api"}
    }
    policy = with_notifications(policy, channels, {"request.created": ("approvers", ("slack",))})
    db = connect(f"sqlite:///{workdir}/bench.db")
    upgrade(db)
    ctx = Context(uow=SqlUnitOfWorkFactory(db), clock=SystemClock(), policy=PolicyHolder(policy))
    rt = runtime(
        ctx,
        env={"BOT": BOT_TOKEN, "JITGATE_LINK_SECRET": "bench-link-secret-0123456789"},
        options=DeliveryOptions(batch=200, concurrency=8),
    )
    expected = requests * 2
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            if deliver_due(rt.delivery).claimed == 0:
                stop.wait(0.05)

    thread = threading.Thread(target=worker, daemon=True)
    started = time.perf_counter()
    thread.start()
    draft = Draft(roles=("sre-oncall",), reason="INC-1 bench")
    for _ in range(requests):
        create_request(ctx, requester="jane.doe@example.com", draft=draft)
    created = time.perf_counter() - started
    sink.wait_for("/slack/api/chat.postMessage", expected, timeout=600)
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join(30)
    delivered = len(sink.paths("/slack/api/chat.postMessage"))
    rt.close()
    db.dispose()
    return elapsed, created, delivered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    sink = HttpSink(FakePeers(["mark.lee@example.com", "sam@example.com"])).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            elapsed, created, delivered = jitgate_run(sink, args.requests, Path(tmp))
        expected = args.requests * 2
        base = baseline(sink, expected)
    finally:
        sink.stop()
    print(
        f"requests created:             {args.requests} in {created:.2f}s "
        f"({args.requests / created:.0f}/s)"
    )
    print(
        f"approver notifications:       {delivered}/{expected} reached the sink in "
        f"{elapsed:.2f}s ({delivered / elapsed:.0f}/s)"
    )
    print(f"lag after the last request:   {elapsed - created:.2f}s")
    print(f"baseline ({expected} bare httpx POSTs): {base:.2f}s ({expected / base:.0f}/s)")
    print(f"ratio jitgate / baseline:     {elapsed / base:.2f}x")
    if delivered != expected:
        raise SystemExit("not every approver notification arrived")


if __name__ == "__main__":
    main()
