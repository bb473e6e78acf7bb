"""The CLI's errors as people meet them: one line on stderr and a non-zero exit, never a
traceback, when a file given on the command line cannot be read or written, or an audit
export is damaged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from served import Served

JG = str(Path(sys.executable).with_name("jitgate"))


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Done:
    full = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    full.update(env or {})
    return subprocess.run(
        [JG, *args], capture_output=True, text=True, env=full, timeout=60, input=stdin, check=False
    )


Done = subprocess.CompletedProcess[str]


def one_line_error(done: Done, words: str) -> None:
    """Exit 1 and a single line on stderr that says ``words``; nothing else."""
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert words in done.stderr, done.stderr


def as_(served: Served, who: str) -> dict[str, str]:
    return {"JITGATE_SERVER": served.url, "JITGATE_TOKEN": served.tokens[who]}


def request_id(served: Served) -> str:
    jane = as_(served, "jane.doe@example.com")
    done = run("request", "staging-ssh", "--for", "1h", "--reason", "INC-9", "-q", env=jane)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# --- files written: evidence --out, audit export --out, ssh krl --out ------------------------


def test_evidence_out_into_a_missing_folder_under_a_file_or_a_folder(
    served: Served, tmp_path: Path
) -> None:
    rid, jane = request_id(served), as_(served, "jane.doe@example.com")
    missing = "/nonexistent/dir/x.json"
    one_line_error(
        run("evidence", rid, "--out", missing, env=jane),
        f"cannot write {missing}: No such file or directory",
    )
    one_line_error(
        run("evidence", rid, "--out", "/etc/hostname/x.json", env=jane),
        "cannot write /etc/hostname/x.json: Not a directory",
    )
    folder = run("evidence", rid, "--out", str(tmp_path), env=jane)  # click refuses it
    assert folder.returncode != 0 and "Traceback" not in folder.stderr
    assert "is a directory" in folder.stderr


def test_audit_export_out_into_a_missing_folder(served: Served) -> None:
    url = served.app.settings.database_url
    missing = "/nonexistent/dir/audit.jsonl"
    one_line_error(
        run("audit", "export", "--db", url, "--out", missing),
        f"cannot write {missing}: No such file or directory",
    )


def test_ssh_krl_out_into_a_missing_folder_or_under_a_file(served: Served) -> None:
    gateway = as_(served, "gateway")
    missing = "/nonexistent/dir/revoked.krl"
    one_line_error(
        run("ssh", "krl", "--out", missing, env=gateway),
        f"cannot write {missing}: No such file or directory",
    )
    one_line_error(
        run("ssh", "krl", "--out", "/etc/hostname/revoked.krl", env=gateway),
        "cannot write /etc/hostname/revoked.krl: Not a directory",
    )


# --- audit verify FILE: a damaged export is reported by line, never a traceback ---------------


def chain(count: int = 3) -> list[str]:
    """A valid export of ``count`` events, as ``audit export`` writes it."""
    from jitgate.domain.audit import GENESIS, chain_hash

    lines, head = [], GENESIS
    for seq in range(1, count + 1):
        fields = {
            "seq": seq,
            "id": f"ev{seq}",
            "at": f"2026-03-02T10:00:0{seq}.000000Z",
            "type": "request.created",
            "actor": "jane.doe@example.com",
            "request_id": "r1",
            "data": {"reason": "INC-9"},
        }
        prev, head = head, chain_hash(head, fields)
        lines.append(json.dumps({**fields, "prev_hash": prev, "hash": head}, sort_keys=True))
    return lines


def written(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "audit.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (chain()[1][:45], "line 2: not JSON (Unterminated string starting at, column 41)"),
        ("this is not json", "line 2: not JSON (Expecting value, column 1)"),
        ("[]", "line 2: not an audit event (a JSON list)"),
        ("3", "line 2: not an audit event (a JSON number)"),
        ('"seq"', "line 2: not an audit event (a JSON string)"),
        ("null", "line 2: not an audit event (null)"),
        ("{}", "line 2: missing seq, id, at, type, actor, request_id, data, prev_hash, hash"),
    ],
    ids=["truncated", "text", "list", "number", "string", "null", "empty-object"],
)
def test_audit_verify_a_damaged_line(tmp_path: Path, line: str, words: str) -> None:
    lines = chain()
    lines[1] = line
    path = written(tmp_path, lines)
    one_line_error(run("audit", "verify", path), f"{path} is not a valid audit export: {words}")


def test_audit_verify_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = chain()
    path.write_text("\n".join(lines)[:-30])  # cut in the middle of the last event
    one_line_error(
        run("audit", "verify", str(path)), f"{path} is not a valid audit export: line 3: not JSON"
    )


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"hash": None, "data": None}, "line 3: missing data, hash"),
        ({"seq": "three"}, "line 3: seq is not a whole number"),
        ({"seq": True}, "line 3: seq is not a whole number"),
        ({"actor": 7, "hash": ["x"]}, "line 3: not a string: actor, hash"),
        ({"request_id": 1}, "line 3: request_id is not a string or null"),
        ({"data": "reason"}, "line 3: data is not an object"),
    ],
    ids=["missing", "seq-text", "seq-bool", "strings", "request-id", "data"],
)
def test_audit_verify_an_event_missing_fields_or_of_the_wrong_kind(
    tmp_path: Path, change: dict[str, object], words: str
) -> None:
    lines = chain()
    record = json.loads(lines[2])
    for key, value in change.items():
        if value is None:
            del record[key]
        else:
            record[key] = value
    lines[2] = json.dumps(record)
    path = written(tmp_path, lines)
    one_line_error(run("audit", "verify", path), f"{path} is not a valid audit export: {words}")


def test_audit_verify_a_file_that_is_not_text(tmp_path: Path) -> None:
    bad = tmp_path / "image.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    one_line_error(
        run("audit", "verify", str(bad)), f"{bad} is not a valid audit export: line 1: not UTF-8"
    )


def test_audit_verify_reads_the_export_from_stdin(tmp_path: Path) -> None:
    lines = chain()
    ok = run("audit", "verify", "-", stdin="\n".join(lines) + "\n")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: 3 events")
    one_line_error(
        run("audit", "verify", "-", stdin=lines[0] + "\n{"),
        "<stdin> is not a valid audit export: line 2: not JSON",
    )
    tampered = json.loads(lines[1])
    tampered["data"]["reason"] = "tampered"
    broken = run("audit", "verify", "-", stdin="\n".join([lines[0], json.dumps(tampered)]))
    assert broken.returncode == 1 and "BROKEN at seq 2" in broken.stderr


def test_audit_verify_an_empty_export_says_so(tmp_path: Path) -> None:
    for text in ("", "\n\n"):
        empty = tmp_path / "empty.jsonl"
        empty.write_text(text)
        done = run("audit", "verify", str(empty))
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("ok: 0 events")
        assert "holds no events" in done.stdout
    missing = run("audit", "verify", str(tmp_path / "missing.jsonl"))  # click refuses it
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "does not exist" in missing.stderr


def test_audit_verify_with_the_head_finds_events_cut_off_the_end(tmp_path: Path) -> None:
    lines = chain(3)
    head = json.loads(lines[-1])["hash"]
    whole = run("audit", "verify", written(tmp_path, lines), "--head", head.upper())
    assert whole.returncode == 0, whole.stderr
    cut = written(tmp_path, lines[:2])
    assert run("audit", "verify", cut).returncode == 0  # a shorter chain is still a chain
    one_line_error(
        run("audit", "verify", cut, "--head", head),
        f"no event in it has the hash {head}: it was rewritten, or cut before that checkpoint",
    )


# --- ls --to-approve: only what the caller can still decide -----------------------------------


def test_ls_to_approve_lists_only_pending_requests(served: Served) -> None:
    priya = as_(served, "priya@example.com")
    decided, waiting = request_id(served), request_id(served)
    assert run("approve", decided, env=priya).returncode == 0
    listed = run("ls", "--to-approve", env=priya)
    assert listed.returncode == 0, listed.stderr
    assert waiting in listed.stdout and decided not in listed.stdout
    page = json.loads(run("ls", "--to-approve", "--json", env=priya).stdout)
    assert [r["id"] for r in page["items"]] == [waiting]
    one_line_error(
        run("ls", "--to-approve", "--state", "active", env=priya), "--to-approve lists pending"
    )
