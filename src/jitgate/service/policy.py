"""Policy use cases: record that a policy came into force (``policy.loaded``).

Invariant: every policy the server enforces — at start-up, on SIGHUP, on
``POST /v1/policy/reload`` — is named in the audit chain by its digest.
"""

from __future__ import annotations

from jitgate.domain.events import DomainEvent
from jitgate.domain.policy import Policy
from jitgate.service.context import Context


def record_policy_loaded(ctx: Context, *, policy: Policy, actor: str, via: str) -> None:
    event = DomainEvent(
        "policy.loaded",
        actor,
        None,
        {
            "digest": policy.digest,
            "via": via,
            "roles": len(policy.roles),
            "rules": len(policy.approval),
        },
    )
    with ctx.uow() as uow:
        ctx.publish(uow, [event], None, ctx.clock.now())
        uow.commit()
