"""``GET /v1/requests?requester=EMAIL`` by someone who is not an admin, on SQLite and
PostgreSQL: the requests of that person the viewer may see, exactly those ``GET
/v1/requests/{id}`` shows them (``may_view``), never a refusal and never one they could not
open; and a page carries a cursor only when another request follows."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitgate.adapters.clock import ManualClock
from jitgate.domain.creation import Draft
from jitgate.domain.errors import NotFound
from jitgate.domain.states import State
from jitgate.service import lifecycle, queries
from jitgate.service.context import Context
from jitgate.service.decisions import approve_request, deny_request
from jitgate.service.requests import create_request

JANE = "jane.doe@example.com"  # developers; manager mark; team payments (lead priya)
RAVI = "ravi@example.com"  # developers; manager mark; no part in jane's requests
MARK = "mark.lee@example.com"  # jane's manager
PRIYA = "priya@example.com"  # team lead of payments
SEC = "sec@example.com"  # security: admin
M = timedelta(minutes=1)


def _create(ctx: Context, role: str, requester: str = JANE) -> str:
    clock = ctx.clock
    assert isinstance(clock, ManualClock)
    clock.advance(M)  # newest first is creation order
    draft = Draft(roles=(role,), reason="INC-1")
    return create_request(ctx, requester=requester, draft=draft).request.id


def _oncall(ctx: Context) -> str:
    person = ctx.policy.current.directory.on_call("sre", ctx.clock.now())
    assert person is not None
    return person


def _jane_and_ravi(ctx: Context) -> dict[str, str]:
    """Jane's requests in every relation to Mark, and one of Ravi's Mark may decide."""
    expired = _create(ctx, "sre-oncall")  # mark could have decided it, and never did
    assert isinstance(ctx.clock, ManualClock)
    ctx.clock.advance(61 * M)  # pending_ttl: 1h
    assert lifecycle.tick(ctx).expired_pending == 1
    made = {
        "prod, expired undecided": expired,
        "staging, priya's to decide": _create(ctx, "staging-ssh"),
        "prod, mark may decide": _create(ctx, "sre-oncall"),
        "dev, approved by policy": _create(ctx, "dev-ssh"),
        "prod, mark approved, active": _create(ctx, "sre-oncall"),
        "staging, denied by priya": _create(ctx, "staging-ssh"),
        "ravi's prod, mark may decide": _create(ctx, "sre-oncall", requester=RAVI),
    }
    approved = made["prod, mark approved, active"]
    approve_request(ctx, request_id=approved, approver=MARK)
    done = approve_request(ctx, request_id=approved, approver=_oncall(ctx)).request
    assert done.state is State.ACTIVE
    deny_request(ctx, request_id=made["staging, denied by priya"], approver=PRIYA, reason="no")
    return made


def _ids(ctx: Context, viewer: str, **filters: object) -> list[str]:
    page = queries.list_requests(ctx, viewer=viewer, limit=500, **filters)  # type: ignore[arg-type]
    assert page.next_cursor is None
    return [r.id for r in page.items]


def _visible(ctx: Context, viewer: str, request_id: str) -> bool:
    try:
        queries.get_request(ctx, request_id=request_id, viewer=viewer)
    except NotFound:
        return False
    return True


def test_an_approver_lists_the_requests_of_someone_they_may_see(db_url: str, make_ctx) -> None:
    ctx, _clock = make_ctx(db_url)
    made = _jane_and_ravi(ctx)
    everyone = _ids(ctx, SEC, requester=JANE)  # an admin: all of jane's, newest first
    assert sorted(everyone) == sorted(v for k, v in made.items() if not k.startswith("ravi"))

    listed = _ids(ctx, MARK, requester=JANE)
    assert listed == [made["prod, mark approved, active"], made["prod, mark may decide"]]
    # exactly what GET shows him, in the list's order
    assert listed == [rid for rid in everyone if _visible(ctx, MARK, rid)]
    assert _ids(ctx, PRIYA, requester=JANE) == [
        made["staging, denied by priya"],
        made["staging, priya's to decide"],
    ]
    assert _ids(ctx, MARK, requester=JANE, state="pending") == [made["prod, mark may decide"]]
    assert _ids(ctx, MARK, requester=RAVI) == [made["ravi's prod, mark may decide"]]


def test_someone_with_no_part_gets_an_empty_list_not_a_refusal(db_url: str, make_ctx) -> None:
    ctx, _clock = make_ctx(db_url)
    _jane_and_ravi(ctx)
    assert _ids(ctx, RAVI, requester=JANE) == []
    assert _ids(ctx, "nobody@example.com", requester=JANE) == []
    # their own list is unchanged: the requester is themselves
    assert _ids(ctx, RAVI) == _ids(ctx, RAVI, requester=RAVI) and len(_ids(ctx, RAVI)) == 1


def test_approver_me_and_a_requester_still_combine(db_url: str, make_ctx) -> None:
    ctx, _clock = make_ctx(db_url)
    made = _jane_and_ravi(ctx)
    assert _ids(ctx, MARK, requester=JANE, approver_me=True) == [
        made["prod, mark approved, active"],
        made["prod, mark may decide"],
    ]
    assert _ids(ctx, MARK, approver_me=True, state="pending") == [
        made["ravi's prod, mark may decide"],
        made["prod, mark may decide"],
    ]


@pytest.mark.parametrize("limit", [1, 2])
def test_pages_of_someone_elses_requests_end_without_a_cursor(
    db_url: str, make_ctx, limit: int
) -> None:
    """Mark may see two of Jane's requests among others: pages of ``limit`` give them each
    once, and the page that ends them (full or not) gives no cursor."""
    ctx, _clock = make_ctx(db_url)
    made = _jane_and_ravi(ctx)
    for _ in range(3):  # more that he may not see, after (newer than) his
        _create(ctx, "dev-ssh")
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = queries.list_requests(ctx, viewer=MARK, requester=JANE, limit=limit, cursor=cursor)
        seen += [r.id for r in page.items]
        assert len(page.items) <= limit
        cursor = page.next_cursor
        if cursor is None:
            break
        assert page.items, "a cursor is given only when another request follows"
    assert cursor is None
    assert seen == [made["prod, mark approved, active"], made["prod, mark may decide"]]


def test_a_full_last_page_has_no_cursor(db_url: str, make_ctx) -> None:
    ctx, _clock = make_ctx(db_url)
    ids = [_create(ctx, "dev-ssh") for _ in range(4)]
    first = queries.list_requests(ctx, viewer=JANE, limit=2)
    assert [r.id for r in first.items] == ids[:1:-1] and first.next_cursor is not None
    last = queries.list_requests(ctx, viewer=JANE, limit=2, cursor=first.next_cursor)
    assert [r.id for r in last.items] == ids[1::-1]
    assert last.next_cursor is None  # nothing follows: no cursor to an empty page
    assert queries.list_requests(ctx, viewer=JANE, limit=4).next_cursor is None
    assert queries.list_requests(ctx, viewer=JANE, limit=3).next_cursor is not None
