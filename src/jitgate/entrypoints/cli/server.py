"""``jitgate serve``, ``jitgate worker`` and ``jitgate db upgrade``.

Invariants: every ``JITGATE_*`` setting is checked before a port is bound or a database
touched; SIGTERM and SIGINT stop ``serve`` and ``worker`` gracefully, at any moment (the
requests in flight answered, the scheduler stopped, the notifications under way recorded,
the database closed, exit 0), and SIGHUP only reloads the policy; each of these events is
one line in the log.
"""

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
    from jitgate.config import Settings

log = logging.getLogger("jitgate")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _app(config: Settings, migrate: bool) -> App:
    from jitgate.bootstrap import bootstrap
    from jitgate.service.policy import record_policy_loaded

    # migrated to the newest schema, or with --no-migrate refused unless it is already
    # there (one line: no schema yet, older, or newer than this jitgate)
    app = bootstrap(config, migrate=migrate)
    record_policy_loaded(app.ctx, policy=app.ctx.policy.current, actor="system", via="startup")
    return app


class OneLine(logging.Formatter):
    """Each record's message on one line (a migration's docstring, a peer's answer): a
    line break in it becomes a space. A traceback, at debug level, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return " ".join(super().formatMessage(record).splitlines())


def _log_to_stderr() -> None:
    """INFO and up on stderr, one line a record, jitgate's own lines included (uvicorn's
    stay at WARNING: see ``serve_api``); alembic's set-up chatter at import is not ours to
    show (a refusal at start stays one line)."""
    logging.basicConfig(level=logging.INFO)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(OneLine("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.getLogger("jitgate").setLevel(logging.INFO)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _where(app: App) -> str:
    """The policy (path and digest) and database (password hidden) of a start-up line."""
    from jitgate.adapters.db.engine import shown

    digest = app.ctx.policy.current.digest[:12]
    where = app.settings
    return f"policy {where.policy_path} ({digest}), database {shown(where.database_url)}"


def _jobs(app: App) -> list[Callable[[], object]]:
    """The scheduler's extra jobs: notification delivery (off with JITGATE_DELIVERY=0),
    backend retries and reconciliation (every JITGATE_RECONCILE_SECONDS), and the watch on
    whether this replica's policy is the one in force (``service.policy.policy_jobs``)."""
    from jitgate.service.policy import policy_jobs
    from jitgate.service.reconcile import scheduler_jobs

    delivery = app.notify.jobs() if app.notify is not None else []
    return [
        *delivery,
        *scheduler_jobs(app.ctx, interval=app.settings.reconcile_seconds),
        *policy_jobs(app.ctx),
    ]


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
    _log_to_stderr()
    # every JITGATE_* setting is checked first: a refused one changes nothing anywhere
    config = settings(policy_path=policy_path, database_url=db_url, host=host, port=port)
    _stop_on_signals()
    try:
        stopped_by = _serve(config, migrate)
    except Stop as stop:  # before the server took the signals over: nothing left running
        stopped_by = stop.signum
    said = stopped_by.name if stopped_by is not None else "its own"
    log.info("jitgate serve stopped on %s: scheduler stopped, database closed", said)


def _serve(config: Settings, migrate: bool) -> signal.Signals | None:
    """Serve until SIGTERM or SIGINT (which it returns), then stop the scheduler, record
    the notifications under way and close the database; a second signal meanwhile does
    not cut that short."""
    from jitgate.entrypoints.api.app import create_app, serve_api
    from jitgate.entrypoints.scheduler import Scheduler

    host, port = config.host, config.port
    sock = _listen(host, port)  # a busy port fails here, before a migration or a tick
    try:
        app = _app(config, migrate)
    except BaseException:  # a refused policy or database: the port is let go at once
        sock.close()
        raise
    try:
        _on_sighup(app)
        scheduler = Scheduler(app.ctx, app.settings.tick_seconds, extra=_jobs(app))
        scheduler.start()
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

        def started() -> None:
            log.info("jitgate serve listening on %s: %s", url, _where(app))

        try:
            return serve_api(create_app(app), host, port, sock, on_started=started)
        finally:
            _hold_signals()
            scheduler.stop()
    finally:
        _hold_signals()
        app.close()


class Stop(BaseException):
    """SIGTERM or SIGINT while ``serve`` starts, before uvicorn takes those signals over:
    start-up stops where it is and what was built is closed (a ``BaseException``, so that
    no ``except Exception`` on the way swallows it)."""

    def __init__(self, signum: signal.Signals) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_on_signals() -> None:
    def stop(signum: int, _frame: FrameType | None) -> None:
        raise Stop(signal.Signals(signum))

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)


def _hold_signals() -> None:
    """While closing: a further SIGTERM or SIGINT is noted, and the close goes on."""

    def noted(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: already stopping", signal.Signals(signum).name)

    for signum in STOP_SIGNALS:
        signal.signal(signum, noted)


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
    app = _app(settings(policy_path=policy_path, database_url=db_url), migrate)
    _on_sighup(app)
    scheduler = Scheduler(app.ctx, app.settings.tick_seconds, extra=_jobs(app))
    stopped_by: list[signal.Signals] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopped_by.append(signal.Signals(signum))
        scheduler.stopped.set()

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    log.info("jitgate worker started: %s", _where(app))
    try:
        scheduler.run_forever()
    finally:
        app.close()
    said = stopped_by[0].name if stopped_by else "its own"
    log.info("jitgate worker stopped on %s: scheduler stopped, database closed", said)


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
