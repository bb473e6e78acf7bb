"""A revoke racing a gateway's session calls on PostgreSQL, where they really run at once
(on SQLite a write unit holds the one write lock from its start, so they cannot interleave):

- ``POST /v1/sessions/{id}/end`` committing while the revoke asks for the end of the grant's
  sessions: the end and its recording stay recorded (the termination request skips a
  session that ended), and a second end is refused without a second ``session.ended``;
- ``POST /v1/sessions`` that read the grant as live before the revoke committed, and would
  commit after the revoke's termination pass: it is refused (403), never left open and
  never asked to end; one that locked the grant first commits first, and the revoke's
  termination pass asks for its end.

Each interleaving is forced: one side is held at a chosen point of its transaction until
the other has run, or is seen waiting on a row lock (``pg_stat_activity``)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.clock import ManualClock
from jitgate.adapters.db.engine import normalise_url
from jitgate.adapters.policy import load_policy
from jitgate.domain.creation import Draft
from jitgate.domain.errors import Conflict, Forbidden
from jitgate.domain.states import State
from jitgate.service import access, decisions, lifecycle
from jitgate.service import requests as use
from jitgate.service.context import Context
from jitgate.service.enforcement import Enforcement
from jitgate.service.ports import AuditQuery, Session

POLICY = """
version: 1
settings: {pending_ttl: 1h, admins: [security]}
directory:
  users:
    jane@example.com: {groups: [devs]}
    sec@example.com: {groups: [security]}
resources:
  app: {type: kubernetes, environment: staging}
roles:
  k8s:
    grants: [{type: kubernetes, environment: staging}]
    requestable_by: [devs]
    default_duration: 1h
    max_duration: 8h
    extendable: true
approval:
  - match: {type: kubernetes, environment: any}
    rule: self
"""
JANE, SEC, GW = "jane@example.com", "sec@example.com", "service:gw"
WAIT = 30.0  # seconds any step may take before the test calls it hung


@pytest.fixture
def stack(pg_db_url: str, make_ctx: Any, tmp_path: Path) -> Iterator[tuple[Context, ManualClock]]:
    (tmp_path / "policy.yaml").write_text(POLICY)
    made, clock = make_ctx(pg_db_url, load_policy(tmp_path / "policy.yaml"))
    enforcement = wire_enforcement(made, made.uow.db, environ={})
    yield made, clock
    enforcement.close()


@pytest.fixture
def ctx(stack: tuple[Context, ManualClock]) -> Context:
    return stack[0]


@pytest.fixture
def lock_waits(pg_db_url: str) -> Iterator[Callable[[], int]]:
    """How many connections to the test's database are waiting for a lock right now."""
    engine = sa.create_engine(normalise_url(pg_db_url))
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    yield count
    engine.dispose()


class Hold:
    """Stops one thread at a point of its transaction until ``release``."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self._go = threading.Event()

    def __call__(self) -> None:
        self.reached.set()
        assert self._go.wait(WAIT), "never released"

    def release(self) -> None:
        self._go.set()


class _Wrapped:
    """A unit of work whose ``repo.method`` returns ``after(its result)``; everything else
    is the real unit of work."""

    def __init__(self, inner: Any, repo: str, method: str, after: Callable[[Any], Any]) -> None:
        self._inner, self._repo, self._method, self._after = inner, repo, method, after

    def __enter__(self) -> Any:
        uow = self._inner.__enter__()
        target = getattr(uow, self._repo)
        real, after = getattr(target, self._method), self._after
        setattr(target, self._method, lambda *a, **k: after(real(*a, **k)))
        return uow

    def __exit__(self, *exc: object) -> None:
        self._inner.__exit__(*exc)


def wrapped(ctx: Context, repo: str, method: str, after: Callable[[Any], Any]) -> Context:
    factory = ctx.uow

    def units(**kwargs: Any) -> Any:
        return _Wrapped(factory(**kwargs), repo, method, after)

    return dataclasses.replace(ctx, uow=units)  # type: ignore[arg-type]


def held_at(ctx: Context, repo: str, method: str, hold: Hold) -> Context:
    """``ctx`` whose units of work stop at ``hold`` right after ``uow.<repo>.<method>``
    returns, the first time only."""

    def after(result: Any) -> Any:
        if not hold.reached.is_set():
            hold()
        return result

    return wrapped(ctx, repo, method, after)


def choosing(ctx: Context, request_id: str) -> Context:
    """``ctx`` whose read of live grants finds only ``request_id``'s, as when the database
    returns it first of grants ending at the same time."""
    return wrapped(
        ctx, "requests", "live_grants", lambda found: [g for g in found if g.id == request_id]
    )


class Worker(threading.Thread):
    """Runs ``call`` and keeps its result or its exception."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._call = call
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._call()
        except BaseException as exc:
            self.error = exc

    def finish(self) -> Any:
        self.join(WAIT)
        assert not self.is_alive(), "a worker hung"
        return self.result


def wait_until(done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def grant(ctx: Context) -> str:
    draft = Draft(roles=("k8s",), reason="INC-9")
    request = use.create_request(ctx, requester=JANE, draft=draft).request
    assert request.state is State.ACTIVE
    return request.id


def open_one(ctx: Context) -> Session:
    return access.open_session(ctx, user=JANE, resource="app", kind="k8s", opened_by=GW)


def revoke(ctx: Context, request_id: str) -> None:
    decisions.revoke_request(ctx, request_id=request_id, actor=SEC, reason="incident over")


def stored(ctx: Context, session_id: str) -> Session:
    with ctx.uow(write=False) as uow:
        session = uow.sessions.get(session_id)
    assert session is not None
    return session


def events(ctx: Context, kind: str, session_id: str) -> list[dict[str, Any]]:
    with ctx.uow(write=False) as uow:
        found = uow.audit.find(AuditQuery(type=kind, limit=1000))
    return [e.data for e in found if e.data.get("session_id") == session_id]


# -- 1. an end racing the revoke's termination request ----------------------------------------


def test_an_end_committing_during_the_termination_request_is_kept(
    ctx: Context, lock_waits: Callable[[], int]
) -> None:
    rid = grant(ctx)
    session = open_one(ctx)
    hold = Hold()  # the end has written the session row and not committed yet
    ending = Worker(
        lambda: access.end_session(
            held_at(ctx, "sessions", "save", hold),
            session_id=session.id,
            recording_url="https://rec.example.com/1",
            gateway=GW,
            terminated=False,
        )
    )
    ending.start()
    assert hold.reached.wait(WAIT)
    revoking = Worker(lambda: revoke(ctx, rid))
    revoking.start()
    # the revoke commits, then its termination request meets the end's row lock
    wait_until(lambda: not revoking.is_alive() or lock_waits() > 0)
    hold.release()
    ended = ending.finish()
    revoking.finish()
    assert ending.error is None and revoking.error is None, (ending.error, revoking.error)

    after = stored(ctx, session.id)
    assert after.ended_at == ended.ended_at is not None
    assert after.recording_url == "https://rec.example.com/1"
    assert after.end_reason == "closed"
    # the session had ended: its end was not asked for, nor audited as asked for
    assert after.termination_requested_at is None
    assert events(ctx, "session.termination_requested", session.id) == []
    assert len(events(ctx, "session.ended", session.id)) == 1

    with pytest.raises(Conflict, match="already ended"):  # the gateway says it again
        access.end_session(ctx, session_id=session.id, gateway=GW, terminated=True)
    assert len(events(ctx, "session.ended", session.id)) == 1
    assert stored(ctx, session.id) == after


def test_an_end_after_the_termination_request_is_recorded_with_it(
    ctx: Context, lock_waits: Callable[[], int]
) -> None:
    """The other order: the termination request holds the session, the end waits for it."""
    rid = grant(ctx)
    session = open_one(ctx)
    hold = Hold()  # the revoke's termination request wrote the session, not committed
    enforcement = ctx.grants
    assert isinstance(enforcement, Enforcement)  # it asks for the end with its own context
    enforcement.ctx = held_at(ctx, "sessions", "save", hold)
    revoking = Worker(lambda: revoke(ctx, rid))
    revoking.start()
    assert hold.reached.wait(WAIT)
    ending = Worker(
        lambda: access.end_session(ctx, session_id=session.id, gateway=GW, terminated=True)
    )
    ending.start()
    wait_until(lambda: not ending.is_alive() or lock_waits() > 0)
    hold.release()
    revoking.finish()
    ending.finish()
    assert ending.error is None and revoking.error is None, (ending.error, revoking.error)

    after = stored(ctx, session.id)
    assert after.ended_at is not None and after.termination_requested_at is not None
    assert after.end_reason == "terminated: grant revoked"
    assert len(events(ctx, "session.termination_requested", session.id)) == 1
    (end,) = events(ctx, "session.ended", session.id)
    assert end["terminated"] is True and "termination_requested_at" in end


# -- 2. an open racing the revoke --------------------------------------------------------------


def test_an_open_that_read_the_grant_before_the_revoke_committed_is_refused(
    ctx: Context,
) -> None:
    rid = grant(ctx)
    hold = Hold()  # the open has read the grant as live, and written nothing yet
    opening = Worker(lambda: open_one(held_at(ctx, "requests", "live_grants", hold)))
    opening.start()
    assert hold.reached.wait(WAIT)
    revoke(ctx, rid)  # commits, and its termination pass runs, before the open goes on
    hold.release()
    opened = opening.finish()

    if opened is not None:  # had it been let in, its end would have had to be asked for
        after = stored(ctx, opened.id)
        assert after.termination_requested_at is not None or after.ended_at is not None, (
            "a session of a revoked grant is open and was never asked to end"
        )
    assert isinstance(opening.error, Forbidden), opening.error
    with ctx.uow(write=False) as uow:
        assert uow.sessions.of_request(rid) == []


def test_an_open_holding_the_grant_commits_first_and_is_asked_to_end(
    ctx: Context, lock_waits: Callable[[], int]
) -> None:
    rid = grant(ctx)
    hold = Hold()  # the open has checked the grant and added the session, not committed
    opening = Worker(lambda: open_one(held_at(ctx, "sessions", "add", hold)))
    opening.start()
    assert hold.reached.wait(WAIT)
    revoking = Worker(lambda: revoke(ctx, rid))
    revoking.start()
    wait_until(lambda: not revoking.is_alive() or lock_waits() > 0)
    hold.release()
    opened = opening.finish()
    revoking.finish()
    assert opening.error is None and revoking.error is None, (opening.error, revoking.error)

    after = stored(ctx, opened.id)
    assert after.ended_at is None and after.termination_requested_at is not None
    assert len(events(ctx, "session.termination_requested", opened.id)) == 1


def race_opens(ctx: Context, rid: str, others: int = 12) -> None:
    """``others`` opens and a revoke of ``rid`` at once, as gateways and an admin do: every
    open commits before the revoke or is refused, so no session of ``rid``'s family is
    left running without its end asked for."""
    barrier = threading.Barrier(others + 1)

    def race(call: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            barrier.wait(WAIT)
            return call()

        return run

    opens = [Worker(race(lambda: open_one(ctx))) for _ in range(others)]
    revoking = Worker(race(lambda: revoke(ctx, rid)))
    for worker in [*opens, revoking]:
        worker.start()
    revoking.finish()
    assert revoking.error is None, revoking.error
    for worker in opens:
        worker.finish()
        assert worker.error is None or isinstance(worker.error, Forbidden), worker.error
    with ctx.uow(write=False) as uow:
        family = [rid, *(e.id for e in uow.requests.extensions_of(rid))]
        left = [s for r in family for s in uow.sessions.of_request(r, open_only=True)]
    assert [s.id for s in left if s.termination_requested_at is None] == []


def test_opens_racing_a_revoke_are_refused_or_asked_to_end(ctx: Context) -> None:
    for _round in range(3):
        race_opens(ctx, grant(ctx))


def extended(ctx: Context, clock: ManualClock) -> tuple[str, str]:
    """A grant and its extension, the clock in the time the extension added: both live."""
    rid = grant(ctx)
    extension = use.extend_request(
        ctx, request_id=rid, requester=JANE, duration=timedelta(hours=1), reason="more"
    )
    clock.advance(timedelta(hours=1, minutes=1))
    lifecycle.tick(ctx)
    with ctx.uow(write=False) as uow:
        now_live = uow.requests.live_grants(JANE, clock.now())
    assert {g.id for g in now_live} == {rid, extension.id}
    return rid, extension.id


def test_an_open_on_an_extension_never_deadlocks_with_the_revoke_of_its_original(
    stack: tuple[Context, ManualClock], lock_waits: Callable[[], int]
) -> None:
    """The revoke locks the original, writes the chain, then locks the extensions; an open
    on the extension locks the original first too, so it never holds the extension while
    waiting for the chain the revoke holds (PostgreSQL would abort one of them)."""
    ctx, clock = stack
    rid, extension = extended(ctx, clock)
    hold = Hold()  # the open has locked its grant and added the session
    opening = Worker(lambda: open_one(held_at(choosing(ctx, extension), "sessions", "add", hold)))
    opening.start()
    assert hold.reached.wait(WAIT)
    revoking = Worker(lambda: revoke(ctx, rid))
    revoking.start()
    wait_until(lambda: not revoking.is_alive() or lock_waits() > 0)
    hold.release()
    opened = opening.finish()
    revoking.finish()
    assert opening.error is None and revoking.error is None, (opening.error, revoking.error)
    assert opened.request_id == extension
    assert stored(ctx, opened.id).termination_requested_at is not None


def test_opens_during_an_extension_racing_the_revoke_of_its_original(
    stack: tuple[Context, ManualClock],
) -> None:
    ctx, clock = stack
    for _round in range(2):
        race_opens(ctx, extended(ctx, clock)[0])
