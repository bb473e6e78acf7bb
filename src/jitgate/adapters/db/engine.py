"""Engines. SQLite runs in WAL mode with one writer: a write unit of work takes a process
lock and ``BEGIN IMMEDIATE``, so writers queue instead of failing; readers never block.
PostgreSQL relies on row locks (``FOR UPDATE``) and the audit head row.

Only ``sqlite:///FILE`` and ``postgresql://…`` (psycopg 3) are accepted: any other URL is
refused with ``ConfigError`` before a driver is imported, and a URL is only ever shown with
its password hidden. ``connect(url, create=False)`` refuses a SQLite file that does not
exist instead of creating an empty database; ``connect`` refuses SQLite in memory (each
jitgate process would have a database of its own, gone when it exits)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from jitgate.adapters.db.prepared import Prepared
from jitgate.config import ConfigError

SUPPORTED = "use sqlite:///FILE or postgresql://…"
NEEDS_FILE = "a SQLite URL needs a file path, e.g. sqlite:///jitgate.db"
_SQLITE = ("sqlite", "sqlite+pysqlite")
_POSTGRES = ("postgresql", "postgres", "postgresql+psycopg")


def shown(url: str) -> str:
    """``url`` as it may be printed: with its password, if any, replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        pass
    at = url.rfind("@")  # not a URL: hide what lies between the last ':' and the last '@'
    colon = url.rfind(":", 0, at)
    if at > 0 and colon >= 0 and not url.startswith("//", colon + 1):
        return f"{url[: colon + 1]}***{url[at:]}"
    return url


def normalise_url(url: str) -> URL:
    """Accept ``sqlite:///FILE`` and ``postgresql://`` (using psycopg 3 for it); refuse any
    other URL with ``ConfigError``, its password hidden."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: postgresql://u:pw@[::1 (port ':1')
        raise ConfigError(f"{shown(url)!r} is not a database URL ({SUPPORTED})") from None
    if parsed.drivername in _POSTGRES:
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in _SQLITE:
        raise ConfigError(f"unsupported database URL {shown(url)!r} ({SUPPORTED})")
    return parsed


def sqlite_file(url: URL) -> str | None:
    """The file a SQLite ``url`` names, or ``None`` (PostgreSQL, or SQLite in memory)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


def require_existing(url: str) -> None:
    """Refuse (``ConfigError``) a SQLite URL whose file does not exist: a command that only
    reads must not create an empty database out of a typo."""
    path = sqlite_file(normalise_url(url))
    if path is not None and not path.startswith("file:") and not Path(path).exists():
        raise ConfigError(
            f"no database at {path}: check --db or JITGATE_DATABASE_URL "
            "(`jitgate db upgrade` creates one)"
        )


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


def connect(url: str, *, pool_size: int = 10, create: bool = True) -> Database:
    """An engine for ``url``; with ``create=False`` a missing SQLite file is refused."""
    if not create:
        require_existing(url)
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        if sqlite_file(parsed) is None:
            raise ConfigError(NEEDS_FILE)
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
