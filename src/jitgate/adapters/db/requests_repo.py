"""The requests repository. Never commits: the unit of work does.

Invariant: ``save`` is guarded by ``version``; a row changed by someone else since it was
read raises ``Conflict`` rather than overwriting their decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from jitgate.adapters.db import tables as t
from jitgate.adapters.db.engine import Database
from jitgate.adapters.db.mapping import MUTABLE, changes_row, from_row, rule_to_json, to_row
from jitgate.adapters.db.prepared import Prepared
from jitgate.domain.errors import Conflict
from jitgate.domain.policy import Scope
from jitgate.domain.request import AccessRequest
from jitgate.domain.states import State
from jitgate.service.ports import DueKind, GrantView, RequestQuery

R = t.requests
_INSERT = R.insert()
_UPDATE = (
    R.update()
    .where(R.c.id == sa.bindparam("b_id"), R.c.version == sa.bindparam("b_version"))
    .values({name: sa.bindparam(name) for name in (*MUTABLE, "version")})
)
_BY_ID = sa.select(R).where(R.c.id == sa.bindparam("id"))
_BY_ID_LOCKED = _BY_ID.with_for_update()
_LIVE = sa.select(R.c.id, R.c.roles, R.c.resources, R.c.scopes, R.c.starts_at, R.c.ends_at).where(
    R.c.requester == sa.bindparam("user"),
    R.c.state == State.ACTIVE.value,
    R.c.starts_at <= sa.bindparam("now"),
    R.c.ends_at > sa.bindparam("now"),
)

# PostgreSQL only: the same read for several users at once (the async reader coalesces the
# calls that arrive while a read is in flight), over the widest window of their ``now``s;
# the reader narrows each user's grants to their own ``now`` (``GrantView.honoured``), so
# each caller gets exactly what ``_LIVE`` would give it.
_LIVE_OF_MANY = sa.select(
    R.c.requester, R.c.id, R.c.roles, R.c.resources, R.c.scopes, R.c.starts_at, R.c.ends_at
).where(
    R.c.requester == sa.any_(sa.bindparam("users", type_=postgresql.ARRAY(t.EMAIL))),
    R.c.state == State.ACTIVE.value,
    R.c.starts_at <= sa.bindparam("latest"),
    R.c.ends_at > sa.bindparam("earliest"),
)


def read_live_grants(
    db: Database, dbapi_connection: Any, user: str, now: datetime
) -> list[GrantView]:
    """The active grants of ``user`` whose window contains ``now``: the hot path of
    authorize, run on the driver's cursor (see ``prepared``)."""
    return grant_views(live_grants_query(db).rows(dbapi_connection, {"user": user, "now": now}))


def live_grants_query(db: Database) -> Prepared:
    """The statement behind ``read_live_grants``, for a caller with its own connection."""
    return db.prepared(_LIVE)


def live_grants_of_many_query(db: Database) -> Prepared:
    """``live_grants_query`` for a list of users (``users``) and a window of ``now``s
    (``earliest``, ``latest``); each row starts with its requester. PostgreSQL only."""
    return db.prepared(_LIVE_OF_MANY)


def grant_views_by_user(rows: list[tuple[Any, ...]]) -> dict[str, list[GrantView]]:
    """``live_grants_of_many_query``'s rows as each requester's grants."""
    rows_of: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        rows_of.setdefault(row[0], []).append(row[1:])
    return {user: grant_views(mine) for user, mine in rows_of.items()}


def grant_views(rows: list[tuple[Any, ...]]) -> list[GrantView]:
    return [
        GrantView(
            id=id_,
            roles=tuple(roles),
            resources=tuple(resources),
            scopes=tuple(Scope(s["type"], s["environment"]) for s in scopes),
            starts_at=starts_at,
            ends_at=ends_at,
        )
        for id_, roles, resources, scopes, starts_at, ends_at in rows
    ]


class SqlRequests:
    def __init__(self, db: Database, conn: sa.Connection, *, row_locks: bool) -> None:
        self._db = db
        self._conn = conn
        self._row_locks = row_locks

    def add(self, request: AccessRequest) -> None:
        self._conn.execute(_INSERT, to_row(request))

    def get(self, request_id: str, *, for_update: bool = False) -> AccessRequest | None:
        query = _BY_ID_LOCKED if for_update and self._row_locks else _BY_ID
        row = self._conn.execute(query, {"id": request_id}).first()
        return from_row(row) if row else None

    def get_family(self, request_id: str) -> tuple[AccessRequest | None, AccessRequest | None]:
        """A request and, for an extension, its original, both locked for update. The
        original is always locked first, so one family's decisions never deadlock."""
        first = self.get(request_id)
        if first is None or not self._row_locks:
            original = self.get(first.extends) if first and first.extends else None
            return first, original
        original = self.get(first.extends, for_update=True) if first.extends else None
        return self.get(request_id, for_update=True), original

    def save(self, request: AccessRequest) -> None:
        self.save_many([request])

    def save_many(self, requests: Sequence[AccessRequest]) -> None:
        if not requests:
            return
        rows = [
            {**changes_row(r), "b_id": r.id, "b_version": r.version, "version": r.version + 1}
            for r in requests
        ]
        result = self._conn.execute(_UPDATE, rows)
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
        return [from_row(row) for row in self._conn.execute(stmt).all()]

    def due(
        self, kind: DueKind, now: datetime, limit: int, *, horizon: datetime | None = None
    ) -> list[AccessRequest]:
        stmt = sa.select(R).where(_due_clause(kind, now, horizon)).limit(limit)
        if self._row_locks:
            stmt = stmt.with_for_update(skip_locked=True)
        return [from_row(row) for row in self._conn.execute(stmt).all()]

    def live_grants(self, user: str, now: datetime) -> list[GrantView]:
        """Inside this unit of work's transaction (``open_session`` reads, then writes)."""
        return read_live_grants(self._db, self._conn.connection.dbapi_connection, user, now)

    def extensions_of(self, request_id: str, *, for_update: bool = False) -> list[AccessRequest]:
        stmt = sa.select(R).where(R.c.extends == request_id).order_by(R.c.created_at, R.c.id)
        if for_update and self._row_locks:
            stmt = stmt.with_for_update()
        return [from_row(row) for row in self._conn.execute(stmt).all()]

    def save_rules(self, request: AccessRequest) -> None:
        rules = [rule_to_json(x) for x in request.rules]
        self._conn.execute(R.update().where(R.c.id == request.id).values(rules=rules))

    def pending_extensions(self, request_ids: Sequence[str]) -> list[AccessRequest]:
        # Pending extensions are few, the ids a whole batch: one read of the pending ones
        # that extend anything (by the state index), then only the matches are locked.
        wanted = set(request_ids)
        stmt = sa.select(R.c.id, R.c.extends).where(
            R.c.state == "pending", R.c.extends.is_not(None)
        )
        ids = [row.id for row in self._conn.execute(stmt) if row.extends in wanted]
        found: list[AccessRequest] = []
        for at in range(0, len(ids), 500):  # under SQLite's old 999-variable limit
            locked = sa.select(R).where(R.c.id.in_(ids[at : at + 500]), R.c.state == "pending")
            if self._row_locks:
                locked = locked.with_for_update()
            found.extend(from_row(row) for row in self._conn.execute(locked).all())
        return found


#: An extension's original, in the due clauses: an approved extension is part of its
#: original's grant, so it runs (and ends) on the original's end, not its own.
_ORIGINAL = R.alias("original")
_LIVE_STATES = (State.APPROVED.value, State.ACTIVE.value)


def _grant_runs(now: datetime) -> sa.ColumnElement[bool]:
    """The extension's original is live and its end has not come."""
    return sa.exists().where(
        _ORIGINAL.c.id == R.c.extends,
        _ORIGINAL.c.state.in_(_LIVE_STATES),
        _ORIGINAL.c.ends_at > now,
    )


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
    if kind == "activate":  # an extension's time runs on to its grant's end
        return sa.and_(
            state == "approved",
            R.c.starts_at <= now,
            sa.or_(R.c.ends_at > now, sa.and_(R.c.extends.is_not(None), _grant_runs(now))),
        )
    if kind == "expiring":  # only an original warns: of the grant's real end
        assert horizon is not None
        return sa.and_(
            state == "active",
            R.c.expiry_warned.is_(False),
            R.c.extends.is_(None),
            R.c.ends_at <= horizon,
            R.c.ends_at > now,
        )
    # an extension's own end comes no later than its grant's: it is due once that ends too
    return sa.and_(
        state.in_(_LIVE_STATES),
        R.c.ends_at <= now,
        sa.or_(R.c.extends.is_(None), sa.not_(_grant_runs(now))),
    )
