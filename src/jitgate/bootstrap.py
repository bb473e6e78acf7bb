"""The one place where adapters are wired to the service."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.clock import SystemClock
from jitgate.adapters.db.engine import Database, connect
from jitgate.adapters.db.uow import SqlUnitOfWorkFactory
from jitgate.adapters.notifiers.wiring import NotifyRuntime
from jitgate.adapters.notifiers.wiring import runtime as notifications
from jitgate.adapters.policy import check_policy
from jitgate.config import Settings
from jitgate.domain.policy import Policy
from jitgate.service.context import Context, PolicyHolder
from jitgate.service.ports import Clock

if TYPE_CHECKING:  # psycopg is imported only where PostgreSQL is used
    from jitgate.adapters.db.async_reads import AsyncPgGrantReader

log = logging.getLogger("jitgate.policy")


@dataclass
class App:
    """Everything a running jitgate holds: settings, database, service context."""

    settings: Settings
    db: Database
    ctx: Context
    notify: NotifyRuntime | None = None
    # PostgreSQL: the authorize read awaited on the API's event loop (closed by its lifespan)
    grant_reader: AsyncPgGrantReader | None = None

    def reload_policy(self) -> Policy:
        """Load the policy file again; on error the last good policy stays (raises)."""
        policy = _load(self.settings.policy_path)
        self.ctx.policy.replace(policy)
        return policy

    def close(self) -> None:
        if self.notify is not None:
            self.notify.close()
        close_grants = getattr(self.ctx.grants, "close", None)
        if close_grants is not None:
            close_grants()
        if self.grant_reader is not None:
            self.grant_reader.close()
        close_clock = getattr(self.ctx.clock, "close", None)
        if close_clock is not None:
            close_clock()
        self.db.dispose()


def bootstrap(
    settings: Settings,
    *,
    policy: Policy | None = None,
    clock: Clock | None = None,
    migrate: bool | None = None,
) -> App:
    """Wire everything for ``settings``. The database's schema is settled first:
    ``migrate=True`` brings it to the newest revision (``serve``, ``worker``),
    ``migrate=False`` refuses any schema but that one (``--no-migrate``), and ``None``
    leaves it to the caller; all three refuse a schema newer than this jitgate knows
    (``SchemaMismatch``, one line)."""
    loaded = policy if policy is not None else _load(settings.policy_path)
    db = connect(settings.database_url)
    try:
        _schema(db, migrate)
    except BaseException:
        db.dispose()
        raise
    ctx = Context(
        uow=SqlUnitOfWorkFactory(db),
        clock=clock or _clock(db),
        policy=PolicyHolder(loaded),
    )
    wire_enforcement(ctx, db)
    return App(settings, db, ctx, notify=notifications(ctx), grant_reader=_grant_reader(db))


def _clock(db: Database) -> Clock:
    """On PostgreSQL, shared by several replicas, the database server's clock, so that no
    replica's own clock decides a grant's window (SPEC §9.6); on SQLite, one host's."""
    if db.is_sqlite:
        return SystemClock()
    from jitgate.adapters.db.clock import DatabaseClock, server_time

    return DatabaseClock(lambda: server_time(db.engine)).start()


def _schema(db: Database, migrate: bool | None) -> None:
    from jitgate.adapters.db import migrate as schema

    if migrate is None:
        schema.refuse_newer(db)
    elif migrate:
        schema.upgrade(db)
    else:
        schema.check(db)


def _load(path: str) -> Policy:
    """The policy at ``path``; its warnings (``jitgate policy check`` shows them) logged."""
    checked = check_policy(path)
    for warning in checked.warnings:
        log.warning("policy: %s", warning)
    return checked.policy


def _grant_reader(db: Database) -> AsyncPgGrantReader | None:
    if db.is_sqlite:
        return None
    from jitgate.adapters.db.async_reads import AsyncPgGrantReader

    return AsyncPgGrantReader(db)
