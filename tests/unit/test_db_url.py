"""Database URLs (``adapters.db.engine``): only SQLite and PostgreSQL, refused by name with
the password hidden, before any driver is imported; a missing SQLite file is refused when
the caller must not create one."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitgate.adapters.db.engine import connect, normalise_url, require_existing, shown
from jitgate.config import ConfigError


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///./jitgate.db", "sqlite"),
        ("sqlite://", "sqlite"),
        ("sqlite+pysqlite:////var/lib/jitgate.db", "sqlite+pysqlite"),
        ("postgresql://jit:pw@db/jit", "postgresql+psycopg"),
        ("postgres://db/jit", "postgresql+psycopg"),
        ("postgresql+psycopg://db/jit", "postgresql+psycopg"),
    ],
)
def test_sqlite_and_postgresql_are_accepted(url: str, driver: str) -> None:
    assert normalise_url(url).drivername == driver


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql://root:hunter2@db/jit", "unsupported database URL 'mysql://root:***@db/jit'"),
        ("postgresql+psycopg2://u:hunter2@db/jit", "unsupported database URL"),
        ("oracle://db", "unsupported database URL 'oracle://db'"),
        ("jit.db", "'jit.db' is not a database URL"),
        ("pg//u:hunter2@db", "'pg//u:***@db' is not a database URL"),
    ],
)
def test_anything_else_is_refused_by_name_without_its_password(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as raised:
        connect(url)
    assert words in str(raised.value)
    assert "(use sqlite:///FILE or postgresql://…)" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_shown_hides_only_the_password() -> None:
    assert shown("postgresql://jit:hunter2@db:5432/jit") == "postgresql://jit:***@db:5432/jit"
    assert shown("postgresql://jit@db/jit") == "postgresql://jit@db/jit"
    assert shown("sqlite:///./jitgate.db") == "sqlite:///./jitgate.db"


def test_a_missing_sqlite_file_is_refused_unless_it_may_be_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/typo.db"
    with pytest.raises(ConfigError, match=f"no database at {tmp_path}/typo.db"):
        connect(url, create=False)
    assert not (tmp_path / "typo.db").exists()
    made = connect(url)  # creating is the default: serve, worker, db upgrade
    made.engine.connect().close()
    made.dispose()
    require_existing(url)
    connect(url, create=False).dispose()
    require_existing("sqlite://")  # in memory: nothing to find
    require_existing("postgresql://db/jit")  # not a file
