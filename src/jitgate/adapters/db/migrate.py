"""Schema migrations with Alembic; ``upgrade`` brings a database to the newest revision."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from jitgate.adapters.db.engine import Database

HERE = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    return config


MIGRATION_LOCK = 0x6A697467  # "jitg": one migrator at a time across replicas


def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate to ``revision``; on PostgreSQL under an advisory lock, so replicas starting
    together migrate once and the others wait, then find nothing to do."""
    config = alembic_config()
    with db.engine.begin() as conn:
        if not db.is_sqlite:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
