"""Tampering with the stored audit chain, on SQLite and PostgreSQL: a row outside 1…head,
stored ``data`` that is not JSON or not the canonical text that was hashed, an emptied
chain, a consistent rewrite held to a checkpoint. ``verify`` reports each; readers never
show a row outside the chain and never fail on a damaged one; ``iterate`` (export) refuses
to hand out data it would have to alter."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import sqlalchemy as sa

from jitgate.adapters.db import tables as t
from jitgate.adapters.db.uow import SqlUnitOfWorkFactory
from jitgate.domain.audit import GENESIS, UNREADABLE, BadData, chain_hash, compact
from jitgate.domain.events import DomainEvent
from jitgate.service.context import Context
from jitgate.service.ports import AuditQuery

A = t.audit_events


def _append(ctx: Context, n: int, at: datetime, request_id: str | None = "r-1") -> None:
    with ctx.uow() as uow:
        uow.audit.append(
            [
                DomainEvent(
                    "request.created",
                    "jane@x",
                    request_id,
                    {"reason": "no incident", "i": i, "s": "é", "f": 0.1, "deep": {"b": [i]}},
                )
                for i in range(n)
            ],
            at,
        )
        uow.commit()


def _engine(ctx: Context) -> sa.Engine:
    factory = ctx.uow
    assert isinstance(factory, SqlUnitOfWorkFactory)
    return factory.db.engine


def _set_data(ctx: Context, seq: int, text: str) -> None:
    with _engine(ctx).begin() as conn:
        conn.execute(A.update().where(A.c.seq == seq).values(data=text))


def _insert_outside(ctx: Context, seq: int) -> None:
    """A row chained to GENESIS like a first event, at ``seq`` (0 or below, or past the
    head), inserted directly, as someone with write access to the table could."""
    fields = {
        "seq": seq,
        "id": f"forged-{seq}",
        "at": "2026-03-02T09:00:00.000000Z",
        "type": "approval.recorded",
        "actor": "mallory@x",
        "request_id": "r-1",
        "data": {"decision": "approve"},
    }
    with _engine(ctx).begin() as conn:
        conn.execute(
            A.insert().values(
                **{**fields, "data": compact(fields["data"])},
                prev_hash=GENESIS,
                hash=chain_hash(GENESIS, fields),
            )
        )


# --- 1. a row outside 1…head --------------------------------------------------------------


@pytest.mark.parametrize("seq", [0, -7])
def test_a_row_below_seq_1_is_reported_and_never_shown(
    db_url: str, make_ctx, start, seq: int
) -> None:
    ctx, _clock = make_ctx(db_url)
    _append(ctx, 3, start)
    _insert_outside(ctx, seq)
    with ctx.uow(write=False) as uow:
        check = uow.audit.verify()
        shown = uow.audit.find(AuditQuery(request_id="r-1"))
        everything = uow.audit.find(AuditQuery(limit=1000))
        exported = [r.seq for r in uow.audit.iterate()]
    assert not check.ok and check.broken_at == seq and check.events == 0
    assert check.problem == f"an event at seq {seq} is outside the chain (it starts at seq 1)"
    assert [e.seq for e in shown] == [1, 2, 3] == [e.seq for e in everything]
    assert exported == [seq, 1, 2, 3]  # exported as it is, so verifying the file finds it


def test_a_row_past_the_head_is_not_shown(db_url: str, make_ctx, start) -> None:
    ctx, _clock = make_ctx(db_url)
    _append(ctx, 3, start)
    _insert_outside(ctx, 9)
    with ctx.uow(write=False) as uow:
        check = uow.audit.verify()
        shown = uow.audit.find(AuditQuery(request_id="r-1"))
    assert not check.ok and check.broken_at == 9
    assert [e.seq for e in shown] == [1, 2, 3]


def test_readers_show_nothing_without_a_head(db_url: str, make_ctx, start) -> None:
    ctx, _clock = make_ctx(db_url)
    _insert_outside(ctx, 1)  # a first event no append ever wrote: there is no head row
    with ctx.uow(write=False) as uow:
        assert uow.audit.find(AuditQuery()) == []
        assert not uow.audit.verify().ok


# --- 3, 4. stored data ----------------------------------------------------------------------


def test_the_store_writes_data_as_the_canonical_json_that_is_hashed(
    db_url: str, make_ctx, start
) -> None:
    """The column is plain text on both databases, not JSON/JSONB: what was written is
    read back byte for byte, which is what lets verify pin the text."""
    ctx, _clock = make_ctx(db_url)
    _append(ctx, 3, start)
    with _engine(ctx).connect() as conn:
        stored = conn.execute(sa.select(A.c.data).order_by(A.c.seq)).scalars().all()
    assert stored == [compact(json.loads(text)) for text in stored]
    assert stored[1] == '{"deep":{"b":[1]},"f":0.1,"i":1,"reason":"no incident","s":"é"}'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "its data is not valid JSON"),
        ("42", "its data is not a JSON object"),
        (
            '{"deep":{"b":[1]},"f":0.1,"i":1,"reason":"FORGED","reason":"no incident","s":"é"}',
            "its data has the key 'reason' twice",
        ),
        (
            '{"deep": {"b": [1]}, "f": 0.1, "i": 1, "reason": "no incident", "s": "é"}',
            "its data is not stored as the canonical JSON that was hashed",
        ),
    ],
    ids=["not-json", "not-object", "duplicate-key", "spaces"],
)
def test_stored_data_not_the_hashed_text_is_reported_and_not_exported(
    db_url: str, make_ctx, start, text: str, problem: str
) -> None:
    ctx, _clock = make_ctx(db_url)
    _append(ctx, 4, start)
    _set_data(ctx, 2, text)
    with ctx.uow(write=False) as uow:
        check = uow.audit.verify()
        shown = uow.audit.find(AuditQuery(request_id="r-1"))
        with pytest.raises(BadData) as caught:
            list(uow.audit.iterate())
    assert not check.ok and check.broken_at == 2 and check.events == 1
    assert check.problem == problem
    assert caught.value.seq == 2 and caught.value.problem == problem
    assert [e.seq for e in shown] == [1, 2, 3, 4]  # readers still answer


def test_readers_show_unreadable_data_with_a_marker(db_url: str, make_ctx, start) -> None:
    ctx, _clock = make_ctx(db_url)
    _append(ctx, 3, start)
    _set_data(ctx, 2, "{")
    with ctx.uow(write=False) as uow:
        shown = uow.audit.find(AuditQuery())
    assert shown[1].data == {UNREADABLE: "{"}
    assert shown[0].data["reason"] == "no incident"


# --- 5. an emptied chain -------------------------------------------------------------------


def test_deleting_every_event_says_the_chain_is_empty(db_url: str, make_ctx, start) -> None:
    ctx, _clock = make_ctx(db_url)
    _append(ctx, 5, start)
    with _engine(ctx).begin() as conn:
        conn.execute(A.delete())
    with ctx.uow(write=False) as uow:
        check = uow.audit.verify()
    assert not check.ok and check.events == 0 and check.broken_at == 1
    assert check.problem == "the chain is empty but the head says 5 events"


# --- 2. a checkpoint, held by the database's verify -------------------------------------------


def test_a_checkpoint_is_passed_through_while_the_chain_grows_and_missed_after_a_rewrite(
    db_url: str, make_ctx, start
) -> None:
    ctx, _clock = make_ctx(db_url)
    _append(ctx, 3, start)
    with ctx.uow(write=False) as uow:
        checkpoint = uow.audit.find(AuditQuery())[-1].hash
    _append(ctx, 2, start)  # the chain grows after the checkpoint was kept
    with ctx.uow(write=False) as uow:
        grown = uow.audit.verify(checkpoint)
    assert grown.ok and grown.events == 5 and grown.checkpoint_seq == 3
    _rewrite(ctx)
    with ctx.uow(write=False) as uow:
        rewritten = uow.audit.verify(checkpoint)
    assert rewritten.ok and rewritten.events == 5 and rewritten.checkpoint_seq is None


def _rewrite(ctx: Context) -> None:
    """Forge the reason of every event and recompute every hash and the head."""
    engine, prev = _engine(ctx), GENESIS
    with engine.begin() as conn:
        rows = conn.execute(sa.select(A).order_by(A.c.seq)).all()
        for row in rows:
            fields = dict(row._mapping)
            fields["data"] = {**json.loads(fields["data"]), "reason": "FORGED"}
            digest = chain_hash(prev, fields)
            conn.execute(
                A.update()
                .where(A.c.seq == row.seq)
                .values(data=compact(fields["data"]), prev_hash=prev, hash=digest)
            )
            prev = digest
        conn.execute(t.audit_head.update().values(hash=prev))
