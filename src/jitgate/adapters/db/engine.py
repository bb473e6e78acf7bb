"""Engines. SQLite runs in WAL mode with one writer: a write unit of work takes a process
lock and ``BEGIN IMMEDIATE``, so writers queue instead of failing; readers never block.
PostgreSQL relies on row locks (``FOR UPDATE``) and the audit head row."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url

from jitgate.adapters.db.prepared import Prepared


def normalise_url(url: str) -> URL:
    """Accept ``postgresql://`` and use psycopg 3 for it."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


@dataclass
class Database:
    engine: sa.Engine
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    _prepared: dict[int, tuple[sa.Select[Any], Prepared]] = field(default_factory=dict)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def prepared(self, statement: sa.Select[Any]) -> Prepared:
        """``statement`` compiled once for this engine (module-level statements only)."""
        known = self._prepared.get(id(statement))
        if known is None or known[0] is not statement:
            known = (statement, Prepared(statement, self.engine.dialect))
            self._prepared[id(statement)] = known
        return known[1]

    def dispose(self) -> None:
        self.engine.dispose()


def connect(url: str, *, pool_size: int = 10) -> Database:
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed, pool_size=pool_size, max_overflow=20)
        _sqlite_pragmas(engine)
    else:
        engine = sa.create_engine(parsed, pool_size=pool_size, max_overflow=20, pool_pre_ping=True)
    return Database(engine)


def _sqlite_pragmas(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: sa.Connection) -> None:
        options = conn.get_execution_options()
        if options.get("jitgate_write", False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif options.get("jitgate_snapshot", True):
            conn.exec_driver_sql("BEGIN")
