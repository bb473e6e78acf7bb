"""``jitgate serve``, ``jitgate worker`` and ``jitgate db upgrade``."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

import click

from jitgate.entrypoints.cli.common import (
    db_option,
    fail,
    friendly,
    opened,
    policy_option,
    settings,
)

if TYPE_CHECKING:
    from jitgate.bootstrap import App

log = logging.getLogger("jitgate")


def _app(policy_path: str, db_url: str, **extra: object) -> App:
    from jitgate.adapters.db.migrate import current
    from jitgate.bootstrap import bootstrap

    app = bootstrap(settings(policy_path=policy_path, database_url=db_url, **extra))
    if current(app.db) is None:
        app.close()
        fail("the database has no schema yet: run `jitgate db upgrade` first")
    return app


def _on_sighup(app: App) -> None:
    from jitgate.adapters.policy import PolicyError

    def reload(_signum: int, _frame: FrameType | None) -> None:
        try:
            policy = app.reload_policy()
            log.info("policy reloaded: %s", policy.digest[:12])
        except PolicyError as exc:
            log.error("policy reload refused, the last good policy stays:\n%s", exc)

    signal.signal(signal.SIGHUP, reload)


@click.command()
@policy_option
@db_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@friendly
def serve(policy_path: str, db_url: str, host: str, port: int) -> None:
    """Run the API, the web pages and the scheduler in one process."""
    import uvicorn

    from jitgate.entrypoints.api.app import create_app
    from jitgate.entrypoints.scheduler import Scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = _app(policy_path, db_url, host=host, port=port)
    _on_sighup(app)
    scheduler = Scheduler(app.ctx, app.settings.tick_seconds)
    scheduler.start()
    try:
        uvicorn.run(create_app(app), host=host, port=port, log_level="warning", access_log=False)
    finally:
        scheduler.stop()
        app.close()


@click.command()
@policy_option
@db_option
@friendly
def worker(policy_path: str, db_url: str) -> None:
    """Run only the scheduler (for several replicas on PostgreSQL)."""
    from jitgate.entrypoints.scheduler import Scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = _app(policy_path, db_url)
    _on_sighup(app)
    scheduler = Scheduler(app.ctx, app.settings.tick_seconds)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.stopped.set())
    try:
        scheduler.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app.close()


@click.group()
def db() -> None:
    """Database schema."""


@db.command()
@db_option
@friendly
def upgrade(db_url: str) -> None:
    """Migrate the database to the newest schema."""
    from jitgate.adapters.db.migrate import current
    from jitgate.adapters.db.migrate import upgrade as run_upgrade

    with opened(db_url) as database:
        run_upgrade(database)
        click.echo(f"database at schema {current(database)}", err=True)
    sys.exit(0)
