"""``jitgate serve``, ``jitgate worker`` and ``jitgate db upgrade``."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Callable
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


def _app(policy_path: str, db_url: str, migrate: bool, **extra: object) -> App:
    from jitgate.bootstrap import bootstrap
    from jitgate.service.policy import record_policy_loaded

    # migrated to the newest schema, or with --no-migrate refused unless it is already
    # there (one line: no schema yet, older, or newer than this jitgate)
    app = bootstrap(
        settings(policy_path=policy_path, database_url=db_url, **extra), migrate=migrate
    )
    record_policy_loaded(app.ctx, policy=app.ctx.policy.current, actor="system", via="startup")
    return app


def _log_to_stderr() -> None:
    """INFO and up on stderr; alembic's set-up chatter at import is not ours to show (a
    refusal at start stays one line)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _jobs(app: App) -> list[Callable[[], object]]:
    """The scheduler's extra jobs: notification delivery (off with JITGATE_DELIVERY=0),
    backend retries and reconciliation (every JITGATE_RECONCILE_SECONDS)."""
    from jitgate.service.reconcile import scheduler_jobs

    delivery = app.notify.jobs() if app.notify is not None else []
    return [*delivery, *scheduler_jobs(app.ctx, interval=app.settings.reconcile_seconds)]


def _on_sighup(app: App) -> None:
    """On SIGHUP, load the policy again; whatever goes wrong, a bug too (its traceback at
    debug level), is one line in the log, never a traceback out of the signal handler,
    and the last good policy stays."""
    from jitgate.adapters.policy import PolicyError

    def reload(_signum: int, _frame: FrameType | None) -> None:
        from jitgate.service.policy import record_policy_loaded

        try:
            policy = app.reload_policy()
        except PolicyError as exc:
            found = "; ".join(str(p) for p in exc.problems)
            log.error("policy reload refused: %s (the last good policy stays)", found)
            return
        except Exception as exc:
            log.error(
                "policy reload refused: unexpected %s: %s (a bug in jitgate; the last good "
                "policy stays)",
                type(exc).__name__,
                exc,
            )
            log.debug("the traceback of that reload", exc_info=True)
            return
        log.info("policy reloaded: %s", policy.digest[:12])
        try:
            record_policy_loaded(app.ctx, policy=policy, actor="system", via="sighup")
        except Exception as exc:  # the policy is in force; only its audit event is missing
            log.error("policy reloaded but not recorded in the audit trail: %r", exc)
            log.debug("the traceback of that failure", exc_info=True)

    signal.signal(signal.SIGHUP, reload)


migrate_option = click.option(
    "--migrate/--no-migrate",
    default=True,
    show_default=True,
    help="Bring the schema to the newest revision first (one replica at a time).",
)


@click.command()
@policy_option
@db_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@migrate_option
@friendly
def serve(policy_path: str, db_url: str, host: str, port: int, migrate: bool) -> None:
    """Run the API, the web pages and the scheduler in one process.

    The scheduler ticks every JITGATE_TICK_SECONDS (default 1) and reconciles backends
    every JITGATE_RECONCILE_SECONDS (default 60).
    """
    from jitgate.entrypoints.api.app import create_app, serve_api
    from jitgate.entrypoints.scheduler import Scheduler

    _log_to_stderr()
    sock = _listen(host, port)  # a busy port fails here, before a migration or a tick
    try:
        app = _app(policy_path, db_url, migrate, host=host, port=port)
    except BaseException:  # a refused policy or database: the port is let go at once
        sock.close()
        raise
    _on_sighup(app)
    scheduler = Scheduler(app.ctx, app.settings.tick_seconds, extra=_jobs(app))
    scheduler.start()
    try:
        serve_api(create_app(app), host, port, sock)
    finally:
        scheduler.stop()
        app.close()


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything runs; one line if the port is taken."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    return sock


@click.command()
@policy_option
@db_option
@migrate_option
@friendly
def worker(policy_path: str, db_url: str, migrate: bool) -> None:
    """Run only the scheduler and notification delivery (for several replicas on PostgreSQL).

    Ticks every JITGATE_TICK_SECONDS (default 1); reconciles backends every
    JITGATE_RECONCILE_SECONDS (default 60).
    """
    from jitgate.entrypoints.scheduler import Scheduler

    _log_to_stderr()
    app = _app(policy_path, db_url, migrate)
    _on_sighup(app)
    scheduler = Scheduler(app.ctx, app.settings.tick_seconds, extra=_jobs(app))
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

    with opened(db_url, create=True) as database:
        run_upgrade(database)
        click.echo(f"database at schema {current(database)}", err=True)
    sys.exit(0)
