"""Enforcement (SPEC §3, §7): a request's grant applied on every backend its roles name, and
removed again at its end. This is the ``GrantApplier`` the service calls.

Invariants:
- backend I/O never runs inside a transaction: a write-ahead row (``applying`` or
  ``removing``, ``in_flight``, a lease) is committed before each call, and the outcome with
  its audit event (``backend.applied``, ``backend.removed``, ``backend.failed``) after it,
  so a crash in between leaves a row that says so and the next pass resumes it, audited as
  ``backend.reconciled``;
- the write-ahead row is read, checked and written under a lock of the row (of its key
  while there is no row yet), so of replicas applying one grant at once exactly one calls
  the backend and audits ``backend.applied``; the others see its lease and back off;
- a failure is loud: audited, kept on the row (``last_error``) and retried with backoff
  until done; a request stays ``approved`` until every backend applied its grant;
- ending a grant never removes what another active grant of the same user still covers on
  a backend whose grants are shared (``shares_grants``);
- a removal that races an apply is repeated (the row goes back to ``removing``);
- the end of a grant's open sessions, when they must end (always on early revocation; at
  expiry with ``sessions_at_expiry: terminate``), is asked for at once, before any backend
  is called: a backend that is down delays only its own removal (retried), never the
  termination gateways act on; asking again changes nothing (``request_termination``);
- a certificate issued up to an end the grant no longer has (a revoked extension moved it
  in) is listed in the KRL as soon as the backends follow the shortened end, before that
  end comes, whatever the scheduler's lag (``_revoke_outliving``);
- a grant is applied only once its window has begun; an extension has no rows of its own:
  its original's are refreshed to the moved end once the approval commits
  (``follow_moved_end``), at the latest when the extension's time begins, and nothing is
  removed at the original's old end (the original's ``ends_at`` moved with them);
- honouring never depends on any of this: authorize checks ``ends_at`` itself.
"""

from __future__ import annotations

import logging
from datetime import datetime

from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.service import enforcement_rows as rows
from jitgate.service.backend_ports import (
    Backend,
    BackendGrant,
    BackendUnavailable,
    Receipt,
    SessionRef,
    SessionTerminator,
)
from jitgate.service.context import Context
from jitgate.service.enforcement_base import EnforcementBase
from jitgate.service.sessions_end import request_termination

log = logging.getLogger("jitgate.enforcement")

BATCH = 200


def sessions_must_end(ctx: Context, request: AccessRequest) -> bool:
    """Whether the open sessions of an ended grant must end (RFC 10.4.4): always when it
    was revoked, at expiry with ``sessions_at_expiry: terminate``."""
    terminate = ctx.policy.current.settings.sessions_at_expiry == "terminate"
    return request.state is State.REVOKED or terminate


def end_sessions(ctx: Context, request: AccessRequest) -> None:
    """Ask for the end of an ended grant's open sessions not asked for yet (idempotent: a
    session is asked once, however often this runs). A failure is logged; the removal
    retries (``retry_removals``) ask again."""
    why = "grant revoked" if request.state is State.REVOKED else "grant expired"
    try:
        request_termination(ctx, request_id=request.id, reason=f"terminated: {why}")
    except Exception:
        log.exception("asking for the end of the sessions of %s failed", request.id)


class Enforcement(EnforcementBase):
    # -- GrantApplier ------------------------------------------------------------------------

    def apply(self, request: AccessRequest, now: datetime) -> bool:
        """Apply on every backend; ``True`` once all of them hold the grant. Never raises.
        Before the grant's window begins nothing is applied (``False``): a scheduled grant
        whose end an extension moved waits for its activation."""
        if request.starts_at is None or now < request.starts_at:
            return False
        try:
            if request.extends:
                return self._original_in_place(request)
            results = [self.apply_one(request, name) for name in request.backends]
            return all(results)
        except Exception:
            log.exception("applying request %s failed; it is retried", request.id)
            return False

    def _original_in_place(self, extension: AccessRequest) -> bool:
        """An extension's grant is its original's (whose window it moved out): in place when
        the original's is, refreshed to the new end."""
        with self.uow(write=False) as uow:
            original = uow.requests.get(extension.extends or "")
        if original is None:
            return False
        return all([self.apply_one(original, name) for name in original.backends])

    def remove(self, request: AccessRequest, now: datetime) -> bool:
        """Remove from every backend that was touched. The end of open sessions, when they
        must end (always on early revocation), is asked for first, whatever the backends
        answer: a backend that is down is retried on its own and never keeps a revoked
        user's sessions running. Never raises: what fails is retried."""
        if request.starts_at is None:  # never approved: nothing was applied or used
            return True
        early = request.state is State.REVOKED
        terminate = sessions_must_end(self.ctx, request)
        if terminate:
            self._end_sessions(request)
        try:
            if not request.backends:
                return True
            with self.uow(write=False) as uow:
                rows = uow.backend_grants.of_request(request.id)
            results = [
                self.remove_one(request, r.backend, terminate=terminate, early=early) for r in rows
            ]
            return all(results)
        except Exception:
            log.exception("removing request %s failed; it is retried", request.id)
            return False

    def _end_sessions(self, request: AccessRequest) -> None:
        end_sessions(self.ctx, request)

    # -- apply one backend -------------------------------------------------------------------

    def apply_one(self, request: AccessRequest, name: str) -> bool:
        now = self.ctx.clock.now()
        try:
            backend: Backend | None = self.backend_for(name)
            problem = None
        except BackendUnavailable as exc:
            backend, problem = None, str(exc)
        with self.uow() as uow:  # a first look, unlocked: the gate is checked again below
            row = uow.backend_grants.get(request.id, name)
            gate = rows.apply_gate(row, now, rows.window_end(request))
            if gate not in ("go", "resume"):
                uow.commit()  # nothing written: release SQLite's write lock
        if gate == "refresh":
            given = rows.instruction(row)
            if backend is None:
                return True
            self._revoke_outliving(request, name, backend)  # before the backend hears it
            return self._refresh(request, name, backend, given)
        if gate not in ("go", "resume"):
            return gate == "done"
        with self.uow() as uow:
            # locks the row, or its key while there is none: of processes applying at once,
            # only the one that moves the row to ``applying`` with its lease calls the backend
            row = uow.backend_grants.get(request.id, name, for_update=True)
            if rows.apply_gate(row, now, rows.window_end(request)) != gate:
                return False  # someone else moved it meanwhile
            row = row or self._new_row(request, name, now)
            if backend is None:
                self._failed(uow, request, row, "grant", problem or "unavailable", now)
                uow.commit()
                return False
            row.status, row.in_flight, row.called = "applying", True, True
            row.next_attempt_at, row.updated_at = now + rows.LEASE, now
            uow.backend_grants.save(row)
            uow.commit()
        spec = self.spec(request, name, instruction=rows.instruction(row))
        outcome = self._call(backend.grant, spec)
        return self._settle_grant(request, name, outcome, resumed=gate == "resume")

    def _settle_grant(
        self, request: AccessRequest, name: str, outcome: Receipt | str, *, resumed: bool
    ) -> bool:
        now = self.ctx.clock.now()
        raced = False
        with self.uow() as uow:
            row = uow.backend_grants.get(request.id, name, for_update=True)
            assert row is not None
            if isinstance(outcome, str):
                self._failed(uow, request, row, "grant", outcome, now)
                uow.commit()
                return False
            events = [rows.applied_event(request.id, row, outcome)]
            if resumed:
                events.append(rows.reconciled(request.id, row, "resumed", "an interrupted grant"))
            if row.status in ("removing", "removed"):
                raced = True
                row.status, row.next_attempt_at = "removing", now
            else:
                row.status, row.applied_at, row.last_error = "applied", now, None
                row.attempts = 0
            row.in_flight, row.updated_at = False, now
            row.detail = rows.next_instruction(
                {**outcome.detail, "window_end": rows.window_end(request)}
            )
            uow.backend_grants.save(row)
            self.ctx.publish(uow, events, request, now)
            uow.commit()
        if raced:
            self.remove_one(request, name, terminate=row.terminate, early=row.ended_early)
        return not raced

    def _refresh(
        self, request: AccessRequest, name: str, backend: Backend, instruction: str
    ) -> bool:
        """Grant again because the window moved (an extension): still in place meanwhile."""
        outcome = self._call(backend.grant, self.spec(request, name, instruction=instruction))
        now = self.ctx.clock.now()
        with self.uow() as uow:
            row = uow.backend_grants.get(request.id, name, for_update=True)
            if row is None or row.status != "applied":
                return False
            row.ended_early = row.ended_early or rows.cut_short(row, request)
            if isinstance(outcome, str):
                row.last_error, row.updated_at = outcome, now
                event = rows.event("backend.failed", request.id, backend=name, action="refresh")
                event.data.update(type=row.backend_type, error=outcome)
            else:
                row.last_error, row.updated_at = None, now
                row.detail = rows.next_instruction(
                    {**outcome.detail, "window_end": rows.window_end(request)}
                )
                event = rows.applied_event(request.id, row, outcome)
                event.data["refreshed_to"] = rows.window_end(request)
            uow.backend_grants.save(row)
            self.ctx.publish(uow, [event], request, now)
            uow.commit()
        return True

    # -- remove one backend ------------------------------------------------------------------

    def remove_one(
        self, request: AccessRequest, name: str, *, terminate: bool, early: bool
    ) -> bool:
        now = self.ctx.clock.now()
        with self.uow() as uow:
            row = uow.backend_grants.get(request.id, name, for_update=True)
            if row is None or row.status == "removed":
                return True
            if not row.called:
                rows.settle_removed(row, now, note="never reached the backend")
                uow.backend_grants.save(row)
                uow.commit()
                return True
            lease = row.next_attempt_at or now
            if row.status == "removing" and row.in_flight and lease > now:
                return False
            resumed = row.status == "removing" and row.in_flight
            row.status, row.in_flight = "removing", True
            row.terminate = row.terminate or terminate
            row.ended_early = row.ended_early or early or rows.cut_short(row, request)
            row.next_attempt_at, row.updated_at = now + rows.LEASE, now
            uow.backend_grants.save(row)
            uow.commit()
            covered = uow.backend_grants.covering(row.user, name, request.id, now)
            sessions = tuple(rows.refs(uow.sessions.of_request(request.id, open_only=True)))
        return self._revoke(request, row, covered, sessions, resumed=resumed)

    def _revoke(
        self,
        request: AccessRequest,
        row: BackendGrant,
        covered: str | None,
        sessions: tuple[SessionRef, ...],
        *,
        resumed: bool,
    ) -> bool:
        try:
            backend = self.backend_for(row.backend)
        except BackendUnavailable as exc:
            return self._settle_revoke(request, row.backend, str(exc), resumed=resumed)
        spec = self.spec(
            request,
            row.backend,
            ended_early=row.ended_early,
            terminate=row.terminate,
            sessions=sessions,
            instruction=rows.instruction(row),
        )
        if covered is not None and backend.shares_grants:
            if row.terminate and sessions and isinstance(backend, SessionTerminator):
                ended = self._call(backend.terminate_sessions, spec)
                if isinstance(ended, str):
                    return self._settle_revoke(request, row.backend, ended, resumed=resumed)
            return self._settle_covered(request, row.backend, covered)
        outcome = self._call(backend.revoke, spec)
        done = self._settle_revoke(request, row.backend, outcome, resumed=resumed)
        if done and backend.shares_grants:
            self._heal(row.user, row.backend, request.id)
        return done

    def _settle_covered(self, request: AccessRequest, name: str, covered: str) -> bool:
        now = self.ctx.clock.now()
        with self.uow() as uow:
            row = uow.backend_grants.get(request.id, name, for_update=True)
            assert row is not None
            rows.settle_removed(row, now, note=f"still covered by request {covered}")
            row.covered_by = covered
            uow.backend_grants.save(row)
            event = rows.event(
                "backend.removed",
                request.id,
                backend=name,
                type=row.backend_type,
                changed=False,
                kept_for=covered,
            )
            self.ctx.publish(uow, [event], request, now)
            uow.commit()
        return True

    def _settle_revoke(
        self, request: AccessRequest, name: str, outcome: Receipt | str, *, resumed: bool
    ) -> bool:
        now = self.ctx.clock.now()
        with self.uow() as uow:
            row = uow.backend_grants.get(request.id, name, for_update=True)
            assert row is not None
            if isinstance(outcome, str):
                self._failed(uow, request, row, "revoke", outcome, now)
                uow.commit()
                return False
            if not row.in_flight:  # an apply finished meanwhile: revoke once more
                row.next_attempt_at, row.updated_at = now, now
                uow.backend_grants.save(row)
                uow.commit()
                return False
            rows.settle_removed(row, now)
            row.detail = rows.next_instruction(dict(outcome.detail))
            uow.backend_grants.save(row)
            uow.backend_grants.add_revoked_keys(name, request.id, outcome.revocations, now)
            events = [rows.removed_event(request.id, row, outcome)]
            if resumed:
                events.append(rows.reconciled(request.id, row, "resumed", "an interrupted removal"))
            self.ctx.publish(uow, events, request, now)
            uow.commit()
        return True

    def _heal(self, user: str, name: str, ended: str) -> None:
        """After a shared revoke: put back what an overlapping grant applied meanwhile."""
        now = self.ctx.clock.now()
        with self.uow(write=False) as uow:
            other = uow.backend_grants.covering(user, name, ended, now)
            request = uow.requests.get(other) if other else None
        if request is not None:
            self.regrant(request, name, reason=f"the removal of request {ended} overlapped it")

    def regrant(self, request: AccessRequest, name: str, *, reason: str) -> bool:
        """Re-apply a grant found missing on its backend, audited as a repair."""
        with self.uow(write=False) as uow:
            given = rows.instruction(uow.backend_grants.get(request.id, name))
        try:
            backend = self.backend_for(name)
        except BackendUnavailable as exc:
            outcome: Receipt | str = str(exc)
        else:
            outcome = self._call(backend.grant, self.spec(request, name, instruction=given))
        now = self.ctx.clock.now()
        with self.uow() as uow:
            row = uow.backend_grants.get(request.id, name, for_update=True)
            if row is None:
                return False
            if isinstance(outcome, str):
                self._failed(uow, request, row, "grant", outcome, now)
                uow.commit()
                return False
            row.detail = rows.next_instruction(row.detail)
            uow.backend_grants.save(row)
            event = rows.reconciled(request.id, row, "reapplied", reason)
            self.ctx.publish(uow, [event], request, now)
            uow.commit()
        return True

    # -- retries -----------------------------------------------------------------------------

    def retry_removals(self) -> int:
        """Removals that failed (or were interrupted) and are due again; returns how many done."""
        with self.uow(write=False) as uow:
            due = uow.backend_grants.due_removals(self.ctx.clock.now(), BATCH)
            requests = {r.request_id: uow.requests.get(r.request_id) for r in due}
        done = 0
        asked: set[str] = set()
        for row in due:
            request = requests.get(row.request_id)
            if request is None:
                continue
            if row.terminate and request.id not in asked:  # whether or not the backend is back
                asked.add(request.id)
                self._end_sessions(request)
            if self.remove_one(
                request, row.backend, terminate=row.terminate, early=row.ended_early
            ):
                done += 1
        return done

    def finish_removal(self, request: AccessRequest) -> None:
        """After a removal of an ended grant (by ``reconcile`` too): its sessions are asked
        to end if they must (a row says ``terminate``), whether or not every backend is
        clear yet. Usually asked already by ``remove``; asking again changes nothing."""
        with self.uow(write=False) as uow:
            rows = uow.backend_grants.of_request(request.id)
        if any(r.terminate for r in rows):
            self._end_sessions(request)
