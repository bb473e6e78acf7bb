"""The repository of backend grant rows and SSH KRL entries, and the unit of work that
carries it next to the core repositories. Never commits: the unit of work does.

Invariants: a row is written before its backend is called (``applying``/``removing`` with
``in_flight``) and settled after, so a crash in between leaves a row that says so;
``get(..., for_update=True)`` locks the row until the transaction ends, and when there is
no row yet it locks its key instead (a transaction-scoped advisory lock on PostgreSQL,
SQLite has one writer), so two processes can never both read "no row" and both write one:
the second waits, then reads the row the first committed.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jitgate.adapters.db import tables as t
from jitgate.adapters.db.engine import Database
from jitgate.adapters.db.uow import SqlUnitOfWork
from jitgate.service.backend_ports import BackendGrant, Revocation, RevokedKey

G = t.backend_grants
R = t.requests
K = t.ssh_revoked_keys
LIVE_STATES = ("approved", "active")
#: The advisory lock class of a ``backend_grants`` key (two-int form: its key space never
#: overlaps the one-bigint form of the migration lock).
KEY_LOCK = 0x6A676267  # "jgbg"


def _grant(row: Any) -> BackendGrant:
    m = row._mapping
    return BackendGrant(
        request_id=m["request_id"],
        backend=m["backend"],
        user=m["user_email"],
        backend_type=m["backend_type"],
        status=m["status"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        in_flight=bool(m["in_flight"]),
        called=bool(m["called"]),
        terminate=bool(m["terminate"]),
        ended_early=bool(m["ended_early"]),
        attempts=m["attempts"],
        next_attempt_at=m["next_attempt_at"],
        last_error=m["last_error"],
        covered_by=m["covered_by"],
        detail=dict(m["detail"] or {}),
        applied_at=m["applied_at"],
        removed_at=m["removed_at"],
    )


def _values(g: BackendGrant) -> dict[str, Any]:
    return {
        "user_email": g.user,
        "backend_type": g.backend_type,
        "status": g.status,
        "in_flight": g.in_flight,
        "called": g.called,
        "terminate": g.terminate,
        "ended_early": g.ended_early,
        "attempts": g.attempts,
        "next_attempt_at": g.next_attempt_at,
        "last_error": g.last_error,
        "covered_by": g.covered_by,
        "detail": g.detail,
        "created_at": g.created_at,
        "updated_at": g.updated_at,
        "applied_at": g.applied_at,
        "removed_at": g.removed_at,
    }


def key_lock(request_id: str, backend: str) -> int:
    """A stable signed 32-bit number for a row's key; a collision only serialises two keys."""
    digest = hashlib.sha256(f"{request_id}\0{backend}".encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def ca_fingerprint(ca_public_key: str) -> str:
    """``SHA256:<base64>`` of the key blob, as ``ssh-keygen -l`` prints it."""
    blob = base64.b64decode(ca_public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class SqlBackendGrants:
    def __init__(self, conn: sa.Connection, *, row_locks: bool) -> None:
        self._conn = conn
        self._row_locks = row_locks

    def get(
        self, request_id: str, backend: str, *, for_update: bool = False
    ) -> BackendGrant | None:
        stmt = sa.select(G).where(G.c.request_id == request_id, G.c.backend == backend)
        if not (for_update and self._row_locks):
            row = self._conn.execute(stmt).first()
            return _grant(row) if row else None
        stmt = stmt.with_for_update()
        row = self._conn.execute(stmt).first()
        if row is None:
            # nothing to lock yet: lock the key, then look again in a fresh snapshot (READ
            # COMMITTED), which sees a row a peer committed while we waited
            self._conn.execute(
                sa.select(sa.func.pg_advisory_xact_lock(KEY_LOCK, key_lock(request_id, backend)))
            )
            row = self._conn.execute(stmt).first()
        return _grant(row) if row else None

    def of_request(self, request_id: str) -> list[BackendGrant]:
        stmt = sa.select(G).where(G.c.request_id == request_id).order_by(G.c.backend)
        return [_grant(r) for r in self._conn.execute(stmt)]

    def save(self, grant: BackendGrant) -> None:
        values = _values(grant)
        key = (G.c.request_id == grant.request_id) & (G.c.backend == grant.backend)
        updated = self._conn.execute(G.update().where(key).values(**values))
        if updated.rowcount == 0:
            self._conn.execute(
                G.insert().values(request_id=grant.request_id, backend=grant.backend, **values)
            )

    def covering(self, user: str, backend: str, exclude: str, now: datetime) -> str | None:
        """Another active grant of ``user`` in force on ``backend`` now, if there is one."""
        stmt = (
            sa.select(G.c.request_id)
            .join(R, R.c.id == G.c.request_id)
            .where(
                G.c.user_email == user,
                G.c.backend == backend,
                G.c.request_id != exclude,
                G.c.status == "applied",
                R.c.state == "active",
                R.c.starts_at <= now,
                R.c.ends_at > now,
            )
            .order_by(R.c.ends_at.desc())
            .limit(1)
        )
        found = self._conn.execute(stmt).scalar()
        return str(found) if found is not None else None

    def due_removals(self, now: datetime, limit: int) -> list[BackendGrant]:
        stmt = (
            sa.select(G)
            .where(G.c.status == "removing", G.c.next_attempt_at <= now)
            .order_by(G.c.next_attempt_at)
            .limit(limit)
        )
        return [_grant(r) for r in self._conn.execute(stmt)]

    def unsettled_of_ended(self, now: datetime, limit: int) -> list[BackendGrant]:
        """Rows still (maybe) in place whose request is no longer a live grant."""
        live = sa.and_(R.c.state.in_(LIVE_STATES), R.c.ends_at > now)
        stmt = (
            sa.select(G)
            .join(R, R.c.id == G.c.request_id, isouter=True)
            .where(G.c.status.in_(("applying", "applied", "failed")))
            .where(sa.or_(R.c.id.is_(None), sa.not_(live)))
            .limit(limit)
        )
        return [_grant(r) for r in self._conn.execute(stmt)]

    def of_live(
        self, now: datetime, limit: int, after: tuple[str, str] | None = None
    ) -> list[BackendGrant]:
        """Rows of grants in force now (active, inside their window), in key order from
        past ``after`` (a ``(request_id, backend)``): page after page, every one is seen."""
        stmt = (
            sa.select(G)
            .join(R, R.c.id == G.c.request_id)
            .where(R.c.state == "active", R.c.starts_at <= now, R.c.ends_at > now)
            .order_by(G.c.request_id, G.c.backend)
            .limit(limit)
        )
        if after is not None:
            stmt = stmt.where(sa.tuple_(G.c.request_id, G.c.backend) > sa.tuple_(*after))
        return [_grant(r) for r in self._conn.execute(stmt)]

    def removed_since(self, since: datetime, limit: int) -> list[BackendGrant]:
        stmt = (
            sa.select(G)
            .where(G.c.status == "removed", G.c.called.is_(True), G.c.removed_at >= since)
            .order_by(G.c.removed_at.desc())
            .limit(limit)
        )
        return [_grant(r) for r in self._conn.execute(stmt)]

    def holders(self, backend: str) -> set[str]:
        """Users whose grant on ``backend`` is not removed (in force, or its removal not
        finished yet): who may hold it because of jitgate."""
        stmt = sa.select(G.c.user_email).where(G.c.backend == backend, G.c.status != "removed")
        return {str(user) for user in self._conn.execute(stmt.distinct()).scalars()}

    def add_revoked_keys(
        self, backend: str, request_id: str, keys: Sequence[Revocation], now: datetime
    ) -> None:
        for key in keys:
            fingerprint = ca_fingerprint(key.ca_public_key)
            exists = self._conn.execute(
                sa.select(K.c.key_id).where(
                    K.c.ca_fingerprint == fingerprint, K.c.key_id == key.key_id
                )
            ).first()
            if exists is None:
                self._conn.execute(
                    K.insert().values(
                        ca_fingerprint=fingerprint,
                        key_id=key.key_id,
                        ca_public_key=key.ca_public_key,
                        backend=backend,
                        request_id=request_id,
                        revoked_at=now,
                    )
                )

    def revoked_keys(self) -> list[RevokedKey]:
        stmt = sa.select(K.c.ca_public_key, K.c.key_id, K.c.revoked_at).order_by(
            K.c.ca_fingerprint, K.c.key_id
        )
        return [
            RevokedKey(r.ca_public_key, r.key_id, r.revoked_at) for r in self._conn.execute(stmt)
        ]


class SqlEnforcementUnitOfWork(SqlUnitOfWork):
    """The core unit of work plus ``backend_grants``, in the same transaction."""

    backend_grants: SqlBackendGrants

    def __enter__(self) -> SqlEnforcementUnitOfWork:
        super().__enter__()
        assert self._conn is not None
        self.backend_grants = SqlBackendGrants(self._conn, row_locks=not self._db.is_sqlite)
        return self


class SqlEnforcementUnitOfWorkFactory:
    def __init__(self, db: Database) -> None:
        self.db = db

    def __call__(self, *, write: bool = True, snapshot: bool = True) -> SqlEnforcementUnitOfWork:
        return SqlEnforcementUnitOfWork(self.db, write=write, snapshot=snapshot)
