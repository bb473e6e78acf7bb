"""API tokens on SQLite and PostgreSQL: created, listed, revoked by id, by the token itself
or by principal, and every step in the audit chain by id, never by the token."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from jitgate.domain.errors import Invalid, NotFound
from jitgate.entrypoints.api.auth import watch_revocations
from jitgate.service.ports import AuditQuery, Principal
from jitgate.service.tokens import (
    authenticate,
    create_token,
    hash_token,
    list_tokens,
    revocations,
    revoke_tokens,
)

JANE = Principal("user", "jane.doe@example.com")
GATEWAY = Principal("service", "gw")


def _who(ctx: object, token: str) -> Principal | None:
    found = authenticate(ctx, token=token)  # type: ignore[arg-type]
    return found.principal if found else None


def _audit(ctx: object) -> list[tuple[str, dict[str, object]]]:
    with ctx.uow(write=False) as uow:  # type: ignore[attr-defined]
        return [(e.type, e.data) for e in uow.audit.find(AuditQuery(limit=100))]


def test_a_token_is_listed_by_id_and_audited_without_the_token(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    first = create_token(ctx, principal=JANE)
    clock.advance(timedelta(seconds=1))
    second = create_token(ctx, principal=GATEWAY, actor="ops@example.com", via="test")

    listed = list_tokens(ctx)
    assert [(i.id, i.principal) for i in listed] == [
        (hash_token(first)[:12], JANE),
        (hash_token(second)[:12], GATEWAY),
    ]
    assert _who(ctx, first) == JANE
    assert _who(ctx, second) == GATEWAY

    events = _audit(ctx)
    assert [kind for kind, _ in events] == ["token.created", "token.created"]
    assert events[1][1] == {
        "token": listed[1].id,
        "kind": "service",
        "subject": "gw",
        "via": "test",
    }
    assert first not in json.dumps(events) and second not in json.dumps(events)
    with ctx.uow(write=False) as uow:
        assert uow.audit.verify().ok


def test_revoked_by_id_the_token_stops_working_and_stays_listed(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    token = create_token(ctx, principal=JANE)
    other = create_token(ctx, principal=JANE)
    token_id = hash_token(token)[:12]
    clock.advance(timedelta(minutes=5))

    done = revoke_tokens(ctx, which=token_id[:8].upper())
    assert [(info.id, newly) for info, newly in done] == [(token_id, True)]
    assert done[0][0].revoked_at == clock.now()
    assert _who(ctx, token) is None
    assert _who(ctx, other) == JANE, "only the named token is revoked"
    assert [i.id for i in list_tokens(ctx)] == [hash_token(other)[:12]]
    assert token_id in [i.id for i in list_tokens(ctx, include_ended=True)]

    again = revoke_tokens(ctx, which=token)  # the token itself names it as well
    assert [(info.id, newly) for info, newly in again] == [(token_id, False)]
    revoked = [data for kind, data in _audit(ctx) if kind == "token.revoked"]
    assert revoked == [{"token": token_id, "kind": "user", "subject": JANE.subject, "via": "cli"}]


def test_revoking_a_principal_revokes_each_of_its_tokens_only(db_url: str, make_ctx) -> None:
    ctx, _clock = make_ctx(db_url)
    mine = [create_token(ctx, principal=JANE) for _ in range(3)]
    gateway = create_token(ctx, principal=GATEWAY)
    revoke_tokens(ctx, which=mine[0])

    done = revoke_tokens(ctx, which=JANE)
    assert sorted((info.id, newly) for info, newly in done) == sorted(
        [(hash_token(mine[0])[:12], False)] + [(hash_token(t)[:12], True) for t in mine[1:]]
    )
    assert all(_who(ctx, t) is None for t in mine)
    assert _who(ctx, gateway) == GATEWAY
    assert sum(kind == "token.revoked" for kind, _ in _audit(ctx)) == 3


@pytest.mark.parametrize(
    ("which", "error", "words"),
    [
        ("banana", Invalid, "is not a token id"),
        ("abc", Invalid, "at least 8 hex digits"),
        ("00000000", NotFound, "no token has the id 00000000"),
        ("jg_never-created", NotFound, "never created here"),
        (Principal("user", "nobody@example.com"), NotFound, "no token belongs to user"),
    ],
)
def test_a_name_that_names_no_token_is_refused_and_changes_nothing(
    db_url: str, make_ctx, which: object, error: type[Exception], words: str
) -> None:
    ctx, _clock = make_ctx(db_url)
    token = create_token(ctx, principal=JANE)
    with pytest.raises(error, match=words):
        revoke_tokens(ctx, which=which)  # type: ignore[arg-type]
    assert _who(ctx, token) == JANE
    assert [kind for kind, _ in _audit(ctx)] == ["token.created"]


def test_an_id_that_names_two_tokens_is_refused(db_url: str, make_ctx) -> None:
    ctx, _clock = make_ctx(db_url)
    now = ctx.clock.now()
    with ctx.uow() as uow:  # two hashes that share their first 10 digits
        uow.tokens.add("abcdef0123" + "0" * 54, JANE, now, None)
        uow.tokens.add("abcdef0123" + "1" * 54, JANE, now, None)
        uow.commit()
    with pytest.raises(Invalid, match="names 2 tokens; give more of its digits"):
        revoke_tokens(ctx, which="abcdef0123")
    done = revoke_tokens(ctx, which="abcdef01231")
    assert [info.token_hash for info, _ in done] == ["abcdef0123" + "1" * 54]


def test_a_token_with_a_lifetime_stops_working_when_it_ends(db_url: str, make_ctx) -> None:
    ctx, clock = make_ctx(db_url)
    created = clock.now()
    token = create_token(ctx, principal=GATEWAY, expires_in=timedelta(hours=1))
    forever = create_token(ctx, principal=JANE)
    (info,) = [i for i in list_tokens(ctx) if i.principal == GATEWAY]
    assert info.expires_at == created + timedelta(hours=1)
    with ctx.uow(write=False) as uow:
        (event, _) = uow.audit.find(AuditQuery(type="token.created", limit=10))
    assert event.data["expires_at"] == (created + timedelta(hours=1)).isoformat()

    clock.advance(timedelta(minutes=59, seconds=59))
    assert _who(ctx, token) == GATEWAY
    clock.advance(timedelta(seconds=1))
    assert _who(ctx, token) is None, "a token is not honoured at its expires_at"
    assert _who(ctx, forever) == JANE
    assert [i.principal for i in list_tokens(ctx)] == [JANE]
    assert len(list_tokens(ctx, include_ended=True)) == 2
    ((revoked, newly),) = revoke_tokens(ctx, which=info.id)  # an expired token can be revoked
    assert newly and revoked.revoked_at == clock.now()


@pytest.mark.parametrize("lifetime", [timedelta(0), timedelta(seconds=-300)])
def test_a_lifetime_must_be_positive(db_url: str, make_ctx, lifetime: timedelta) -> None:
    ctx, _ = make_ctx(db_url)
    with pytest.raises(Invalid, match="must be positive"):
        create_token(ctx, principal=JANE, expires_in=lifetime)
    assert list_tokens(ctx, include_ended=True) == []


def test_a_revocation_from_another_process_drops_the_token_cache(
    db_url: str, make_ctx, caplog: pytest.LogCaptureFixture
) -> None:
    """The API's token cache (``watch_revocations``) is dropped once the number of revoked
    tokens moves; an unreadable count keeps the cache (its entries still time out) and the
    watch goes on."""
    ctx, _ = make_ctx(db_url)
    token, other = create_token(ctx, principal=JANE), create_token(ctx, principal=GATEWAY)
    cache = {token: (JANE, math.inf), other: (GATEWAY, math.inf)}
    failing = SimpleNamespace(ctx=SimpleNamespace(uow=_unreachable))
    watched = SimpleNamespace(ctx=ctx)

    async def until(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 5
        while not condition():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        down = asyncio.create_task(watch_revocations(failing, cache, 0.01))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert not down.done() and len(cache) == 2
        down.cancel()
        warned = [r.getMessage() for r in caplog.records if r.name == "jitgate.api"]
        assert warned == ["cannot read token revocations, retrying: OperationalError"]
        watch = asyncio.create_task(watch_revocations(watched, cache, 0.01))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert len(cache) == 2  # nothing was revoked
        await asyncio.to_thread(revoke_tokens, ctx, which=token)
        await until(lambda: not cache)
        watch.cancel()

    asyncio.run(scenario())
    assert revocations(ctx) == 1


def _unreachable(*_: object, **__: object) -> None:
    raise sa.exc.OperationalError("SELECT", {}, Exception("database is away"))
