"""The migrations build exactly the schema the code declares (``adapters.db.tables``), on
SQLite and PostgreSQL, and the newest one goes down and up again."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from jitgate.adapters.db import tables
from jitgate.adapters.db.engine import connect
from jitgate.adapters.db.migrate import current, upgrade


def _differences(url: str) -> list[object]:
    db = connect(url)
    try:
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, tables.metadata))
    finally:
        db.dispose()


def test_the_migrated_schema_is_the_declared_one(db_url: str) -> None:
    db = connect(db_url)
    try:
        upgrade(db)
        head = current(db)
    finally:
        db.dispose()
    assert head is not None
    assert _differences(db_url) == []


def test_the_newest_migration_goes_down_and_up_again(db_url: str) -> None:
    from alembic import command

    from jitgate.adapters.db.migrate import alembic_config

    db = connect(db_url)
    try:
        upgrade(db)
        head = current(db)
        config = alembic_config()
        with db.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "-1")
        assert current(db) != head
        upgrade(db)
        assert current(db) == head
    finally:
        db.dispose()
    assert _differences(db_url) == []


def test_every_migration_only_adds() -> None:
    """The README's upgrade procedure (migrate first, then replace replicas one by one, the
    old ones serving meanwhile) holds only while no upgrade drops, renames or alters."""
    import inspect

    from alembic.script import ScriptDirectory

    from jitgate.adapters.db.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    for revision in script.walk_revisions():
        source = inspect.getsource(revision.module.upgrade)
        for word in ("drop_", "alter_column", "rename", "execute("):
            assert word not in source, f"migration {revision.revision} upgrade uses {word}"
