"""Schema migrations with Alembic; ``upgrade`` brings a database to the newest revision.

A jitgate runs only on the schema it was released with (``expected()``): ``check`` refuses
any other one with ``SchemaMismatch``, a one-line ``ConfigError`` that says what to do, and
``upgrade`` refuses a schema newer than it knows (a database migrated by a newer release)
the same way, never with Alembic's traceback."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from jitgate.adapters.db.engine import Database
from jitgate.config import ConfigError

HERE = Path(__file__).parent / "migrations"
_VERSIONS = sa.table("alembic_version", sa.column("version_num", sa.String))


class SchemaMismatch(ConfigError):
    """The database's schema is not the one this jitgate runs on; the message says why and
    what to do."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    return config


@cache
@cache
def _revisions() -> tuple[str, frozenset[str]]:
    """The newest revision this jitgate knows, and all it knows: read from the migration
    scripts once (they do not change under a running process), not on every probe."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    assert head is not None, "no migrations"
    return head, frozenset(s.revision for s in script.walk_revisions())


def expected() -> str:
    """The schema revision this jitgate runs on: its newest migration."""
    return _revisions()[0]


MIGRATION_LOCK = 0x6A697467  # "jitg": one migrator at a time across replicas


def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate to ``revision``; on PostgreSQL under an advisory lock, so replicas starting
    together migrate once and the others wait, then find nothing to do. A database at a
    revision this jitgate does not know is refused (``SchemaMismatch``)."""
    config = alembic_config()
    with db.engine.begin() as conn:
        if not db.is_sqlite:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        _refuse_newer(_revision(conn))
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return _revision(conn)


def problem(db: Database) -> str | None:
    """Why this jitgate cannot run on the database's schema (none yet, older, newer), or
    ``None`` when the schema is the expected one. For ``check``."""
    return problem_of(current(db))


def is_newer(revision: str | None) -> bool:
    """``revision`` was made by a newer jitgate: one this jitgate does not know."""
    return revision is not None and revision not in _revisions()[1]


def problem_of(revision: str | None) -> str | None:
    """``problem`` for a database at ``revision`` (``None``: no schema yet)."""
    if revision is None:
        return "the database has no schema yet: run `jitgate db upgrade` first"
    head, known = _revisions()
    if revision not in known:
        return _newer(revision)
    if revision != head:
        return (
            f"the database is at schema {revision}, this jitgate needs {head}: "
            "run `jitgate db upgrade` first"
        )
    return None


def check(db: Database) -> None:
    """Refuse (``SchemaMismatch``) a database whose schema is not the expected one."""
    found = problem(db)
    if found is not None:
        raise SchemaMismatch(found)


def refuse_newer(db: Database) -> None:
    """Refuse (``SchemaMismatch``) a database migrated by a newer jitgate; a database with
    no schema yet or an older one passes (``upgrade`` or ``check`` decides about those)."""
    _refuse_newer(current(db))


def _revision(conn: sa.Connection) -> str | None:
    """The revision Alembic recorded, read directly: Alembic's own reader logs its set-up,
    and a refusal at start must stay one line."""
    if not sa.inspect(conn).has_table(_VERSIONS.name):
        return None
    found = sorted(conn.execute(sa.select(_VERSIONS.c.version_num)).scalars())
    return "+".join(found) or None  # several rows are branches this jitgate never makes


def _refuse_newer(revision: str | None) -> None:
    if revision is not None and revision not in _revisions()[1]:
        raise SchemaMismatch(_newer(revision))


def _newer(revision: str) -> str:
    return (
        f"the database is at schema {revision}, newer than this jitgate knows "
        f"(up to {expected()}): upgrade jitgate"
    )
