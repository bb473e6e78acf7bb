"""Reconciliation (issue: overlaps and drift): make the real systems match the grants.

One pass, run by the scheduler and by ``jitgate reconcile``:

1. retry removals that failed or were interrupted (``kill -9`` between a backend call and
   its commit leaves an in-flight row whose lease runs out);
2. apply approved grants whose window began (resumes interrupted applies);
3. remove grants still recorded as in place whose request is no longer live;
4. for grants in force, ask verifiable backends whether they are really in place and
   re-apply the missing ones;
5. for grants removed in the last ``RECHECK_HORIZON`` (a day), ask again and remove them
   if they came back (and no other live grant of the user covers them);
6. list what each inventory backend holds that jitgate made, and remove the orphans: the
   grants of a request that is no longer live. One whose request this database does not
   hold (another jitgate's, on the same server) is reported, never removed;
7. list the members of each role a membership backend manages (``RoleMembers``) and report
   the ones no grant of jitgate explains (standing access: a grant made by hand, or one
   back after the horizon), without removing them: they may be service accounts.

Invariants: every repair is audited (``backend.reconciled``, or the ``backend.*`` event of
the normal path it resumed), and so are standing access and grants of unknown requests
(``backend.reconciled`` with ``action: reported``, once a day per member while it lasts);
a jitgate-made grant is removed only on this database's word that its request is no
longer live; a pass never raises for one backend's failure, however it fails: it is
logged, counted in ``failed`` and named in ``problems``, and the pass goes on with the
next backend or item.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from jitgate.domain.errors import Conflict
from jitgate.domain.events import DomainEvent
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.service import lifecycle
from jitgate.service.backend_ports import (
    BackendError,
    BackendGrant,
    EnforcementUnitOfWork,
    GrantSpec,
    Inventory,
    MadeGrant,
    RoleMembers,
)
from jitgate.service.context import Context
from jitgate.service.enforcement import BATCH, Enforcement
from jitgate.service.ports import AuditQuery

log = logging.getLogger("jitgate.reconcile")
#: How far back removed grants are checked again (step 5); a membership back after that is
#: reported as standing access (step 7), not removed.
RECHECK_HORIZON = timedelta(days=1)
#: Standing access is audited once in this time per member while it lasts.
REPORT_EVERY = timedelta(days=1)
REPORTED = "reported"
STANDING = "standing access: a member of the role that no live jitgate grant explains"
UNKNOWN = "made by jitgate for a request this deployment does not know (another's?); kept"


@dataclass
class ReconcileReport:
    retried: int = 0
    activated: int = 0
    removed: int = 0
    checked: int = 0
    reapplied: int = 0
    orphans: int = 0
    failed: int = 0
    standing: list[dict[str, str]] = field(default_factory=list)  # {backend, member}
    unknown: list[dict[str, str]] = field(default_factory=list)  # and request_id, user
    problems: list[str] = field(default_factory=list)  # what failed, safe to show

    @property
    def repairs(self) -> int:
        return self.removed + self.reapplied + self.orphans

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "repairs": self.repairs}

    def problem(self, text: str) -> None:
        self.failed += 1
        self.problems.append(text)


def enforcement_of(ctx: Context) -> Enforcement:
    if not isinstance(ctx.grants, Enforcement):
        raise Conflict("backends are not wired into this jitgate (no enforcement)")
    return ctx.grants


def reconcile(ctx: Context) -> ReconcileReport:
    enf = enforcement_of(ctx)
    report = ReconcileReport()
    report.retried = enf.retry_removals()
    report.activated = lifecycle.activate(ctx)
    _remove_ended(enf, report)
    _check_live(enf, report)
    _check_removed(enf, report)
    _orphans(enf, report)
    _standing(enf, report)
    return report


def _with_requests(
    enf: Enforcement, select: Callable[[EnforcementUnitOfWork], list[BackendGrant]]
) -> list[tuple[BackendGrant, AccessRequest]]:
    """The rows ``select`` picks, each with its request (rows of a vanished request are
    skipped), read in one unit of work."""
    with enf.uow(write=False) as uow:
        rows = select(uow)
        pairs = [(row, uow.requests.get(row.request_id)) for row in rows]
    return [(row, request) for row, request in pairs if request is not None]


def _remove_ended(enf: Enforcement, report: ReconcileReport) -> None:
    now = enf.ctx.clock.now()
    for row, request in _with_requests(
        enf, lambda uow: uow.backend_grants.unsettled_of_ended(now, BATCH)
    ):
        early = request.state is State.REVOKED
        terminate = early or enf.ctx.policy.current.settings.sessions_at_expiry == "terminate"
        if enf.remove_one(request, row.backend, terminate=terminate, early=early):
            report.removed += 1
            enf.finish_removal(request)
        else:
            report.failed += 1


def _check_live(enf: Enforcement, report: ReconcileReport) -> None:
    """Every grant in force, page after page: a pass sees them all, however many."""
    now = enf.ctx.clock.now()
    after: tuple[str, str] | None = None
    while True:
        with enf.uow(write=False) as uow:
            page = uow.backend_grants.of_live(now, BATCH, after)
            pairs = [(row, uow.requests.get(row.request_id)) for row in page]
        for row, request in pairs:
            if request is not None:  # rows of a vanished request are skipped
                _check_one(enf, row, request, report)
        if len(page) < BATCH:
            return
        after = (page[-1].request_id, page[-1].backend)


def _check_one(
    enf: Enforcement, row: BackendGrant, request: AccessRequest, report: ReconcileReport
) -> None:
    if not enf.apply_one(request, row.backend):  # failed, interrupted or window moved
        report.failed += 1
        return
    if _in_place(enf, row, enf.spec(request, row.backend), report) is False:
        if enf.regrant(request, row.backend, reason="the backend did not hold the grant as given"):
            report.reapplied += 1
        else:
            report.failed += 1


def _in_place(
    enf: Enforcement, row: BackendGrant, spec: GrantSpec, report: ReconcileReport
) -> bool | None:
    """What a verifiable backend says; ``None`` when it cannot tell or did not answer."""
    try:
        backend = enf.backend_for(row.backend)
        if not backend.verifiable:
            return None
        report.checked += 1
        return backend.check(spec)
    except BackendError as exc:
        log.warning("reconcile: cannot check %s for %s: %s", row.backend, row.request_id, exc)
        report.failed += 1
        return None
    except Exception as exc:
        _unexpected(report, exc, f"checking {row.request_id} on {row.backend}")
        return None


def _check_removed(enf: Enforcement, report: ReconcileReport) -> None:
    now = enf.ctx.clock.now()
    for row, request in _with_requests(
        enf, lambda uow: uow.backend_grants.removed_since(now - RECHECK_HORIZON, BATCH)
    ):
        if _live(request.state, request.ends_at, now):
            continue
        spec = enf.spec(request, row.backend)
        if _in_place(enf, row, spec, report) is not True:
            continue
        with enf.uow(write=False) as uow:
            if uow.backend_grants.covering(row.user, row.backend, row.request_id, now):
                continue
        _remove_again(enf, row, spec, "the grant was back in place after it ended", report)


def _remove_again(
    enf: Enforcement, row: BackendGrant, spec: GrantSpec, reason: str, report: ReconcileReport
) -> None:
    try:
        receipt = enf.backend_for(row.backend).revoke(spec)
    except BackendError as exc:
        log.warning("reconcile: cannot remove %s of %s: %s", row.backend, row.request_id, exc)
        report.failed += 1
        return
    except Exception as exc:
        _unexpected(report, exc, f"removing {row.request_id} from {row.backend}")
        return
    if receipt.changed:
        _audit(enf, row.request_id, row.backend, "removed", reason, dict(receipt.detail))
        report.orphans += 1


def _orphans(enf: Enforcement, report: ReconcileReport) -> None:
    policy = enf.ctx.policy.current
    attached = {b for role in policy.roles.values() for b in role.backends}
    for name in policy.backends:
        try:
            backend = enf.backend_for(name)
            if not isinstance(backend, Inventory):
                continue
            made = list(backend.made())
        except BackendError as exc:
            # a backend no role uses may well be unconfigured: say so quietly
            level = logging.WARNING if name in attached else logging.DEBUG
            log.log(level, "reconcile: cannot list what %s holds: %s", name, exc)
            continue
        except Exception as exc:  # one backend's bug never stops the others' repairs
            _unexpected(report, exc, f"listing what {name} holds")
            continue
        for grant in made:
            try:
                _remove_orphan(enf, name, backend, grant, report)
            except Exception as exc:
                _unexpected(report, exc, f"removing {grant.key} from {name}")
        mine = {u["member"]: u for u in report.unknown if u["backend"] == name}
        if mine:
            details = {m: {k: u[k] for k in ("request_id", "user")} for m, u in mine.items()}
            _report_members(enf, name, UNKNOWN, details)


def _remove_orphan(
    enf: Enforcement, name: str, backend: Inventory, grant: MadeGrant, report: ReconcileReport
) -> None:
    with enf.uow(write=False) as uow:
        request = uow.requests.get(grant.request_id)
        row = uow.backend_grants.get(grant.request_id, name)
    if request is None:  # another jitgate's: only the one that made it knows if it is live
        found = {"request_id": grant.request_id, "user": grant.user}
        report.unknown.append({"backend": name, "member": grant.key, **found})
        return
    terminate = _orphan(enf, request, row)
    if terminate is None:
        return
    try:
        receipt = backend.remove_made(grant, terminate=terminate)
    except BackendError as exc:
        log.warning("reconcile: cannot remove %s from %s: %s", grant.key, name, exc)
        report.failed += 1
        return
    if receipt.changed:
        reason = "jitgate-made grant without a live request"
        _audit(enf, grant.request_id, name, "removed", reason, dict(receipt.detail))
        report.orphans += 1


def _unexpected(report: ReconcileReport, exc: Exception, doing: str) -> None:
    """An exception no backend should raise: logged with its trace, reported by its type only
    (its text may hold anything), and the pass goes on."""
    log.error("reconcile: %s failed unexpectedly", doing, exc_info=exc)
    report.problem(f"{doing}: unexpected {type(exc).__name__}")


def _orphan(enf: Enforcement, request: AccessRequest, row: BackendGrant | None) -> bool | None:
    """Whether to remove a grant ``request`` made (its backend row: ``row``) terminating its
    sessions; ``None`` while it should exist or while the normal removal path owns it."""
    now = enf.ctx.clock.now()
    if _live(request.state, request.ends_at, now):
        return None
    if row is not None and row.status == "removing":
        return None
    early = request.state is State.REVOKED
    return early or enf.ctx.policy.current.settings.sessions_at_expiry == "terminate"


def _standing(enf: Enforcement, report: ReconcileReport) -> None:
    """Report the members of each managed role that no grant explains, per role on its
    server: backends sharing one role explain its members together."""
    roles: dict[str, list[tuple[str, RoleMembers]]] = {}
    for name in enf.ctx.policy.current.backends:
        try:
            backend = enf.backend_for(name)
            scope = backend.member_scope() if isinstance(backend, RoleMembers) else None
        except BackendError:
            continue  # unusable: the other steps have said so
        except Exception as exc:
            _unexpected(report, exc, f"setting up {name}")
            continue
        if scope is not None and isinstance(backend, RoleMembers):
            roles.setdefault(scope, []).append((name, backend))
    for sharing in roles.values():
        name, lister = sharing[0]
        try:
            with enf.uow(write=False) as uow:
                users = [(b, u) for n, b in sharing for u in uow.backend_grants.holders(n)]
            explained = {b.member_name(user) for b, user in users}
            members = lister.members()
        except BackendError as exc:
            log.warning("reconcile: cannot list the members of %s's role: %s", name, exc)
            report.problem(f"listing the members of {name}'s role: {exc}")
            continue
        except Exception as exc:
            _unexpected(report, exc, f"listing the members of {name}'s role")
            continue
        unexplained = [m for m in members if m not in explained]
        report.standing.extend({"backend": name, "member": m} for m in unexplained)
        if unexplained:
            _report_members(enf, name, STANDING, {m: {} for m in unexplained})


def _report_members(
    enf: Enforcement, name: str, reason: str, members: Mapping[str, Mapping[str, object]]
) -> None:
    """Audit (and log) each member (with its ``detail``) not already reported for
    ``reason`` in the last ``REPORT_EVERY``."""
    now = enf.ctx.clock.now()
    query = AuditQuery(type="backend.reconciled", since=now - REPORT_EVERY, limit=100_000)
    with enf.uow(write=False) as uow:
        seen = {
            str(e.data.get("member"))
            for e in uow.audit.find(query)
            if e.data.get("action") == REPORTED
            and e.data.get("backend") == name
            and e.data.get("reason") == reason
        }
    for member, detail in members.items():
        if member in seen:
            continue
        log.warning("reconcile: %s: %s (%s)", name, reason, _printable(member))
        _audit(enf, None, name, REPORTED, reason, {"member": member, **detail}, member=member)


def _printable(text: str, limit: int = 80) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _live(state: State, ends_at: datetime | None, now: datetime) -> bool:
    return state in (State.APPROVED, State.ACTIVE) and ends_at is not None and ends_at > now


def _audit(
    enf: Enforcement,
    request_id: str | None,
    backend: str,
    action: str,
    reason: str,
    detail: dict[str, object],
    **extra: object,
) -> None:
    now = enf.ctx.clock.now()
    data = {"backend": backend, "action": action, "reason": reason, "detail": detail, **extra}
    event = DomainEvent("backend.reconciled", "system", request_id, data)
    with enf.uow() as uow:
        request = uow.requests.get(request_id) if request_id is not None else None
        enf.ctx.publish(uow, [event], request, now)
        uow.commit()


def scheduler_jobs(ctx: Context, *, interval: float = 60.0) -> list[Callable[[], object]]:
    """The scheduler's enforcement jobs: due retries every tick, a full pass every
    ``interval`` seconds (the first at startup, so a restart repairs what a crash left)."""
    if not isinstance(ctx.grants, Enforcement):
        return []
    enf = ctx.grants
    last = [float("-inf")]

    def retry_removals() -> int:
        try:
            return enf.retry_removals()
        except Exception:
            log.exception("retrying backend removals failed; trying again next tick")
            return 0

    def periodic() -> ReconcileReport | None:
        if time.monotonic() - last[0] < interval:
            return None
        last[0] = time.monotonic()
        try:
            report = reconcile(ctx)
        except Exception:
            log.exception("reconciliation failed; trying again next pass")
            return None
        if report.repairs or report.failed:
            log.info("reconcile: %s", report.as_dict())
        return report

    return [retry_removals, periodic]
