"""Tampering ``verify_chain`` must name: an event outside 1…n, a repeated or misplaced seq,
stored ``data`` that is not the canonical JSON that was hashed, and a checkpoint the chain
does not pass through."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jitgate.domain.audit import (
    GENESIS,
    UNREADABLE,
    BadData,
    chain_hash,
    compact,
    format_at,
    readable_data,
    stored_data,
    verify_chain,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _chain(n: int = 6, first: int = 1) -> list[dict[str, Any]]:
    records, prev = [], GENESIS
    for seq in range(first, first + n):
        fields = {
            "seq": seq,
            "id": f"ev-{seq}",
            "at": format_at(T0 + timedelta(seconds=seq)),
            "type": "request.created",
            "actor": "jane.doe@example.com",
            "request_id": "r-1",
            "data": {"reason": "no incident", "n": seq, "note": "café"},
        }
        digest = chain_hash(prev, fields)
        records.append({**fields, "prev_hash": prev, "hash": digest})
        prev = digest
    return records


def _as_stored(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records as the store holds them: ``data`` as its canonical JSON text."""
    return [{**r, "data": compact(r["data"])} for r in records]


# --- 1. the chain starts at seq 1; an event outside it is reported ---------------------------


def test_an_event_at_seq_0_before_the_chain_is_outside_it() -> None:
    records = _chain()
    forged = {**records[0], "seq": 0, "id": "forged"}
    forged["hash"] = chain_hash(GENESIS, forged)
    check = verify_chain([forged, *records])
    assert not check.ok and check.broken_at == 0 and check.events == 0
    assert check.problem == "an event at seq 0 is outside the chain (it starts at seq 1)"


def test_a_negative_seq_inside_an_export_is_outside_the_chain() -> None:
    records = _chain()
    records.insert(3, {**records[2], "seq": -4})
    check = verify_chain(records)
    assert not check.ok and check.broken_at == -4 and check.events == 3
    assert "outside the chain" in (check.problem or "")


def test_a_chain_that_does_not_start_at_seq_1_is_broken() -> None:
    """A whole, well-linked chain numbered from 5 used to verify."""
    check = verify_chain(_chain(3, first=5))
    assert not check.ok and check.broken_at == 5 and check.events == 0
    assert check.problem == "seq 1 is missing: the chain starts at seq 5"


# --- 5. what is wrong with the order, in words ------------------------------------------------


def test_a_duplicated_last_line_appears_twice() -> None:
    records = _chain()
    check = verify_chain([*records, copy.deepcopy(records[-1])])
    assert not check.ok and check.broken_at == 6 and check.events == 6
    assert check.problem == "seq 6 appears twice"


def test_two_swapped_lines_say_which_comes_after_which() -> None:
    records = _chain()
    records[2], records[3] = records[3], records[2]
    check = verify_chain(records)
    assert not check.ok and check.broken_at == 4 and check.events == 2
    assert check.problem == "seq 3 comes after seq 4"


def test_a_line_moved_further_down_says_so() -> None:
    records = _chain()
    records.append(records.pop(1))
    check = verify_chain(records)
    assert check.broken_at == 3 and check.problem == "seq 2 comes after seq 3"


def test_a_deleted_line_is_missing() -> None:
    records = _chain()
    del records[2]
    check = verify_chain(records)
    assert check.broken_at == 4 and check.problem == "seq 3 is missing: seq 4 follows seq 2"


# --- 2. a checkpoint: the chain passes through it, wherever it is -----------------------------


def test_the_checkpoint_is_found_where_it_is() -> None:
    records = _chain()
    check = verify_chain(records, records[2]["hash"])
    assert check.ok and check.events == 6 and check.checkpoint_seq == 3
    assert verify_chain(records, records[-1]["hash"]).checkpoint_seq == 6
    assert verify_chain(records, GENESIS).checkpoint_seq == 0
    assert verify_chain(records).checkpoint_seq is None


def test_a_consistently_rewritten_chain_misses_the_checkpoint() -> None:
    records = _chain()
    checkpoint = records[3]["hash"]
    rewritten, prev = [], GENESIS
    for record in records:  # every hash recomputed: the chain itself is intact
        fields = {**record, "data": {**record["data"], "reason": "FORGED"}}
        fields["prev_hash"], fields["hash"] = prev, chain_hash(prev, fields)
        rewritten.append(fields)
        prev = fields["hash"]
    check = verify_chain(rewritten, checkpoint)
    assert check.ok and check.checkpoint_seq is None


def test_a_chain_cut_before_the_checkpoint_misses_it() -> None:
    records = _chain()
    check = verify_chain(records[:3], records[3]["hash"])
    assert check.ok and check.events == 3 and check.checkpoint_seq is None


# --- 3, 4. stored data must be exactly the canonical JSON that was hashed ---------------------


def test_stored_canonical_data_verifies() -> None:
    records = _as_stored(_chain())
    check = verify_chain(records)
    assert check.ok and check.events == 6


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "its data is not valid JSON"),
        ("[1]", "its data is not a JSON object"),
        ("[" * 100_000, "its data is not valid JSON"),
        (
            '{"n":3,"note":"café","reason":"FORGED","reason":"no incident"}',
            "its data has the key 'reason' twice",
        ),
        (
            '{"n": 3, "note": "café", "reason": "no incident"}',
            "its data is not stored as the canonical JSON that was hashed",
        ),
        (
            '{"n":3,"note":"caf\\u00e9","reason":"no incident"}',
            "its data is not stored as the canonical JSON that was hashed",
        ),
        (
            '{"reason":"no incident","note":"café","n":3}',
            "its data is not stored as the canonical JSON that was hashed",
        ),
    ],
    ids=["not-json", "not-object", "too-deep", "duplicate-key", "spaces", "escape", "key-order"],
)
def test_stored_data_that_is_not_the_hashed_text_breaks_the_chain(text: str, problem: str) -> None:
    records = _as_stored(_chain())
    assert json.loads(records[2]["data"]) == {"reason": "no incident", "n": 3, "note": "café"}
    records[2]["data"] = text
    check = verify_chain(records)
    assert not check.ok and check.broken_at == 3 and check.events == 2
    assert check.problem == problem


def test_stored_data_that_is_not_text_breaks_the_chain() -> None:
    records = _as_stored(_chain())
    records[1]["data"] = b"{}"
    assert verify_chain(records).problem == "its data is not text"


def test_stored_data_parses_canonical_text_and_names_the_problem_otherwise() -> None:
    assert stored_data('{"a":[1,2.5,{"b":null}],"é":"\\n"}') == {
        "a": [1, 2.5, {"b": None}],
        "é": "\n",
    }
    with pytest.raises(BadData) as caught:
        stored_data('{"a":1,"a":2}')
    assert caught.value.problem == "its data has the key 'a' twice" and caught.value.seq is None


def test_readers_get_a_marker_instead_of_an_error() -> None:
    assert readable_data('{"a":1}') == {"a": 1}
    assert readable_data("{") == {UNREADABLE: "{"}
    assert readable_data("[1]") == {UNREADABLE: "[1]"}
    assert readable_data(None) == {UNREADABLE: "None"}
