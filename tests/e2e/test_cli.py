"""The CLI as people run it: a real `jitgate` process against a served jitgate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from served import Served

JG = str(Path(sys.executable).with_name("jitgate"))
REPO = Path(__file__).resolve().parents[2]


def run(
    *args: str, env: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    full.update(env or {})
    done = subprocess.run(
        [JG, *args], capture_output=True, text=True, env=full, timeout=60, check=False
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def one_line_error(done: subprocess.CompletedProcess[str], words: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert words in done.stderr, done.stderr


def as_(served: Served, who: str) -> dict[str, str]:
    return {"JITGATE_SERVER": served.url, "JITGATE_TOKEN": served.tokens[who]}


def test_policy_check_reports_file_line_and_key(tmp_path: Path) -> None:
    good = run("policy", "check", str(REPO / "examples" / "policy.yaml"))
    assert good.returncode == 0 and "ok" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nroles:\n  r:\n    grants: [{type: ssh, environment: dev}]\n"
        "    max_duration: banana\n"
    )
    done = run("policy", "check", str(bad))
    assert done.returncode == 1
    assert f"{bad}:5: roles.r.max_duration:" in done.stderr
    assert "Traceback" not in done.stderr


def test_policy_explain(tmp_path: Path) -> None:
    done = run(
        "policy",
        "explain",
        "--policy",
        str(REPO / "examples" / "policy.yaml"),
        "--user",
        "jane.doe@example.com",
        "--role",
        "sre-oncall",
        "--at",
        "2026-03-02T10:00:00Z",
        check=True,
    )
    assert "all of" in done.stdout and "mark.lee@example.com" in done.stdout
    assert "maximum 8h" in done.stdout and "sre-leads" in done.stdout
    refused = run(
        "policy",
        "explain",
        "--policy",
        str(REPO / "examples" / "policy.yaml"),
        "--user",
        "jane.doe@example.com",
        "--role",
        "root-any",
    )
    one_line_error(refused, "may not request")


def test_db_upgrade_and_tokens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    first = run("token", "create", "a@example.com", "--db", url, check=True)  # fresh database
    assert first.stdout.startswith("jg_")
    run("db", "upgrade", "--db", url, check=True)
    person = run("token", "create", "a@example.com", "--db", url, check=True)
    service = run("token", "create", "--service", "gw", "--db", url, check=True)
    for done in (person, service):
        assert done.stdout.count("\n") == 1 and done.stdout.startswith("jg_")
    one_line_error(run("token", "create", "--db", url), "either EMAIL or --service")


def test_people_commands(served: Served) -> None:
    jane, priya = as_(served, "jane.doe@example.com"), as_(served, "priya@example.com")
    rid = run(
        "request", "staging-ssh", "--for", "1h", "--reason", "INC-9", "-q", env=jane, check=True
    ).stdout.strip()
    shown = run("show", rid, env=jane, check=True).stdout
    assert "state     pending" in shown and "priya@example.com" in shown
    one_line_error(run("approve", rid, env=jane), "own request")
    approved = run("approve", rid, "--comment", "ok", env=priya, check=True).stdout
    assert "state     active" in approved
    listed = run("ls", env=jane, check=True).stdout
    assert rid in listed and "active" in listed
    as_json = json.loads(run("ls", "--json", env=jane, check=True).stdout)
    assert as_json["items"][0]["id"] == rid
    one_line_error(
        run("request", "staging-ssh", "--for", "banana", "--reason", "x", env=jane),
        "not a duration",
    )
    one_line_error(run("deny", rid, "--reason", "late", env=priya), "409")
    revoked = run("revoke", rid, "--reason", "done", env=jane, check=True).stdout
    assert "state     revoked" in revoked
    evidence = json.loads(run("evidence", rid, env=jane, check=True).stdout)
    assert evidence["request_id"] == rid
    one_line_error(
        run("ls", env={"JITGATE_SERVER": "http://127.0.0.1:9", "JITGATE_TOKEN": "jg_x"}),
        "cannot reach",
    )
    one_line_error(run("ls", env={"JITGATE_SERVER": served.url, "JITGATE_TOKEN": "jg_x"}), "401")


def test_audit_export_verify_and_tamper(served: Served, tmp_path: Path) -> None:
    jane = as_(served, "jane.doe@example.com")
    for _ in range(3):
        run("request", "dev-ssh", "--reason", "x", "-q", env=jane, check=True)
    url = served.app.settings.database_url
    listed = run("audit", "--limit", "5", env=as_(served, "sec@example.com"), check=True)
    assert "request.created" in listed.stdout
    out = tmp_path / "audit.jsonl"
    run("audit", "export", "--db", url, "--out", str(out), check=True)
    lines = out.read_text().splitlines()
    assert len(lines) == 9  # created, approved, granted x 3
    ok = run("audit", "verify", str(out), check=True)
    assert ok.stdout.startswith("ok: 9 events")
    assert run("audit", "verify", "--db", url, check=True).stdout.startswith("ok: 9 events")
    record = json.loads(lines[4])
    record["data"]["reason"] = "tampered"
    lines[4] = json.dumps(record)
    out.write_text("\n".join(lines) + "\n")
    broken = run("audit", "verify", str(out))
    assert broken.returncode == 1 and "BROKEN at seq 5" in broken.stderr
    del lines[4]
    out.write_text("\n".join(lines) + "\n")
    assert run("audit", "verify", str(out)).returncode == 1


def test_serve_refuses_invalid_policy_and_unmigrated_db(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nroles: [not, a, mapping]\n")
    done = run("serve", "--policy", str(bad), "--db", f"sqlite:///{tmp_path}/x.db")
    assert done.returncode == 1 and f"{bad}:2" in done.stderr
    assert "Traceback" not in done.stderr
    fresh = run(
        "serve",
        "--no-migrate",
        "--policy",
        str(REPO / "examples" / "policy.yaml"),
        "--db",
        f"sqlite:///{tmp_path}/y.db",
    )
    one_line_error(fresh, "db upgrade")


def test_serve_refuses_an_unusable_setting_by_name(tmp_path: Path) -> None:
    policy = str(REPO / "examples" / "policy.yaml")
    db = f"sqlite:///{tmp_path}/z.db"
    for name, value in (("JITGATE_TICK_SECONDS", "banana"), ("JITGATE_RECONCILE_SECONDS", "-1")):
        done = run("serve", "--policy", policy, "--db", db, env={name: value})
        one_line_error(done, name)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    bad_delivery = run(
        "worker", "--policy", policy, "--db", db, env={"JITGATE_NOTIFY_CONCURRENCY": "2.5"}
    )
    one_line_error(bad_delivery, "JITGATE_NOTIFY_CONCURRENCY must be a whole number")
