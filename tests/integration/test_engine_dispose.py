"""Closing a database while a thread still holds one of its connections (a server stopping
with a call under way): the connection is closed when it comes back, not left open for
the garbage collector to find (which psycopg reports as a ResourceWarning, at some
unrelated later moment)."""

from __future__ import annotations

import sqlalchemy as sa

from jitgate.adapters.db.engine import connect


def test_a_connection_checked_in_after_dispose_is_closed(pg_db_url: str) -> None:
    db = connect(pg_db_url)
    held = db.engine.connect()
    held.execute(sa.text("SELECT 1"))
    raw = held.connection.dbapi_connection
    assert raw is not None
    idle = db.engine.connect()
    idle_raw = idle.connection.dbapi_connection
    assert idle_raw is not None
    idle.close()  # back in the pool before the close: dispose closes it
    db.dispose()
    assert idle_raw.closed and not raw.closed
    held.close()  # the late one
    assert raw.closed
