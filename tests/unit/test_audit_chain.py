"""The audit hash chain (SPEC §8): any edit, deletion, reordering or relinking is found,
and ``verify_chain`` names the first broken ``seq``."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jitgate.domain.audit import GENESIS, canonical, chain_hash, format_at, verify_chain

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TYPES = [
    "request.created",
    "approval.recorded",
    "request.approved",
    "access.granted",
    "access.used",
    "access.expired",
]


def _chain(n: int = 6) -> list[dict[str, Any]]:
    records, prev = [], GENESIS
    for i in range(n):
        fields = {
            "seq": i + 1,
            "id": f"ev-{i + 1}",
            "at": format_at(T0 + timedelta(seconds=i)),
            "type": TYPES[i % len(TYPES)],
            "actor": "jane.doe@example.com",
            "request_id": "r-1",
            "data": {"n": i, "note": "café", "nested": {"b": 1, "a": [i]}},
        }
        digest = chain_hash(prev, fields)
        records.append({**fields, "prev_hash": prev, "hash": digest})
        prev = digest
    return records


def test_hash_is_sha256_of_prev_hash_and_canonical_json() -> None:
    record = _chain(1)[0]
    body = {k: record[k] for k in ("seq", "id", "at", "type", "actor", "request_id", "data")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical(record) == text
    assert record["hash"] == hashlib.sha256((GENESIS + text).encode()).hexdigest()


def test_canonical_json_ignores_key_order() -> None:
    record = _chain(1)[0]
    shuffled = dict(reversed(list(record.items())))
    shuffled["data"] = dict(reversed(list(record["data"].items())))
    assert canonical(shuffled) == canonical(record)


def test_an_intact_chain_verifies() -> None:
    records = _chain()
    check = verify_chain(records)
    assert check.ok and check.broken_at is None and check.problem is None
    assert check.events == 6
    assert check.head == records[-1]["hash"]


def test_an_empty_chain_verifies_with_the_genesis_head() -> None:
    check = verify_chain([])
    assert check.ok and check.events == 0 and check.head == GENESIS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("data", {"n": 99}),
        ("at", format_at(T0 + timedelta(days=1))),
        ("type", "access.revoked"),
        ("actor", "mallory@example.com"),
        ("request_id", "r-2"),
        ("id", "ev-x"),
    ],
)
def test_an_edited_field_is_reported_at_its_seq(field: str, value: Any) -> None:
    records = _chain()
    records[2][field] = value
    check = verify_chain(records)
    assert not check.ok
    assert check.broken_at == 3
    assert check.events == 2
    assert check.head == records[1]["hash"]


def test_an_edit_deep_inside_data_is_found() -> None:
    records = _chain()
    records[3]["data"]["nested"]["a"].append("x")
    assert verify_chain(records).broken_at == 4


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link() -> None:
    records = _chain()
    records[2]["data"] = {"forged": True}
    records[2]["hash"] = chain_hash(records[2]["prev_hash"], records[2])
    check = verify_chain(records)
    assert check.broken_at == 4
    assert "prev_hash" in (check.problem or "")


def test_a_deleted_event_is_reported() -> None:
    records = _chain()
    del records[2]
    check = verify_chain(records)
    assert not check.ok
    assert check.broken_at == 4
    assert check.events == 2


def test_deleting_the_first_event_is_reported() -> None:
    records = _chain()[1:]
    check = verify_chain(records)
    assert not check.ok and check.broken_at == 2


def test_reordered_events_are_reported() -> None:
    records = _chain()
    records[2], records[3] = records[3], records[2]
    check = verify_chain(records)
    assert not check.ok
    assert check.broken_at == 4
    assert check.events == 2


def test_reordered_and_renumbered_events_are_reported() -> None:
    records = _chain()
    records[2], records[3] = records[3], records[2]
    records[2]["seq"], records[3]["seq"] = 3, 4
    check = verify_chain(records)
    assert not check.ok and check.broken_at == 3


def test_a_changed_prev_hash_is_reported() -> None:
    records = _chain()
    records[4]["prev_hash"] = "f" * 64
    check = verify_chain(records)
    assert not check.ok
    assert check.broken_at == 5
    assert "prev_hash" in (check.problem or "")


def test_a_first_event_not_linked_to_genesis_is_reported() -> None:
    records = _chain()
    records[0]["prev_hash"] = "1" * 64
    assert verify_chain(records).broken_at == 1


def test_verification_does_not_mutate_its_input() -> None:
    records = _chain()
    snapshot = copy.deepcopy(records)
    verify_chain(records)
    assert records == snapshot


def test_format_at_is_utc_with_microseconds_and_z() -> None:
    from zoneinfo import ZoneInfo

    local = datetime(2026, 3, 2, 11, 0, 0, 5, tzinfo=ZoneInfo("Europe/Berlin"))
    assert format_at(local) == "2026-03-02T10:00:00.000005Z"
