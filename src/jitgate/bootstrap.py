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
        self.db.dispose()


def bootstrap(
    settings: Settings,
    *,
    policy: Policy | None = None,
    clock: Clock | None = None,
) -> App:
    loaded = policy if policy is not None else _load(settings.policy_path)
    db = connect(settings.database_url)
    ctx = Context(
        uow=SqlUnitOfWorkFactory(db),
        clock=clock or SystemClock(),
        policy=PolicyHolder(loaded),
    )
    wire_enforcement(ctx, db)
    return App(settings, db, ctx, notify=notifications(ctx), grant_reader=_grant_reader(db))


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
