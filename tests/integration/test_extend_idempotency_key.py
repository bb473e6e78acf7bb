"""``Idempotency-Key`` on extend, on SQLite and PostgreSQL, as on create: the same key with
the same body gives the first extension again and changes nothing, with another body it is
refused; an extension's keys are those of the request it extends, so the same key on a
create, or on another request's extension, is another key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitgate.domain.creation import Draft
from jitgate.domain.errors import Conflict, Forbidden, Invalid, NotFound
from jitgate.domain.states import State
from jitgate.service import queries
from jitgate.service.context import Context
from jitgate.service.decisions import approve_request
from jitgate.service.ports import AuditQuery
from jitgate.service.requests import Created, create_request, extend_request_with_key

JANE = "jane.doe@example.com"
RAVI = "ravi@example.com"
MARK = "mark.lee@example.com"  # jane's manager: may see her requests
SEC = "sec@example.com"
H = timedelta(hours=1)


def _grant(ctx: Context) -> str:
    """An active sre-oncall grant of Jane's."""
    made = create_request(ctx, requester=JANE, draft=Draft(roles=("sre-oncall",), reason="x"))
    _approve(ctx, made.request.id)
    return made.request.id


def _approve(ctx: Context, rid: str) -> None:
    """The SRE on call, then Jane's manager: active."""
    on_call = ctx.policy.current.directory.on_call("sre", ctx.clock.now())
    assert on_call is not None
    approve_request(ctx, request_id=rid, approver=on_call)
    assert approve_request(ctx, request_id=rid, approver=MARK).request.state is State.ACTIVE


def _extend(ctx: Context, rid: str, key: str | None, body: str, **more: object) -> Created:
    options: dict[str, object] = {"duration": H, "reason": "more", "requester": JANE, **more}
    return extend_request_with_key(
        ctx,
        request_id=rid,
        idempotency_key=key,
        body_hash=body,
        **options,  # type: ignore[arg-type]
    )


def _created(ctx: Context) -> list[str | None]:
    query = AuditQuery(type="request.created", limit=1000)
    return [e.request_id for e in queries.audit_events(ctx, viewer=SEC, query=query)]


def test_the_same_key_and_body_give_the_first_extension(db_url: str, make_ctx) -> None:
    ctx, _clock = make_ctx(db_url)
    rid = _grant(ctx)
    first = _extend(ctx, rid, "k-1", "h-1")
    again = _extend(ctx, rid, "k-1", "h-1")
    assert not first.replayed and again.replayed
    assert again.request.id == first.request.id and again.request.extends == rid
    before = _created(ctx)
    with pytest.raises(Invalid, match="different body"):
        _extend(ctx, rid, "k-1", "h-2", reason="other", duration=2 * H)
    assert _created(ctx) == before  # nothing more was opened
    with ctx.uow(write=False) as uow:
        assert [e.id for e in uow.requests.extensions_of(rid)] == [first.request.id]
    # without a key, each call is a new extension
    assert _extend(ctx, rid, None, "h-1").request.id != first.request.id


def test_a_create_and_an_extension_with_one_key_do_not_collide(db_url: str, make_ctx) -> None:
    ctx, _clock = make_ctx(db_url)
    draft = Draft(roles=("dev-ssh",), reason="x")
    created = create_request(ctx, requester=JANE, draft=draft, idempotency_key="k", body_hash="h")
    rid = _grant(ctx)
    extension = _extend(ctx, rid, "k", "h")
    assert not extension.replayed and extension.request.extends == rid
    assert extension.request.id != created.request.id
    again = create_request(ctx, requester=JANE, draft=draft, idempotency_key="k", body_hash="h")
    assert again.replayed and again.request.id == created.request.id
    other = _grant(ctx)  # one key, two requests extended: two extensions
    assert _extend(ctx, other, "k", "h").request.extends == other


def test_the_key_replays_only_to_the_requester(db_url: str, make_ctx) -> None:
    """Another person's call with the same key is refused as without a key, before the key
    is looked at: it never gets the requester's extension."""
    ctx, _clock = make_ctx(db_url)
    rid = _grant(ctx)
    _extend(ctx, rid, "k-1", "h-1")
    with pytest.raises(Forbidden, match="only the requester"):
        _extend(ctx, rid, "k-1", "h-1", requester=MARK)
    with pytest.raises(NotFound):
        _extend(ctx, rid, "k-1", "h-1", requester=RAVI)


def test_a_refused_extension_leaves_its_key_unused(db_url: str, make_ctx) -> None:
    """The key is claimed in the extension's transaction: a refusal does not keep it."""
    ctx, clock = make_ctx(db_url)
    made = create_request(ctx, requester=JANE, draft=Draft(roles=("sre-oncall",), reason="x"))
    rid = made.request.id
    with pytest.raises(Conflict, match="only a live grant extends"):  # still pending
        _extend(ctx, rid, "k-1", "h-1")
    _approve(ctx, rid)
    ext = _extend(ctx, rid, "k-1", "h-2")  # another body: the refused call kept nothing
    assert not ext.replayed
    clock.advance(10 * H)  # the grant has ended: a replay still gives the same answer
    assert _extend(ctx, rid, "k-1", "h-2").request.id == ext.request.id
