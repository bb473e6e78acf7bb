"""PostgreSQL: the authorize read on the event loop, through psycopg's async connections.

On PostgreSQL the read is a network round trip. Run synchronously it needs a thread-pool
hop per call (about 0.3 ms of CPU, and 40 threads contending for the GIL under load);
here it is awaited on the loop instead, on up to ``size`` connections of its own in
autocommit, so a read never sees an older snapshot.

Reads are coalesced: a call that finds every connection busy waits, and the next free
connection reads for all the callers waiting then, in one statement (``requester = ANY(...)``
over the widest window of their ``now``s); each caller then keeps only its own grants
honoured at its own ``now``. Under load this turns many round trips, each costing the
driver and the database their per-statement work, into one; an idle server reads at once,
as before. A batch is read after every caller in it arrived, so a revocation committed
before a call is seen by it.

Invariant: a failure is never an answer. A connection that broke is dropped and the read
is tried once more on a fresh one; any other error fails every call of the batch (the
callers fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import psycopg

from jitgate.adapters.db.engine import Database
from jitgate.adapters.db.requests_repo import grant_views_by_user, live_grants_of_many_query
from jitgate.service.ports import GrantView

CONNECTIONS = 4
BATCH = 256  # users in one read at most
Connection = psycopg.AsyncConnection[tuple[object, ...]]
Waiting = tuple[str, datetime, "asyncio.Future[list[GrantView]]"]


class AsyncPgGrantReader:
    def __init__(self, db: Database, *, size: int = CONNECTIONS) -> None:
        self._db = db
        self._conninfo = db.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._size = size
        self._idle: list[Connection] = []
        self._waiting: list[Waiting] = []
        # tasks reading batches, at most ``size``; each holds at most one connection at a
        # time, so this also bounds the connections in use
        self._readers = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def live_grants(self, user: str, now: datetime) -> list[GrantView]:
        future: asyncio.Future[list[GrantView]] = asyncio.get_running_loop().create_future()
        self._waiting.append((user, now, future))
        if self._readers < self._size:
            self._readers += 1
            task = asyncio.create_task(self._read_batches())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _read_batches(self) -> None:
        """Read for everyone waiting, a batch at a time, until no one is."""
        try:
            while self._waiting:
                batch = [w for w in self._waiting[:BATCH] if not w[2].done()]
                del self._waiting[:BATCH]
                if batch:
                    await self._answer(batch)
        finally:
            self._readers -= 1

    async def _answer(self, batch: list[Waiting]) -> None:
        nows = [now for _, now, _ in batch]
        try:
            mine = await self._read(sorted({user for user, _, _ in batch}), min(nows), max(nows))
        except Exception as exc:  # every caller of the batch fails closed
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # the reader itself is cancelled (shutdown): so are they
            for _, _, future in batch:
                future.cancel()
            raise
        for user, now, future in batch:
            if not future.done():
                future.set_result([g for g in mine.get(user, ()) if g.honoured(now)])

    async def _read(
        self, users: list[str], earliest: datetime, latest: datetime
    ) -> dict[str, list[GrantView]]:
        query = live_grants_of_many_query(self._db)
        args = query.bind({"users": users, "earliest": earliest, "latest": latest})
        for attempt in (1, 2):
            conn = await self._acquire()
            try:
                cursor = await conn.execute(query.sql, args)
                fetched = await cursor.fetchall()
            except psycopg.OperationalError:
                broken = conn.broken
                await _close(conn)
                if attempt == 2 or not broken:
                    raise
                continue  # the server restarted or dropped us: once more, on a new one
            except BaseException:
                await _close(conn)
                raise
            self._idle.append(conn)
            return grant_views_by_user(query.convert(fetched))
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Close the idle connections (at shutdown, on the loop that opened them)."""
        while self._idle:
            await _close(self._idle.pop())

    def close(self) -> None:
        """Close what is left without a loop (``App.close`` after the server stopped):
        ends each connection's libpq session, which needs no I/O on the event loop."""
        while self._idle:
            self._idle.pop().pgconn.finish()

    async def _acquire(self) -> Connection:
        if self._idle:
            return self._idle.pop()
        return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)


async def _close(conn: Connection) -> None:
    with contextlib.suppress(psycopg.Error):  # already gone
        await conn.close()
