"""Wiring enforcement into a service context: the real ``GrantApplier`` over SQL, the backend
plugins found by entry point, and one shared ``httpx.Client`` for them.

``wire_enforcement(ctx, db)`` is the one call ``bootstrap`` makes; tests pass their own
registry, environment or HTTP client.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import httpx

from jitgate.adapters.backends.base import BackendDeps, BackendSet, Registry
from jitgate.adapters.db.backend_repos import SqlEnforcementUnitOfWorkFactory
from jitgate.adapters.db.engine import Database
from jitgate.adapters.notifiers.deadline import deadline_client
from jitgate.service.context import Context
from jitgate.service.enforcement import Enforcement


def wire_enforcement(
    ctx: Context,
    db: Database,
    *,
    registry: Registry | None = None,
    http: httpx.Client | None = None,
    environ: Mapping[str, str] | None = None,
) -> Enforcement:
    owned = http is None
    # every call ends by its backend's deadline, however slowly a peer answers
    client = http or deadline_client(httpx.Limits(max_connections=64), httpx.Timeout(10.0))
    deps = BackendDeps(http=client, environ=os.environ if environ is None else environ)
    backends = BackendSet(registry or Registry(), deps)
    enforcement = Enforcement(
        ctx,
        SqlEnforcementUnitOfWorkFactory(db),
        backends,
        on_close=client.close if owned else None,
    )
    ctx.grants = enforcement
    return enforcement
