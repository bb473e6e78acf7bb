"""Engines. SQLite runs in WAL mode with one writer: a write unit of work takes a process
lock and ``BEGIN IMMEDIATE``, so writers queue instead of failing; readers never block.
PostgreSQL relies on row locks (``FOR UPDATE``) and the audit head row.

Only ``sqlite:///FILE`` and ``postgresql://…`` (psycopg 3) are accepted: any other URL is
refused with ``ConfigError`` before a driver is imported, and a URL is only ever shown with
its password hidden. ``connect(url, create=False)`` refuses a SQLite file that does not
exist instead of creating an empty database; ``connect`` refuses SQLite in memory (each
jitgate process would have a database of its own, gone when it exits). A SQLite file that
cannot be opened raises ``UnopenableDatabase`` (still an ``OperationalError``), which names
the file and the likely reason (its folder is missing or not writable) instead of the
driver's bare "unable to open database file"."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from jitgate.adapters.db.prepared import Prepared
from jitgate.config import ConfigError

SUPPORTED = "use sqlite:///FILE or postgresql://…"
NEEDS_FILE = "a SQLite URL needs a file path, e.g. sqlite:///jitgate.db"
_SQLITE = ("sqlite", "sqlite+pysqlite")
_POSTGRES = ("postgresql", "postgres", "postgresql+psycopg")
POOL_SECONDS = 10  # the longest a call waits for a free connection (PostgreSQL)
CONNECT_SECONDS = 10  # ... and for a new one, unless the URL sets connect_timeout


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
        """Close the pool. A connection still checked out (a thread not yet done) is closed
        when it comes back, rather than left open until the collector finds it."""
        event.listen(self.engine.pool, "checkin", _close_on_checkin)
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
        _name_unopenable(engine, str(sqlite_file(parsed)))
    else:
        # a database that stalls rather than refusing costs a call seconds, not forever
        engine = sa.create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=20,
            pool_pre_ping=True,
            pool_timeout=POOL_SECONDS,
            connect_args={}
            if "connect_timeout" in parsed.query
            else {"connect_timeout": CONNECT_SECONDS},
        )
    return Database(engine)


def _close_on_checkin(dbapi_connection: Any, _record: Any) -> None:
    if dbapi_connection is not None:
        dbapi_connection.close()


class UnopenableDatabase(OperationalError):
    """A SQLite file that cannot be opened, with the file and the likely reason."""

    def __init__(self, message: str, orig: BaseException) -> None:
        super().__init__(None, None, orig)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _name_unopenable(engine: sa.Engine, path: str) -> None:
    @event.listens_for(engine, "handle_error")
    def on_error(context: ExceptionContext) -> None:
        if "unable to open database file" in str(context.original_exception):
            why = unopenable_reason(path)
            raise UnopenableDatabase(
                f"cannot open the SQLite database {path}: {why}", context.original_exception
            )


def unopenable_reason(path: str) -> str:
    """Why SQLite may be unable to open (or create) the file at ``path``."""
    if path.startswith("file:"):
        return "check the file URI, and that its folder exists and is writable"
    file = Path(path)
    folder = file.parent
    where = f"{folder}" if str(folder) != "." else f"{Path.cwd()} (the current folder)"
    if not folder.exists():
        return f"the folder {where} does not exist (create it, or correct --db)"
    if not folder.is_dir():
        return f"{where} is not a folder"
    if file.is_dir():
        return "that is a folder, not a database file"
    if not file.exists() and not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {where} is not writable, so the file cannot be created there"
    if file.exists() and not os.access(file, os.R_OK | os.W_OK):
        return "the file is not readable and writable by this user"
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"the folder {where} is not writable (SQLite also writes {file.name}-wal and "
            f"{file.name}-shm beside the file)"
        )
    return "check that the file and its folder are readable and writable by this user"


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
