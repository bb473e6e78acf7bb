"""PostgreSQL: the authorize read awaited on psycopg's async connections gives what the
sync read gives, sees every commit at once, survives the server dropping its connection,
and never opens more connections than it is allowed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
import pytest

from jitgate.adapters.db.async_reads import AsyncPgGrantReader
from jitgate.domain.creation import Draft
from jitgate.domain.states import State
from jitgate.service import access
from jitgate.service.decisions import approve_request, revoke_request
from jitgate.service.requests import create_request

pytestmark = pytest.mark.postgres

JANE = "jane.doe@example.com"
PRIYA = "priya@example.com"  # jane's team lead: approves staging-ssh
SEC = "sec@example.com"


def _active_grant(ctx) -> str:  # type: ignore[no-untyped-def]
    draft = Draft(roles=("staging-ssh",), reason="INC-9")
    request = create_request(ctx, requester=JANE, draft=draft).request
    done = approve_request(ctx, request_id=request.id, approver=PRIYA).request
    assert done.state is State.ACTIVE
    return request.id


def _backends(pg_db_url: str) -> int:
    dbname = pg_db_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_db_url.replace("/" + dbname, "/postgres"), autocommit=True) as c:
        row = c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_async_read_answers_as_the_sync_one(pg_db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(pg_db_url)
    request_id = _active_grant(ctx)
    reader = AsyncPgGrantReader(ctx.uow.db)

    async def check() -> None:
        now = clock.now()
        assert await reader.live_grants(JANE, now) == ctx.uow.live_grants(JANE, now)
        (grant,) = await reader.live_grants(JANE, now)
        assert grant.id == request_id and grant.ends_at.utcoffset() == timedelta(0)
        verdict = await access.authorize_async(
            ctx, reader, user=JANE.upper(), type="ssh", environment="staging"
        )
        assert verdict == access.authorize(ctx, user=JANE, type="ssh", environment="staging")
        assert verdict.allowed and verdict.request_id == request_id
        assert not (
            await access.authorize_async(ctx, reader, user=JANE, type="ssh", environment="prod")
        ).allowed
        # a grant past its end is never honoured, whatever the scheduler has done
        assert grant.ends_at is not None
        clock.set(grant.ends_at)
        assert not (
            await access.authorize_async(ctx, reader, user=JANE, type="ssh", environment="staging")
        ).allowed
        await reader.aclose()

    asyncio.run(check())


def test_the_async_read_sees_a_revocation_at_once(pg_db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(pg_db_url)
    request_id = _active_grant(ctx)
    reader = AsyncPgGrantReader(ctx.uow.db)

    async def check() -> None:
        assert [g.id for g in await reader.live_grants(JANE, clock.now())] == [request_id]
        revoke_request(ctx, request_id=request_id, actor=SEC, reason="done")
        assert await reader.live_grants(JANE, clock.now()) == []
        await reader.aclose()

    asyncio.run(check())


def test_a_dropped_connection_is_replaced_and_the_read_retried(pg_db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(pg_db_url)
    request_id = _active_grant(ctx)
    reader = AsyncPgGrantReader(ctx.uow.db, size=1)
    dbname = pg_db_url.rsplit("/", 1)[1]

    async def check() -> None:
        assert [g.id for g in await reader.live_grants(JANE, clock.now())] == [request_id]
        with psycopg.connect(
            pg_db_url.replace("/" + dbname, "/postgres"), autocommit=True
        ) as admin:  # what a server restart or a failover does to an idle connection
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            )
        assert [g.id for g in await reader.live_grants(JANE, clock.now())] == [request_id]
        await reader.aclose()

    asyncio.run(check())


def test_concurrent_reads_share_at_most_size_connections(pg_db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(pg_db_url)
    _active_grant(ctx)
    ctx.uow.db.dispose()  # only the reader's connections are left to count
    reader = AsyncPgGrantReader(ctx.uow.db, size=3)

    async def one(n: int) -> int:
        await asyncio.sleep(0.001 * (n % 7))  # arrivals spread over reads in flight
        return len(await reader.live_grants(JANE, clock.now()))

    async def check() -> None:
        assert await asyncio.gather(*(one(n) for n in range(200))) == [1] * 200
        assert 1 <= _backends(pg_db_url) <= 3
        await reader.aclose()
        for _ in range(100):  # a closed backend leaves pg_stat_activity a moment later
            if _backends(pg_db_url) == 0:
                break
            await asyncio.sleep(0.02)
        assert _backends(pg_db_url) == 0

    asyncio.run(check())


def test_calls_that_wait_together_are_read_in_one_statement_each_at_its_own_now(
    pg_db_url: str, make_ctx, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 calls for different users and different moments: one read, and each answer is
    the one the sync read gives for that user at that moment."""
    ctx, clock = make_ctx(pg_db_url)
    _active_grant(ctx)
    (grant,) = ctx.uow.live_grants(JANE, clock.now())
    reads: list[list[str]] = []
    real_read = AsyncPgGrantReader._read

    async def counted(self, users, earliest, latest):  # type: ignore[no-untyped-def]
        reads.append(users)
        return await real_read(self, users, earliest, latest)

    monkeypatch.setattr(AsyncPgGrantReader, "_read", counted)
    reader = AsyncPgGrantReader(ctx.uow.db, size=1)
    moments = [grant.starts_at - timedelta(seconds=1), clock.now(), grant.ends_at]
    asks = [(user, moments[n % 3]) for n, user in enumerate([JANE, PRIYA, SEC, JANE.upper()] * 10)]

    async def check() -> list[list[str]]:
        answers = await asyncio.gather(*(reader.live_grants(u.lower(), at) for u, at in asks))
        await reader.aclose()
        return [[g.id for g in a] for a in answers]

    answers = asyncio.run(check())
    assert reads == [sorted({JANE, PRIYA, SEC})]
    assert answers == [[g.id for g in ctx.uow.live_grants(u.lower(), at)] for u, at in asks]
    assert (
        sum(a == [grant.id] for a in answers) == 6
    )  # jane, at the moment inside it: n % 12 in (4, 7)


def test_a_failed_read_fails_every_call_of_its_batch_and_a_cancelled_call_drops_out(
    pg_db_url: str, make_ctx, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, clock = make_ctx(pg_db_url)
    request_id = _active_grant(ctx)
    reader = AsyncPgGrantReader(ctx.uow.db, size=1)
    real_read = AsyncPgGrantReader._read
    failing = [True]

    async def flaky(self, users, earliest, latest):  # type: ignore[no-untyped-def]
        if failing[0]:
            raise RuntimeError("the database is gone")
        return await real_read(self, users, earliest, latest)

    monkeypatch.setattr(AsyncPgGrantReader, "_read", flaky)

    async def check() -> None:
        now = clock.now()
        calls = [asyncio.ensure_future(reader.live_grants(JANE, now)) for _ in range(5)]
        done = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(d, RuntimeError) for d in done), done  # never an empty answer
        failing[0] = False
        calls = [asyncio.ensure_future(reader.live_grants(JANE, now)) for _ in range(5)]
        await asyncio.sleep(0)  # all five are waiting for the read
        calls[2].cancel()
        rest = await asyncio.gather(*calls[:2], *calls[3:])
        assert [[g.id for g in a] for a in rest] == [[request_id]] * 4
        assert calls[2].cancelled()
        await reader.aclose()

    asyncio.run(check())
