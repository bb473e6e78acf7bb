"""The audit log: append-only, hash-chained (SPEC §8).

Invariant: appends are serialised on the ``audit_head`` row (row lock on PostgreSQL, the
single writer on SQLite), so ``seq`` has no gaps and every ``prev_hash`` is the hash of
the event before it; events are only ever inserted, never updated or deleted. ``data`` is
stored as the canonical JSON that was hashed, and ``verify`` holds it to that text.

Readers (``find``) show only events 1…head, and never fail on a damaged row: ``data`` that
is not a JSON object is shown as ``{"$unreadable": the stored text}``. ``iterate`` (export)
and ``verify`` read every row, from the lowest seq, so a row outside the chain is exported
and reported, never skipped.

``at`` is when an event's action began (the tables hold the same time, so the evidence can
compare them), not when it was chained: it may be earlier than a lower seq's. So ``since``
selects by seq, from the first event at or after it on, and never skips one chained late.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jitgate.adapters.db import tables as t
from jitgate.domain.audit import (
    GENESIS,
    AuditRecord,
    BadData,
    ChainCheck,
    chain_hash,
    format_at,
    readable_data,
    stored_data,
    verify_chain,
)
from jitgate.domain.events import DomainEvent
from jitgate.service.ports import AuditQuery

A = t.audit_events
H = t.audit_head
_HEAD = sa.select(H.c.seq, H.c.hash).where(H.c.id == 1)
_HEAD_LOCKED = _HEAD.with_for_update()
_HEAD_MOVE = (
    H.update().where(H.c.id == 1).values(seq=sa.bindparam("seq"), hash=sa.bindparam("hash"))
)
_INSERT = A.insert()
_HEAD_SEQ = sa.select(H.c.seq).where(H.c.id == 1).scalar_subquery()
_IN_CHAIN = A.c.seq.between(1, _HEAD_SEQ)
_TO_HEAD = A.c.seq <= _HEAD_SEQ


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class SqlAuditLog:
    def __init__(self, conn: sa.Connection, *, row_locks: bool) -> None:
        self._conn = conn
        self._row_locks = row_locks

    def _head(self) -> tuple[int, str]:
        row = self._conn.execute(_HEAD_LOCKED if self._row_locks else _HEAD).first()
        if row is None:
            self._conn.execute(H.insert().values(id=1, seq=0, hash=GENESIS))
            return 0, GENESIS
        return int(row.seq), str(row.hash)

    def append(self, events: Sequence[DomainEvent], at: datetime) -> None:
        if not events:
            return
        seq, prev = self._head()
        stamp = format_at(at)
        rows = []
        for event in events:
            seq += 1
            text = _json(event.data)
            fields = {
                "seq": seq,
                "id": str(uuid.uuid4()),
                "at": stamp,
                "type": event.type,
                "actor": event.actor,
                "request_id": event.request_id,
                "data": json.loads(text),
            }
            digest = chain_hash(prev, fields)
            rows.append({**fields, "data": text, "prev_hash": prev, "hash": digest})
            prev = digest
        self._conn.execute(_INSERT, rows)
        self._conn.execute(_HEAD_MOVE, {"seq": seq, "hash": prev})

    def find(self, query: AuditQuery) -> list[AuditRecord]:
        if query.since:  # one range of seq, from the first event at or after it
            sqlite = self._conn.dialect.name == "sqlite"
            first = _first_seq_at_or_after(query.since, sqlite=sqlite)
            stmt = sa.select(A).where(A.c.seq >= first, _TO_HEAD)
        else:
            stmt = sa.select(A).where(_IN_CHAIN)  # the head is read in the same statement
        if query.request_id:
            stmt = stmt.where(A.c.request_id == query.request_id)
        if query.type:
            stmt = stmt.where(A.c.type == query.type)
        if query.actor:
            stmt = stmt.where(A.c.actor == query.actor)
        if query.after_seq is not None:
            stmt = stmt.where(A.c.seq > query.after_seq)
        stmt = stmt.order_by(A.c.seq).limit(query.limit)
        return [_record(row) for row in self._conn.execute(stmt).all()]

    def iterate(self, batch: int = 5000) -> Iterator[AuditRecord]:
        """Every stored event in seq order, for export; raises ``BadData`` (with its seq) at
        the first whose ``data`` ``verify`` would refuse, rather than export it altered."""
        for row in self._rows(batch):
            try:
                data = stored_data(row.data)
            except BadData as exc:
                raise BadData(exc.problem, seq=int(row.seq)) from None
            yield _record(row, data)

    def _rows(self, batch: int = 5000) -> Iterator[Any]:
        """Every row in seq order from the lowest, not from seq 1, until none is left (so
        rows appended meanwhile are read too)."""
        stmt = sa.select(A).order_by(A.c.seq).limit(batch)
        rows = self._conn.execute(stmt).all()
        while rows:
            yield from rows
            rows = self._conn.execute(stmt.where(A.c.seq > rows[-1].seq)).all()

    def verify(self, checkpoint: str | None = None) -> ChainCheck:
        """Walk the chain and hold it against the head, read once before the walk and once
        after it. This needs no snapshot (PostgreSQL's READ COMMITTED, SQLite without a
        transaction): an append commits its events and the head move together, so every
        event up to the head read first is visible to the walk (fewer is a cut-off end),
        and every event the walk saw is covered by the head read after it (more is an event
        the head never covered). Events appended meanwhile are verified, not reported.
        ``checkpoint``: a hash the chain must pass through, as in ``verify_chain``."""
        before = self._head_readonly()
        hashes = {0: GENESIS}  # seq -> hash, from just below the first head's seq on

        def walk() -> Iterator[dict[str, Any]]:
            for row in self._rows():
                record = dict(row._mapping)  # data as the stored text
                if record["seq"] >= before[0] - 1:
                    hashes[record["seq"]] = record["hash"]
                yield record

        check = verify_chain(walk(), checkpoint)
        if not check.ok:
            return check
        return _against_head(check, hashes, before, self._head_readonly())

    def _head_readonly(self) -> tuple[int, str]:
        row = self._conn.execute(_HEAD).first()
        return (int(row.seq), str(row.hash)) if row else (0, GENESIS)


def _first_seq_at_or_after(since: datetime, *, sqlite: bool) -> sa.ScalarSelect[Any]:
    """The lowest seq (1 or more) of an event recorded at or after ``since`` (``NULL``: none
    is). ``since`` selects from there on, not by ``at`` alone: an event's ``at`` is when its
    action began and its seq when it was chained, so an action that waited for the chain
    may follow, with an earlier ``at``, an event already read; a reader polling with the
    last ``at`` it saw still gets it. On SQLite ``seq + 0`` keeps the planner on the ``at``
    index (a recent ``since``, as polling uses, reads a few entries), where it would walk
    the table in seq order up to the first match; PostgreSQL picks the cheaper by itself."""
    seq = A.c.seq + 0 if sqlite else A.c.seq
    first = sa.select(sa.func.min(seq)).where(A.c.at >= format_at(since), seq >= 1)
    return first.scalar_subquery()


def _against_head(
    check: ChainCheck, hashes: dict[int, str], before: tuple[int, str], after: tuple[int, str]
) -> ChainCheck:
    """``check``, an intact chain of events 1…n whose hashes from the first head's seq on
    are ``hashes``, held against the head read ``before`` and ``after`` walking it."""
    n = check.events

    def broken(seq: int, problem: str) -> ChainCheck:
        prior = max(seq - 1, 0)
        return ChainCheck(False, prior, hashes.get(prior, ""), seq, problem)

    if n < before[0]:
        problem = f"events missing at the end of the chain (the head is at seq {before[0]})"
        if n == 0:
            problem = f"the chain is empty but the head says {before[0]} events"
        return ChainCheck(False, n, check.head, n + 1, problem)
    if hashes.get(before[0]) != before[1]:
        return broken(before[0], "the head does not match the event at its seq")
    if n > after[0]:
        return broken(after[0] + 1, f"events after the head (it is at seq {after[0]})")
    if n == after[0] and check.head != after[1]:
        return broken(n, "the head does not match the event at its seq")
    return check


def _record(row: Any, data: dict[str, Any] | None = None) -> AuditRecord:
    m = row._mapping
    return AuditRecord(
        seq=int(m["seq"]),
        id=m["id"],
        at=m["at"],
        type=m["type"],
        actor=m["actor"],
        request_id=m["request_id"],
        data=readable_data(m["data"]) if data is None else data,
        prev_hash=m["prev_hash"],
        hash=m["hash"],
    )
