"""Policy use cases: a replica loads a policy (``policy.loaded``), the policy in force across
the deployment, and the pending requests brought under it.

Invariants:
- every policy a replica enforces (at start-up, on SIGHUP, on ``POST /v1/policy/reload``)
  is named in the audit chain by its digest and the replica (``host:pid``) that loaded it;
- the policy in force is the one named by the latest ``policy.loaded`` that took force. A
  reload always takes force; a start-up only with the policy in force, one never loaded
  before (a new policy rolled out by restarts) or when none is in force yet, so a replica
  restarted with a stale file never takes the deployment back to it;
- only a replica in step (its policy is the one in force) changes a pending request for a
  policy: rewrites its rules or closes it. It checks that in the transaction of the change
  once more after its audit events are written (the audit head is locked then), so no
  load commits between its check and its change; out of step it changes nothing
  (``Unavailable``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any

from jitgate.domain.creation import rules_now
from jitgate.domain.errors import Conflict, Forbidden, Invalid, Unavailable
from jitgate.domain.events import DomainEvent
from jitgate.domain.policy import ApprovalRule, Policy
from jitgate.domain.request import SYSTEM_ACTOR, AccessRequest
from jitgate.domain.states import State
from jitgate.service.context import Context, PolicyInForce, PolicyLoads
from jitgate.service.ports import AuditQuery, RequestQuery, UnitOfWork

log = logging.getLogger("jitgate.policy")
LOADED = "policy.loaded"
STEP_MAX_AGE = 5.0  # seconds a replica trusts what it last read of the policy in force
_BATCH = 500


@dataclass(frozen=True)
class PolicyStep:
    """This replica's policy against the one in force across the deployment."""

    mine: str
    in_force: PolicyInForce | None

    @property
    def in_step(self) -> bool:
        """In step when its policy is the one in force, or none is recorded yet."""
        return self.in_force is None or self.in_force.digest == self.mine

    def detail(self) -> str:
        here = f"this replica runs policy {self.mine[:12]}"
        if self.in_force is None:
            return f"{here}; no policy is recorded as in force"
        f = self.in_force
        by = f" by {f.replica}" if f.replica else ""
        return f"{here}, the policy in force is {f.digest[:12]} (loaded {f.at}{by})"

    def as_dict(self) -> dict[str, Any]:
        """For ``/readyz``: whether in step, this replica's digest, the one in force."""
        f = self.in_force
        return {
            "in_step": self.in_step,
            "policy": self.mine,
            "in_force": None
            if f is None
            else {"digest": f.digest, "at": f.at, "replica": f.replica, "via": f.via},
        }


@dataclass(frozen=True)
class FollowReport:
    """What bringing the pending requests under a policy did."""

    rules_updated: int = 0
    closed: int = 0
    stopped: str | None = None  # why it stopped before the end (out of step meanwhile)


def replica_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# -- loading -----------------------------------------------------------------------------------


def record_policy_loaded(ctx: Context, *, policy: Policy, actor: str, via: str) -> PolicyStep:
    """Record that this replica loaded ``policy`` (already its ``current``) and whether
    that put it in force; in force, bring every pending request under it at once."""
    with ctx.uow() as uow:
        loads = read_loads(ctx, uow)
        takes = _takes_force(policy.digest, loads, via)
        data = {
            "digest": policy.digest,
            "via": via,
            "roles": len(policy.roles),
            "rules": len(policy.approval),
            "replica": replica_name(),
            "in_force": takes,
        }
        ctx.publish(uow, [DomainEvent(LOADED, actor, None, data)], None, ctx.clock.now())
        uow.commit()
    step = policy_step(ctx, max_age=0)
    if not step.in_step:
        return step
    try:
        report = bring_pending_under(ctx)
    except Exception:  # the policy is in force; decisions bring each request under it
        log.exception("bringing the pending requests under policy %s failed", policy.digest[:12])
        return step
    if report.rules_updated or report.closed or report.stopped:
        log.info(
            "pending requests brought under policy %s: %d with new rules, %d closed%s",
            policy.digest[:12],
            report.rules_updated,
            report.closed,
            f" (stopped: {report.stopped})" if report.stopped else "",
        )
    return step


def _takes_force(digest: str, loads: PolicyLoads, via: str) -> bool:
    """A reload puts its policy in force; a start-up does with the policy in force, with
    one never loaded before, or when none is in force yet (never a stale one)."""
    if via != "startup" or loads.in_force is None:
        return True
    return digest == loads.in_force.digest or digest not in loads.seen


# -- the policy in force -----------------------------------------------------------------------


def read_loads(ctx: Context, uow: UnitOfWork) -> PolicyLoads:
    """The ``policy.loaded`` events committed since those last read (by the type index),
    added to what this replica knows: the latest that took force, every digest loaded."""
    known = ctx.policy.loads
    seq, in_force, seen = known.seq, known.in_force, set(known.seen)
    while True:
        batch = uow.audit.find(AuditQuery(type=LOADED, after_seq=seq, limit=_BATCH))
        for record in batch:
            digest = record.data.get("digest")
            if not isinstance(digest, str):
                continue
            seen.add(digest)
            if record.data.get("in_force", True) is not False:  # older events: all did
                replica, via = record.data.get("replica"), record.data.get("via")
                in_force = PolicyInForce(
                    digest,
                    record.at,
                    replica if isinstance(replica, str) else None,
                    via if isinstance(via, str) else None,
                    record.seq,
                )
        if batch:
            seq = batch[-1].seq
        if len(batch) < _BATCH:
            break
    return ctx.policy.learn(PolicyLoads(seq, in_force, frozenset(seen), time.monotonic()))


def policy_step(ctx: Context, *, max_age: float = STEP_MAX_AGE) -> PolicyStep:
    """This replica's step, from what it read at most ``max_age`` seconds ago (read again
    if older). For ``/readyz`` and the scheduler; a change of step is logged once."""
    loads = ctx.policy.loads
    if loads.checked is None or time.monotonic() - loads.checked >= max_age:
        with ctx.uow(write=False) as uow:
            loads = read_loads(ctx, uow)
    return _noted(ctx, PolicyStep(ctx.policy.current.digest, loads.in_force))


def require_in_step(ctx: Context, uow: UnitOfWork) -> None:
    """``Unavailable`` unless this replica is in step, read afresh in ``uow``'s transaction
    (only what was loaded since its last read: an indexed lookup)."""
    step = _noted(ctx, PolicyStep(ctx.policy.current.digest, read_loads(ctx, uow).in_force))
    if not step.in_step:
        raise Unavailable(f"{step.detail()}; retry, or reload this replica")


def policy_jobs(ctx: Context, *, interval: float = 60.0) -> list[Callable[[], object]]:
    """The scheduler's policy job: every tick, this replica's step (read at most every
    ``STEP_MAX_AGE`` seconds; a change logged once); in step, every ``interval`` seconds,
    the pending requests brought under its policy (those a replica out of step made)."""
    last = [time.monotonic()]  # a load has just brought them under it

    def watch() -> FollowReport | None:
        try:
            if not policy_step(ctx).in_step or time.monotonic() - last[0] < interval:
                return None
            last[0] = time.monotonic()
            return bring_pending_under(ctx)
        except Exception:
            log.exception("checking the policy in force failed; trying again next tick")
            return None

    return [watch]


def _noted(ctx: Context, step: PolicyStep) -> PolicyStep:
    in_force = step.in_force.digest if step.in_force else ""
    if ctx.policy.note((step.mine, in_force)):
        if not step.in_step:
            log.warning(
                "out of step: %s; it changes no pending request for its policy until it "
                "is reloaded with the policy in force (or a reload puts its own in force)",
                step.detail(),
            )
        elif in_force:
            log.info("in step: this replica runs the policy in force, %s", in_force[:12])
    return step


# -- pending requests under the policy ---------------------------------------------------------


NO_LONGER_ALLOWED = "the policy no longer allows it"


class Followed(Enum):
    """What ``follow_policy`` did to a pending request."""

    NOTHING = "nothing"
    RULES = "rules"  # its rules are the current ones now (written; events to persist)
    CLOSED = "closed"  # closed, persisted and checked: the caller commits


def follow_policy(
    ctx: Context, uow: UnitOfWork, request: AccessRequest, now: datetime, *, person: str = ""
) -> Followed:
    """Bring a pending request, locked in ``uow``, under this replica's policy: its rules
    become the current ones (``request.rules_updated``), or one the policy no longer
    allows is closed. Only in step (else ``Unavailable``, nothing changed); ``person``
    (who asks) first gets ``Forbidden`` if they have no part in the request under its
    rules nor the new ones, so a stranger learns nothing more."""
    if request.state is not State.PENDING:
        return Followed.NOTHING
    policy = ctx.policy.current
    try:
        rules = rules_now(policy, request)
    except (Forbidden, Invalid) as exc:
        if person:
            request.check_part(person, policy.directory, now)
        require_in_step(ctx, uow)
        why = f"{NO_LONGER_ALLOWED}: {exc}"
        request.revoke(SYSTEM_ACTOR, reason=why, now=now, is_admin=True)
        ctx.persist(uow, request, now)
        require_in_step(ctx, uow)  # again, the audit head now locked: no load slips in
        return Followed.CLOSED
    if rules == request.rules:
        return Followed.NOTHING
    if person:
        _check_part_under(ctx, request, rules, person, now)
    require_in_step(ctx, uow)
    request.follow_rules(rules, policy.directory, now)
    uow.requests.save_rules(request)
    return Followed.RULES


def _check_part_under(
    ctx: Context,
    request: AccessRequest,
    rules: tuple[ApprovalRule, ...],
    person: str,
    now: datetime,
) -> None:
    """``Forbidden`` to whoever has no part in the request under its rules nor ``rules``."""
    directory = ctx.policy.current.directory
    try:
        request.check_part(person, directory, now)
    except Forbidden:
        replace(request, rules=rules, events=[]).check_part(person, directory, now)


def bring_pending_under(ctx: Context) -> FollowReport:
    """Every pending request under this replica's policy, each in its own transaction (a
    decision racing it wins or waits: one outcome either way). Stops if the replica falls
    out of step meanwhile; decisions check each request again anyway."""
    done = {Followed.RULES: 0, Followed.CLOSED: 0}
    for request_id in _needing_change(ctx):
        now = ctx.clock.now()
        try:
            with ctx.uow() as uow:
                request, _original = uow.requests.get_family(request_id)
                if request is None or now >= request.expires_at:
                    continue  # gone, or the scheduler expires it
                followed = follow_policy(ctx, uow, request, now)
                if followed is Followed.NOTHING:
                    continue  # decided meanwhile
                if followed is Followed.RULES:
                    ctx.persist(uow, request, now)
                    require_in_step(ctx, uow)
                uow.commit()
                done[followed] += 1
        except Conflict:
            continue  # changed meanwhile: its decision brings it under the policy
        except Unavailable as exc:
            return FollowReport(done[Followed.RULES], done[Followed.CLOSED], str(exc))
    return FollowReport(done[Followed.RULES], done[Followed.CLOSED])


def _needing_change(ctx: Context) -> list[str]:
    """The pending requests whose rules this replica's policy would change, or which it
    would close: one read of the pending ones, newest first, judged without locks."""
    policy, found = ctx.policy.current, []
    after = None
    with ctx.uow(write=False) as uow:
        while True:
            batch = uow.requests.find(RequestQuery(state="pending", after=after, limit=_BATCH))
            found += [r.id for r in batch if _would_change(policy, r)]
            if len(batch) < _BATCH:
                return found
            after = (batch[-1].created_at.isoformat(), batch[-1].id)


def _would_change(policy: Policy, request: AccessRequest) -> bool:
    try:
        return rules_now(policy, request) != request.rules
    except (Forbidden, Invalid):
        return True
