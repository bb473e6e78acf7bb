"""The requests repository. Never commits: the unit of work does.

Invariant: ``save`` is guarded by ``version``; a row changed by someone else since it was
read raises ``Conflict`` rather than overwriting their decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from jitgate.adapters.db import tables as t
from jitgate.adapters.db.mapping import from_row, to_row
from jitgate.domain.errors import Conflict
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.service.ports import DueKind, RequestQuery

R = t.requests


class SqlRequests:
    def __init__(self, conn: sa.Connection, *, row_locks: bool) -> None:
        self._conn = conn
        self._row_locks = row_locks

    def add(self, request: AccessRequest) -> None:
        self._conn.execute(R.insert().values(to_row(request)))

    def get(self, request_id: str, *, for_update: bool = False) -> AccessRequest | None:
        query = sa.select(R).where(R.c.id == request_id)
        if for_update and self._row_locks:
            query = query.with_for_update()
        row = self._conn.execute(query).first()
        return from_row(row) if row else None

    def save(self, request: AccessRequest) -> None:
        self.save_many([request])

    def save_many(self, requests: Sequence[AccessRequest]) -> None:
        if not requests:
            return
        rows = []
        for request in requests:
            row = to_row(request)
            row["b_id"], row["b_version"] = request.id, request.version
            row["version"] = request.version + 1
            del row["id"]
            rows.append(row)
        stmt = R.update().where(
            R.c.id == sa.bindparam("b_id"), R.c.version == sa.bindparam("b_version")
        )
        result = self._conn.execute(stmt, rows)
        if result.rowcount != len(rows):
            raise Conflict("the request changed while it was being decided; try again")
        for request in requests:
            request.version += 1

    def find(self, query: RequestQuery) -> list[AccessRequest]:
        stmt = sa.select(R)
        if query.state:
            stmt = stmt.where(R.c.state == query.state)
        if query.requester:
            stmt = stmt.where(R.c.requester == query.requester)
        if query.ids is not None:
            stmt = stmt.where(R.c.id.in_(query.ids))
        if query.after:
            at = datetime.fromisoformat(query.after[0])
            stmt = stmt.where(
                sa.or_(R.c.created_at < at, sa.and_(R.c.created_at == at, R.c.id < query.after[1]))
            )
        stmt = stmt.order_by(R.c.created_at.desc(), R.c.id.desc()).limit(query.limit)
        return [from_row(row) for row in self._conn.execute(stmt)]

    def due(
        self, kind: DueKind, now: datetime, limit: int, *, horizon: datetime | None = None
    ) -> list[AccessRequest]:
        stmt = sa.select(R).where(_due_clause(kind, now, horizon)).limit(limit)
        if self._row_locks:
            stmt = stmt.with_for_update(skip_locked=True)
        return [from_row(row) for row in self._conn.execute(stmt)]

    def grants_of(self, user: str, now: datetime) -> list[AccessRequest]:
        stmt = sa.select(R).where(
            R.c.requester == user,
            R.c.state == State.ACTIVE.value,
            R.c.starts_at <= now,
            R.c.ends_at > now,
        )
        return [from_row(row) for row in self._conn.execute(stmt)]

    def extensions_of(self, request_id: str) -> list[AccessRequest]:
        stmt = sa.select(R).where(R.c.extends == request_id).order_by(R.c.created_at)
        return [from_row(row) for row in self._conn.execute(stmt)]


def _due_clause(kind: DueKind, now: datetime, horizon: datetime | None) -> sa.ColumnElement[bool]:
    state = R.c.state
    if kind == "pending_expired":
        return sa.and_(state == "pending", R.c.expires_at <= now)
    if kind == "escalate":
        return sa.and_(
            state == "pending",
            R.c.escalate_at <= now,
            R.c.escalated.is_(False),
            R.c.expires_at > now,
        )
    if kind == "activate":
        return sa.and_(state == "approved", R.c.starts_at <= now, R.c.ends_at > now)
    if kind == "expiring":
        assert horizon is not None
        return sa.and_(
            state == "active",
            R.c.expiry_warned.is_(False),
            R.c.ends_at <= horizon,
            R.c.ends_at > now,
        )
    return sa.and_(state.in_(("active", "approved")), R.c.ends_at <= now)
