"""The audit hash chain (SPEC §8): ``hash = sha256(prev_hash + canonical JSON of the event)``.

The canonical JSON of an event is its fields ``seq, id, at, type, actor, request_id, data``
serialised with sorted keys, no spaces and UTF-8. The first event's ``prev_hash`` is
``GENESIS``. Any edit, insertion, deletion or reordering breaks ``verify_chain``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
CHAINED_FIELDS = ("seq", "id", "at", "type", "actor", "request_id", "data")


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    id: str
    at: str
    type: str
    actor: str
    request_id: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (*CHAINED_FIELDS, "prev_hash", "hash")}


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    events: int
    head: str
    broken_at: int | None = None
    problem: str | None = None


def format_at(at: datetime) -> str:
    """The one textual form of an audit time: UTC, microseconds, ``Z``; sorts as text."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(fields: dict[str, Any]) -> str:
    body = {name: fields[name] for name in CHAINED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(fields)).encode()).hexdigest()


def verify_chain(records: Iterable[dict[str, Any]]) -> ChainCheck:
    """Walk records in order; report the first one whose link or hash does not hold."""
    head, count, expected_seq = GENESIS, 0, None
    for record in records:
        seq = int(record["seq"])
        if expected_seq is not None and seq != expected_seq:
            return ChainCheck(False, count, head, seq, f"sequence gap before {seq}")
        if record["prev_hash"] != head:
            return ChainCheck(False, count, head, seq, "prev_hash does not link to the previous")
        if chain_hash(head, record) != record["hash"]:
            return ChainCheck(False, count, head, seq, "hash does not match the event")
        head, count, expected_seq = record["hash"], count + 1, seq + 1
    return ChainCheck(True, count, head)
