"""Tampering as an operator meets it, on a served jitgate over SQLite and PostgreSQL:
`jitgate audit verify` / `export` and GET /v1/audit/verify report it in words and exit 1,
never a traceback or a 500; readers never show a row outside the chain; a checkpoint kept
from an export is passed through by the growing chain and missed by a rewritten one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import sqlalchemy as sa

from jitgate.adapters.db import tables as t
from jitgate.domain.audit import GENESIS, UNREADABLE, chain_hash, compact
from served import Served

JG = str(Path(sys.executable).with_name("jitgate"))
JANE, SEC = "jane.doe@example.com", "sec@example.com"
A = t.audit_events
Done = subprocess.CompletedProcess[str]


def run(*args: str, env: dict[str, str] | None = None) -> Done:
    full = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    full.update(env or {})
    return subprocess.run(
        [JG, *args], capture_output=True, text=True, env=full, timeout=60, check=False
    )


def broken(done: Done, words: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert words in done.stderr, done.stderr


def create(served: Served) -> str:
    made = served.client(JANE).post("/v1/requests", json={"reason": "x", "roles": ["dev-ssh"]})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def db(served: Served) -> str:
    return served.app.settings.database_url


def reads(served: Served, rid: str) -> dict[str, httpx.Response]:
    """Every reader of events: the log, a request's events and its evidence."""
    sec, jane = served.client(SEC), served.client(JANE)
    return {
        "audit": sec.get("/v1/audit", params={"limit": 1000}),
        "events": jane.get(f"/v1/requests/{rid}/events"),
        "evidence": jane.get(f"/v1/requests/{rid}/evidence"),
    }


def seqs(answers: dict[str, httpx.Response]) -> dict[str, list[int]]:
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.text)
    return {
        "audit": [e["seq"] for e in answers["audit"].json()["items"]],
        "events": [e["seq"] for e in answers["events"].json()["items"]],
        "evidence": [e["seq"] for e in answers["evidence"].json()["audit"]],
    }


# --- 1. an event below seq 1 ---------------------------------------------------------------


def test_an_event_at_seq_0_is_reported_and_shown_by_no_reader(
    served: Served, tmp_path: Path
) -> None:
    rid = create(served)
    before = seqs(reads(served, rid))
    fields = {
        "seq": 0,
        "id": "forged",
        "at": "2026-03-02T09:59:00.000000Z",
        "type": "approval.recorded",
        "actor": "mark.lee@example.com",
        "request_id": rid,
        "data": {"decision": "approve"},
    }
    with served.app.db.engine.begin() as conn:
        conn.execute(
            A.insert().values(
                **{**fields, "data": compact(fields["data"])},
                prev_hash=GENESIS,
                hash=chain_hash(GENESIS, fields),
            )
        )
    broken(
        run("audit", "verify", "--db", db(served)),
        "BROKEN at seq 0: an event at seq 0 is outside the chain",
    )
    check = served.client(SEC).get("/v1/audit/verify").json()
    assert check["ok"] is False and check["broken_at"] == 0
    assert seqs(reads(served, rid)) == before
    listed = run("audit", "--request-id", rid, "--json", env=env(served, SEC))
    assert listed.returncode == 0 and 0 not in [
        e["seq"] for e in json.loads(listed.stdout)["items"]
    ]
    out = tmp_path / "audit.jsonl"
    assert run("audit", "export", "--db", db(served), "--out", str(out)).returncode == 0
    assert json.loads(out.read_text().splitlines()[0])["id"] == "forged"  # not left out
    broken(run("audit", "verify", str(out)), "BROKEN at seq 0: an event at seq 0 is outside")


def env(served: Served, who: str) -> dict[str, str]:
    return {"JITGATE_SERVER": served.url, "JITGATE_TOKEN": served.tokens[who]}


# --- 3, 4. stored data that is not the text that was hashed ---------------------------------


def test_unparseable_data_is_reported_not_a_traceback_or_a_500(
    served: Served, tmp_path: Path
) -> None:
    rid = create(served)
    seq = seqs(reads(served, rid))["events"][0]
    with served.app.db.engine.begin() as conn:
        conn.execute(A.update().where(A.c.seq == seq).values(data="{"))
    broken(
        run("audit", "verify", "--db", db(served)),
        f"BROKEN at seq {seq}: its data is not valid JSON",
    )
    check = served.client(SEC).get("/v1/audit/verify")
    assert check.status_code == 200
    assert check.json()["ok"] is False and check.json()["broken_at"] == seq
    assert check.json()["problem"] == "its data is not valid JSON"
    answers = reads(served, rid)
    assert seq in seqs(answers)["events"]
    assert answers["events"].json()["items"][0]["data"] == {UNREADABLE: "{"}
    folder = tmp_path / "exports"
    folder.mkdir()
    out = folder / "audit.jsonl"
    broken(
        run("audit", "export", "--db", db(served), "--out", str(out)),
        f"cannot export: the event at seq {seq} is damaged (its data is not valid JSON)",
    )
    assert list(folder.iterdir()) == []  # no partial file, no temporary one either
    out.write_text("an earlier export\n")
    assert run("audit", "export", "--db", db(served), "--out", str(out)).returncode == 1
    assert out.read_text() == "an earlier export\n"


def test_a_duplicate_key_in_stored_data_is_reported(served: Served) -> None:
    rid = create(served)
    seq = seqs(reads(served, rid))["events"][0]
    with served.app.db.engine.begin() as conn:
        stored = conn.execute(sa.select(A.c.data).where(A.c.seq == seq)).scalar_one()
        forged = stored.replace('"reason":"x"', '"reason":"FORGED","reason":"x"')
        assert forged != stored
        conn.execute(A.update().where(A.c.seq == seq).values(data=forged))
    broken(
        run("audit", "verify", "--db", db(served)),
        f"BROKEN at seq {seq}: its data has the key 'reason' twice",
    )


def test_an_export_line_with_a_duplicate_key_or_an_extra_field_is_refused(
    served: Served, tmp_path: Path
) -> None:
    create(served)
    out = tmp_path / "audit.jsonl"
    assert run("audit", "export", "--db", db(served), "--out", str(out)).returncode == 0
    lines = out.read_text().splitlines()
    record = json.loads(lines[1])
    doubled = json.dumps(record)[:-1] + ', "actor": "mallory@example.com"}'
    path = tmp_path / "doubled.jsonl"
    path.write_text("\n".join([lines[0], doubled, *lines[2:]]) + "\n")
    broken(
        run("audit", "verify", str(path)),
        f"{path} is not a valid audit export: line 2: the key 'actor' appears twice",
    )
    path.write_text("\n".join([lines[0], json.dumps({**record, "note": "x"}), *lines[2:]]))
    broken(
        run("audit", "verify", str(path)),
        f"{path} is not a valid audit export: line 2: fields no event has: note",
    )


# --- 5. what is wrong, in words --------------------------------------------------------------


def test_repeated_swapped_and_emptied_chains_say_what_is_wrong(
    served: Served, tmp_path: Path
) -> None:
    create(served)
    out = tmp_path / "audit.jsonl"
    assert run("audit", "export", "--db", db(served), "--out", str(out)).returncode == 0
    lines = out.read_text().splitlines()
    n = len(lines)
    out.write_text("\n".join([*lines, lines[-1]]) + "\n")
    broken(run("audit", "verify", str(out)), f"BROKEN at seq {n}: seq {n} appears twice")
    swapped = [lines[0], lines[2], lines[1], *lines[3:]]
    out.write_text("\n".join(swapped) + "\n")
    broken(run("audit", "verify", str(out)), "BROKEN at seq 3: seq 2 comes after seq 3")
    with served.app.db.engine.begin() as conn:
        conn.execute(A.delete())
    broken(
        run("audit", "verify", "--db", db(served)),
        f"the chain is empty but the head says {n} events",
    )


# --- 2. the checkpoint workflow --------------------------------------------------------------


def test_a_checkpoint_from_an_export_is_passed_through_and_a_rewrite_misses_it(
    served: Served, tmp_path: Path
) -> None:
    create(served)
    first = tmp_path / "first.jsonl"
    exported = run("audit", "export", "--db", db(served), "--out", str(first))
    assert exported.returncode == 0, exported.stderr
    found = re.search(r"ending at seq (\d+) with hash ([0-9a-f]{64})", exported.stderr)
    assert found, exported.stderr
    at, head = int(found[1]), found[2]
    last = json.loads(first.read_text().splitlines()[-1])
    assert (last["seq"], last["hash"]) == (at, head)
    create(served)  # the chain grows after the export, as on any running server
    grown = run("audit", "verify", "--db", db(served), "--head", head)
    assert grown.returncode == 0, grown.stderr
    total = at + 3  # created, approved, granted
    assert grown.stdout.startswith(
        f"ok: {total} events; passes through the checkpoint at seq {at} (3 events follow it)"
    )
    same = run("audit", "verify", str(first), "--head", head, "--at-end")
    assert same.returncode == 0 and f"checkpoint at seq {at} (it ends there)" in same.stdout
    broken(
        run("audit", "verify", "--db", db(served), "--head", head, "--at-end"),
        f"passes through the checkpoint at seq {at} but does not end there: 3 events follow",
    )
    _rewrite(served)
    assert run("audit", "verify", "--db", db(served)).returncode == 0  # intact, as a chain
    broken(
        run("audit", "verify", "--db", db(served), "--head", head),
        f"no event in it has the hash {head}: it was rewritten, or cut before that checkpoint",
    )
    usage = run("audit", "verify", str(first), "--head", "nothex")  # a usage error, exit 2
    assert usage.returncode == 2 and "64 hexadecimal digits" in usage.stderr


def _rewrite(served: Served) -> None:
    """Forge every reason and recompute every hash and the head: a consistent rewrite."""
    prev = GENESIS
    with served.app.db.engine.begin() as conn:
        for row in conn.execute(sa.select(A).order_by(A.c.seq)).all():
            fields = dict(row._mapping)
            fields["data"] = {**json.loads(fields["data"]), "forged": True}
            digest = chain_hash(prev, fields)
            conn.execute(
                A.update()
                .where(A.c.seq == row.seq)
                .values(data=compact(fields["data"]), prev_hash=prev, hash=digest)
            )
            prev = digest
        conn.execute(t.audit_head.update().values(hash=prev))
