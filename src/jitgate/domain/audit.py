"""The audit hash chain (SPEC §8): ``hash = sha256(prev_hash + canonical JSON of the event)``.

The canonical JSON of an event is its fields ``seq, id, at, type, actor, request_id, data``
serialised with sorted keys, no spaces and UTF-8. The first event's ``prev_hash`` is
``GENESIS``. Invariants ``verify_chain`` holds a chain to:

- its seqs are exactly 1, 2, 3, … in order: an event outside 1…n, a missing, repeated or
  misplaced seq breaks it, and the problem says which;
- every ``prev_hash`` is the hash before it, and every ``hash`` is that of its event;
- stored ``data`` is exactly the canonical JSON of an object (``stored_data``), so the
  text a reader sees is the text that was hashed: a duplicate key, other spacing or
  escapes break the chain even where the parsed value hashes the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
CHAINED_FIELDS = ("seq", "id", "at", "type", "actor", "request_id", "data")
#: the one key of the ``data`` a reader shows for stored text that is not a JSON object
UNREADABLE = "$unreadable"


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
    #: with a checkpoint: the seq of the event whose hash it is (0 for GENESIS), else None
    checkpoint_seq: int | None = None


class BadData(ValueError):
    """Stored ``data`` that is not the canonical JSON of an object; ``seq`` once known."""

    def __init__(self, problem: str, seq: int | None = None) -> None:
        super().__init__(problem)
        self.problem, self.seq = problem, seq


class DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key!r} appears twice")
        self.key = key


def format_at(at: datetime) -> str:
    """The one textual form of an audit time: UTC, microseconds, ``Z``; sorts as text."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def compact(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 (not ``\\u`` escapes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(fields: dict[str, Any]) -> str:
    return compact({name: fields[name] for name in CHAINED_FIELDS})


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(fields)).encode()).hexdigest()


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(key)
        found[key] = value
    return found


def strict_loads(text: str | bytes) -> Any:
    """``json.loads`` that refuses an object with a key twice (``DuplicateKey``), where the
    plain one keeps the last value and so shows something other than what was written."""
    return json.loads(text, object_pairs_hook=_unique)


def stored_data(text: object) -> dict[str, Any]:
    """The ``data`` object stored as ``text``, which must be exactly its canonical JSON: the
    store writes nothing else (``compact``) into a plain text column on SQLite and
    PostgreSQL alike. Raises ``BadData`` saying what is wrong."""
    if not isinstance(text, str):
        raise BadData("its data is not text")
    try:
        value = json.loads(text)
        same = isinstance(value, dict) and compact(value) == text
    except (ValueError, RecursionError):
        raise BadData("its data is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadData("its data is not a JSON object")
    if not same:  # the slower, strict parse only on this rare path
        try:
            strict_loads(text)
        except DuplicateKey as exc:
            raise BadData(f"its data has the key {exc.key!r} twice") from None
        raise BadData("its data is not stored as the canonical JSON that was hashed")
    return value


def readable_data(text: object) -> dict[str, Any]:
    """``data`` for readers, who must never fail on a damaged row: the parsed object, or
    ``{UNREADABLE: the stored text}`` when it is not a JSON object (verify reports it)."""
    try:
        value = json.loads(text) if isinstance(text, str | bytes) else None
    except (ValueError, RecursionError):
        value = None
    return value if isinstance(value, dict) else {UNREADABLE: str(text)}


def verify_chain(records: Iterable[dict[str, Any]], checkpoint: str | None = None) -> ChainCheck:
    """Walk records in order from seq 1; report the first one that breaks the chain.
    A record's ``data`` is the object (an export) or the text as stored (``stored_data``).
    ``checkpoint``: a hash the chain is to pass through; its seq is ``checkpoint_seq``."""
    head, count = GENESIS, 0
    found = 0 if checkpoint == GENESIS else None
    rest = iter(records)
    for record in rest:
        seq = int(record["seq"])
        if seq != count + 1:
            return ChainCheck(False, count, head, seq, _misplaced(seq, count + 1, rest))
        problem = _link_problem(head, record)
        if problem:
            return ChainCheck(False, count, head, seq, problem)
        head, count = record["hash"], seq
        if head == checkpoint:
            found = seq
    return ChainCheck(True, count, head, checkpoint_seq=found)


def _misplaced(seq: int, expected: int, rest: Iterator[dict[str, Any]]) -> str:
    """What is wrong where ``seq`` stands and ``expected`` should (the rest is read on to
    tell a misplaced event from a missing one)."""
    if seq < 1:
        return f"an event at seq {seq} is outside the chain (it starts at seq 1)"
    if seq < expected:
        return f"seq {seq} appears twice"
    if any(later.get("seq") == expected for later in rest):
        return f"seq {expected} comes after seq {seq}"
    if expected == 1:
        return f"seq 1 is missing: the chain starts at seq {seq}"
    return f"seq {expected} is missing: seq {seq} follows seq {expected - 1}"


def _link_problem(head: str, record: dict[str, Any]) -> str | None:
    if record["prev_hash"] != head:
        return "prev_hash does not link to the previous"
    fields = record
    if not isinstance(record["data"], dict):
        try:
            fields = {**record, "data": stored_data(record["data"])}
        except BadData as exc:
            return exc.problem
    if chain_hash(head, fields) != record["hash"]:
        return "hash does not match the event"
    return None
