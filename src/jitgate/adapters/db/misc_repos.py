"""Sessions, API tokens, idempotency keys and the notification outbox. None commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from jitgate.adapters.db import tables as t
from jitgate.service.ports import Notification, Principal, Session, TokenInfo

S = t.sessions


def _session(row: Any) -> Session:
    m = row._mapping
    return Session(
        m["id"],
        m["request_id"],
        m["user"],
        m["resource"],
        m["kind"],
        m["started_at"],
        m["ended_at"],
        m["recording_url"],
        m["end_reason"],
        m["opened_by"],
        m["termination_requested_at"],
        m["termination_reason"],
    )


class SqlSessions:
    def __init__(self, conn: sa.Connection, *, row_locks: bool) -> None:
        self._conn = conn
        self._row_locks = row_locks

    def add(self, session: Session) -> None:
        self._conn.execute(S.insert().values(**_session_row(session)))

    def get(self, session_id: str, *, for_update: bool = False) -> Session | None:
        stmt = sa.select(S).where(S.c.id == session_id)
        if for_update and self._row_locks:
            stmt = stmt.with_for_update()
        row = self._conn.execute(stmt).first()
        return _session(row) if row else None

    def save(self, session: Session) -> None:
        values = _session_row(session)
        del values["id"]
        self._conn.execute(S.update().where(S.c.id == session.id).values(**values))

    def of_request(self, request_id: str, *, open_only: bool = False) -> list[Session]:
        stmt = sa.select(S).where(S.c.request_id == request_id)
        if open_only:
            stmt = stmt.where(S.c.ended_at.is_(None))
        return [_session(r) for r in self._conn.execute(stmt.order_by(S.c.started_at)).all()]

    def open_by_request(
        self, request_ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, list[Session]]:
        """The sessions of ``request_ids`` not ended. ``for_update`` locks them (on
        PostgreSQL, in id order, so two passes never deadlock): a session whose end commits
        meanwhile is waited for and left out, rather than read as open."""
        found: dict[str, list[Session]] = {}
        for start in range(0, len(request_ids), 500):
            chunk = list(request_ids[start : start + 500])
            stmt = sa.select(S).where(S.c.request_id.in_(chunk), S.c.ended_at.is_(None))
            if for_update and self._row_locks:
                stmt = stmt.order_by(S.c.id).with_for_update()
            for row in self._conn.execute(stmt).all():
                session = _session(row)
                found.setdefault(session.request_id, []).append(session)
        return found


def _session_row(s: Session) -> dict[str, Any]:
    return {
        "id": s.id,
        "request_id": s.request_id,
        "user": s.user,
        "resource": s.resource,
        "kind": s.kind,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "recording_url": s.recording_url,
        "end_reason": s.end_reason,
        "opened_by": s.opened_by,
        "termination_requested_at": s.termination_requested_at,
        "termination_reason": s.termination_reason,
    }


class SqlTokens:
    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def add(
        self, token_hash: str, principal: Principal, now: datetime, expires_at: datetime | None
    ) -> None:
        self._conn.execute(
            t.api_tokens.insert().values(
                token_hash=token_hash,
                kind=principal.kind,
                subject=principal.subject,
                created_at=now,
                expires_at=expires_at,
            )
        )

    def find(self, token_hash: str, now: datetime) -> TokenInfo | None:
        T = t.api_tokens
        row = self._conn.execute(
            sa.select(T).where(T.c.token_hash == token_hash, *_working(now))
        ).first()
        return _token_info(row) if row else None

    def infos(
        self,
        *,
        hash_prefix: str | None = None,
        principal: Principal | None = None,
        working_at: datetime | None = None,
    ) -> list[TokenInfo]:
        T = t.api_tokens
        query = sa.select(T).order_by(T.c.created_at, T.c.token_hash)
        if hash_prefix is not None:
            query = query.where(T.c.token_hash.startswith(hash_prefix, autoescape=True))
        if principal is not None:
            query = query.where(T.c.kind == principal.kind, T.c.subject == principal.subject)
        if working_at is not None:
            query = query.where(*_working(working_at))
        return [_token_info(r) for r in self._conn.execute(query).all()]

    def revoke(self, token_hashes: Sequence[str], now: datetime) -> None:
        T = t.api_tokens
        self._conn.execute(
            T.update()
            .where(T.c.token_hash.in_(list(token_hashes)), T.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    def revoked_count(self) -> int:
        T = t.api_tokens
        query = sa.select(sa.func.count()).select_from(T).where(T.c.revoked_at.is_not(None))
        return int(self._conn.execute(query).scalar_one())


def _working(now: datetime) -> tuple[sa.ColumnElement[bool], ...]:
    T = t.api_tokens
    return T.c.revoked_at.is_(None), sa.or_(T.c.expires_at.is_(None), T.c.expires_at > now)


def _token_info(row: sa.Row[Any]) -> TokenInfo:
    return TokenInfo(
        row.token_hash,
        Principal(row.kind, row.subject),
        row.created_at,
        row.revoked_at,
        row.expires_at,
    )


class SqlIdempotencyKeys:
    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def get(self, subject: str, key: str) -> tuple[str, str] | None:
        K = t.idempotency_keys
        row = self._conn.execute(
            sa.select(K.c.body_hash, K.c.request_id).where(K.c.subject == subject, K.c.key == key)
        ).first()
        return (row.body_hash, row.request_id) if row else None

    def claim(
        self, subject: str, key: str, body_hash: str, request_id: str, now: datetime
    ) -> tuple[str, str] | None:
        """Insert the key unless it exists; on PostgreSQL a racing insert waits for the
        first one's transaction, then finds its row."""
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = postgresql if self._conn.dialect.name == "postgresql" else sqlite
        stmt = (
            dialect.insert(t.idempotency_keys)
            .values(
                subject=subject, key=key, body_hash=body_hash, request_id=request_id, created_at=now
            )
            .on_conflict_do_nothing(index_elements=["subject", "key"])
            .returning(t.idempotency_keys.c.request_id)
        )
        if self._conn.execute(stmt).first() is not None:
            return None
        return self.get(subject, key)


class SqlOutbox:
    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def add(self, notifications: Sequence[Notification], now: datetime) -> None:
        """Rows in the order given, a microsecond apart: delivery keeps the order of one
        request's messages on one channel to one recipient by ``created_at``, and the
        events of one change (``request.created``, then ``request.urgent``) share ``now``."""
        import uuid

        rows = [
            {
                "id": str(uuid.uuid4()),
                "created_at": now + timedelta(microseconds=index),
                "event": n.event,
                "request_id": n.request_id,
                "channel": n.channel,
                "recipient": n.recipient,
                "payload": n.payload,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
            }
            for index, n in enumerate(notifications)
        ]
        if rows:
            self._conn.execute(t.outbox.insert(), rows)
