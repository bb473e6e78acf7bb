"""Tables. Times are stored in UTC and read back timezone-aware; audit ``at`` and ``data`` are
stored as the exact text that was hashed, so verification never depends on a driver's
round-trip of JSON or timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()
ID = sa.String(36)
EMAIL = sa.String(320)

requests = sa.Table(
    "requests",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("requester", EMAIL, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("resources", sa.JSON, nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("rules", sa.JSON, nullable=False),
    sa.Column("approvals", sa.JSON, nullable=False),
    sa.Column("backends", sa.JSON, nullable=False),
    sa.Column("duration_seconds", sa.Integer, nullable=False),
    sa.Column("max_total_seconds", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("urgency", sa.String(16), nullable=False),
    sa.Column("purpose", sa.String(100)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("escalate_at", UTCDateTime, nullable=False),
    sa.Column("start_at", UTCDateTime),
    sa.Column("starts_at", UTCDateTime),
    sa.Column("ends_at", UTCDateTime),
    sa.Column("decided_at", UTCDateTime),
    sa.Column("closed_at", UTCDateTime),
    sa.Column("close_reason", sa.Text),
    sa.Column("escalated", sa.Boolean, nullable=False, default=False),
    sa.Column("expiry_warned", sa.Boolean, nullable=False, default=False),
    sa.Column("extends", ID),
    sa.Column("version", sa.Integer, nullable=False, default=0),
    sa.Index("ix_requests_state_expires", "state", "expires_at"),
    sa.Index("ix_requests_state_escalate", "state", "escalate_at"),
    sa.Index("ix_requests_state_starts", "state", "starts_at"),
    sa.Index("ix_requests_state_ends", "state", "ends_at"),
    sa.Index("ix_requests_requester_state", "requester", "state"),
    sa.Index("ix_requests_created", "created_at", "id"),
    sa.Index("ix_requests_extends", "extends"),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("id", ID, nullable=False, unique=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("actor", EMAIL, nullable=False),
    sa.Column("request_id", ID),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_request", "request_id", "seq"),
    sa.Index("ix_audit_type", "type", "seq"),
    sa.Index("ix_audit_actor", "actor", "seq"),
    sa.Index("ix_audit_at", "at"),
)

audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("request_id", ID, nullable=False),
    sa.Column("user", EMAIL, nullable=False),
    sa.Column("resource", sa.String(200)),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime),
    sa.Column("recording_url", sa.Text),
    sa.Column("end_reason", sa.Text),
    sa.Column("opened_by", sa.String(200)),
    sa.Column("termination_requested_at", UTCDateTime),
    sa.Column("termination_reason", sa.Text),
    sa.Index("ix_sessions_request", "request_id", "started_at"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject", EMAIL, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
    sa.Column("expires_at", UTCDateTime),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("subject", EMAIL, primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("body_hash", sa.String(64), nullable=False),
    sa.Column("request_id", ID, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("request_id", ID),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("recipient", EMAIL),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("delivered_at", UTCDateTime),
    sa.Index("ix_outbox_due", "status", "next_attempt_at"),
)

# -- notifications (revision 0002) -----------------------------------------------------------

outbox.append_column(sa.Column("last_status", sa.Integer))
sa.Index("ix_outbox_stream", outbox.c.request_id, outbox.c.channel, outbox.c.created_at)

link_uses = sa.Table(
    "link_uses",
    metadata,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("request_id", ID, nullable=False),
    sa.Column("subject", EMAIL, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("used_at", UTCDateTime, nullable=False),
    sa.Index("ix_link_uses_request", "request_id"),
)

# -- backends (revision 0003) ----------------------------------------------------------------

backend_grants = sa.Table(
    "backend_grants",
    metadata,
    sa.Column("request_id", ID, primary_key=True),
    sa.Column("backend", sa.String(100), primary_key=True),
    sa.Column("user_email", EMAIL, nullable=False),
    sa.Column("backend_type", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("in_flight", sa.Boolean, nullable=False, default=False),
    sa.Column("called", sa.Boolean, nullable=False, default=False),
    sa.Column("terminate", sa.Boolean, nullable=False, default=False),
    sa.Column("ended_early", sa.Boolean, nullable=False, default=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("covered_by", ID),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("applied_at", UTCDateTime),
    sa.Column("removed_at", UTCDateTime),
    sa.Index("ix_backend_grants_due", "status", "next_attempt_at"),
    sa.Index("ix_backend_grants_user", "user_email", "backend", "status"),
    sa.Index("ix_backend_grants_removed", "status", "removed_at"),
)

ssh_revoked_keys = sa.Table(
    "ssh_revoked_keys",
    metadata,
    sa.Column("ca_fingerprint", sa.String(100), primary_key=True),
    sa.Column("key_id", sa.String(500), primary_key=True),
    sa.Column("ca_public_key", sa.Text, nullable=False),
    sa.Column("backend", sa.String(100), nullable=False),
    sa.Column("request_id", ID, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=False),
)
