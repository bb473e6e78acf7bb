"""On PostgreSQL every replica keeps the database server's time (SPEC §9.6: a grant is never
honoured outside its window "whatever … a replica's clock"): the clock follows the real
server's ``clock_timestamp()``, not the host's wall clock."""

from __future__ import annotations

import sqlalchemy as sa

from jitgate.adapters.db.clock import DatabaseClock, server_time


def test_the_clock_keeps_the_server_s_time(pg_db_url: str) -> None:
    engine = sa.create_engine(pg_db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        clock = DatabaseClock(lambda: server_time(engine), every=0.05).start()
        for _ in range(5):
            ours, theirs = clock.now(), server_time(engine)
            assert abs((theirs - ours).total_seconds()) < 0.5
        clock.close()
    finally:
        engine.dispose()


def test_a_replica_on_postgresql_runs_on_the_database_s_clock(db_url: str) -> None:
    from jitgate.adapters.clock import SystemClock
    from jitgate.bootstrap import bootstrap
    from jitgate.config import Settings
    from served import EXAMPLE_POLICY_PATH

    app = bootstrap(Settings(policy_path=str(EXAMPLE_POLICY_PATH), database_url=db_url))
    try:
        if app.db.is_sqlite:  # one host: its own clock
            assert isinstance(app.ctx.clock, SystemClock)
        else:
            assert isinstance(app.ctx.clock, DatabaseClock)
            ours, theirs = app.ctx.clock.now(), server_time(app.db.engine)
            assert abs((theirs - ours).total_seconds()) < 0.5
    finally:
        app.close()
