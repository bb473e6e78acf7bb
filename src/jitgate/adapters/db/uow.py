"""The SQL unit of work: one connection, one transaction; commit is explicit, and leaving
the block without it rolls back. A write unit on SQLite holds the process write lock and
``BEGIN IMMEDIATE`` from the first statement, so a read-modify-write never interleaves.
A read unit with ``snapshot=False`` is for one statement: on SQLite it runs without a
transaction (one statement is its own snapshot), saving the BEGIN/ROLLBACK round."""

from __future__ import annotations

import threading
from datetime import datetime
from types import TracebackType

import sqlalchemy as sa

from jitgate.adapters.db.audit_repo import SqlAuditLog
from jitgate.adapters.db.engine import Database
from jitgate.adapters.db.misc_repos import SqlIdempotencyKeys, SqlOutbox, SqlSessions, SqlTokens
from jitgate.adapters.db.requests_repo import SqlRequests, read_live_grants
from jitgate.service.ports import GrantView


class SqlUnitOfWork:
    requests: SqlRequests
    audit: SqlAuditLog
    sessions: SqlSessions
    tokens: SqlTokens
    idempotency: SqlIdempotencyKeys
    outbox: SqlOutbox

    def __init__(self, db: Database, *, write: bool = True, snapshot: bool = True) -> None:
        self._db = db
        self._write = write
        self._snapshot = snapshot or write
        self._conn: sa.Connection | None = None
        self._locked = False

    def __enter__(self) -> SqlUnitOfWork:
        if self._write and self._db.is_sqlite:
            self._db.write_lock.acquire()
            self._locked = True
        try:
            conn = self._db.engine.connect().execution_options(
                jitgate_write=self._write, jitgate_snapshot=self._snapshot
            )
            conn.begin()
        except BaseException:
            self._release()
            raise
        self._conn = conn
        locks = not self._db.is_sqlite
        self.requests = SqlRequests(self._db, conn, row_locks=locks)
        self.audit = SqlAuditLog(conn, row_locks=locks)
        self.sessions = SqlSessions(conn, row_locks=locks)
        self.tokens = SqlTokens(conn)
        self.idempotency = SqlIdempotencyKeys(conn)
        self.outbox = SqlOutbox(conn)
        return self

    def commit(self) -> None:
        assert self._conn is not None
        self._conn.commit()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._conn is not None:
                if self._conn.in_transaction():
                    self._conn.rollback()
                self._conn.close()
        finally:
            self._conn = None
            self._release()

    def _release(self) -> None:
        if self._locked:
            self._locked = False
            self._db.write_lock.release()


class SqlUnitOfWorkFactory:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._reader = threading.local()

    def __call__(self, *, write: bool = True, snapshot: bool = True) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.db, write=write, snapshot=snapshot)

    def live_grants(self, user: str, now: datetime) -> list[GrantView]:
        """One statement outside any unit of work: it is its own snapshot, and on SQLite
        (WAL) it never waits for a writer. On SQLite each thread keeps one connection for
        it (this runs on the event loop), saving a pool checkout and check-in per call; on
        PostgreSQL it borrows a pooled connection like everything else."""
        if not self.db.is_sqlite:
            pooled = self.db.engine.raw_connection()
            try:
                return read_live_grants(self.db, pooled, user, now)
            finally:
                pooled.close()
        reader = getattr(self._reader, "connection", None)
        if reader is None:
            reader = self.db.engine.raw_connection()
            reader.detach()  # this thread's own from now on; closed when it is collected
            self._reader.connection = reader
        return read_live_grants(self.db, reader, user, now)
