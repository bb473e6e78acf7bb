"""The CLI as people run it: a real `jitgate` process against a served jitgate."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jitgate.entrypoints.api.auth import CACHE_SECONDS
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
    policy = ["--policy", str(REPO / "examples" / "policy.yaml")]
    jane = ["--user", "jane.doe@example.com"]
    elsewhere = run(
        "policy", "explain", *policy, *jane, "--role", "dev-ssh", "--resource", "prod-db-01"
    )
    one_line_error(elsewhere, "none of the requested roles grants access to resource 'prod-db-01'")


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


def test_tokens_are_listed_and_revoked_and_then_refused(served: Served) -> None:
    """`token ls` / `token revoke` on the served server's own database: a revoked token is
    refused by the running server, at once if it was not in the server's token cache, and
    within the cache's watch otherwise (well before an entry's own 10 s would end)."""
    db = ["--db", served.app.settings.database_url]
    fresh = run("token", "create", "lee@example.com", *db, check=True).stdout.strip()
    used = run("token", "create", "--service", "gw2", *db, check=True).stdout.strip()
    body = {"user": "jane.doe@example.com", "resource": "prod-bastion"}
    gateway = served.client(headers={"Authorization": f"Bearer {used}"})
    assert gateway.post("/v1/authorize", json=body).status_code == 200

    listed = json.loads(run("token", "ls", "--json", *db, check=True).stdout)
    ids = {(t["kind"], t["subject"]): t["id"] for t in listed}
    assert ids[("service", "gw2")] == hashlib.sha256(used.encode()).hexdigest()[:12]
    assert len(listed) == len(served.tokens) + 2
    table = run("token", "ls", *db, check=True).stdout
    header = ["ID", "KIND", "SUBJECT", "CREATED", "EXPIRES", "REVOKED"]
    assert table.splitlines()[0].split() == header
    assert fresh not in table and used not in table

    done = run("token", "revoke", ids[("user", "lee@example.com")][:8], *db, check=True)
    assert done.stdout == f"revoked {ids[('user', 'lee@example.com')]} (user lee@example.com)\n"
    lee = served.client(headers={"Authorization": f"Bearer {fresh}"})
    refused = lee.get("/v1/requests")
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]

    assert gateway.post("/v1/authorize", json=body).status_code == 200
    assert used in served.server.config.app.state.token_cache
    run("token", "revoke", "--service", "gw2", *db, check=True)
    revoked_at = time.monotonic()
    while gateway.post("/v1/authorize", json=body).status_code == 200:
        assert time.monotonic() - revoked_at < CACHE_SECONDS / 2, "revoked token still works"
        time.sleep(0.02)
    assert gateway.post("/v1/authorize", json=body).status_code == 401
    assert served.client("gateway").post("/v1/authorize", json=body).status_code == 200

    after = json.loads(run("token", "ls", "--all", "--json", *db, check=True).stdout)
    assert sum(t["revoked_at"] is not None for t in after) == 2
    assert len(json.loads(run("token", "ls", "--json", *db, check=True).stdout)) == len(
        served.tokens
    )
    again = run("token", "revoke", used, *db, check=True).stdout
    assert "was already revoked at" in again
    one_line_error(run("token", "revoke", "zz", *db), "is not a token id")
    one_line_error(run("token", "revoke", "--user", "x@example.com", *db), "no token belongs")
    one_line_error(run("token", "revoke", *db), "give one of ID, --user EMAIL or --service NAME")
    security = served.client("sec@example.com")
    revoked = security.get("/v1/audit", params={"type": "token.revoked"}).json()["items"]
    assert sorted(e["data"]["token"] for e in revoked) == sorted(
        [ids[("user", "lee@example.com")], ids[("service", "gw2")]]
    )


def test_a_token_with_a_lifetime_is_refused_once_it_ends(served: Served) -> None:
    """`token create --expires`: the running server refuses the token from its
    ``expires_at`` on (by the server's clock), even while it sits in the token cache."""
    db = ["--db", served.app.settings.database_url]
    before = datetime.now(UTC)
    token = run("token", "create", "--service", "gw3", "--expires", "1h", *db, check=True)
    gateway = served.client(headers={"Authorization": f"Bearer {token.stdout.strip()}"})
    body = {"user": "jane.doe@example.com", "resource": "prod-bastion"}
    (info,) = [
        t for t in json.loads(run("token", "ls", "--json", *db).stdout) if t["subject"] == "gw3"
    ]
    expires_at = datetime.fromisoformat(info["expires_at"])
    assert before + timedelta(hours=1) <= expires_at <= datetime.now(UTC) + timedelta(hours=1)
    assert "EXPIRES" in run("token", "ls", *db, check=True).stdout

    served.clock.set(expires_at - timedelta(seconds=1))
    assert gateway.post("/v1/authorize", json=body).status_code == 200
    assert gateway.post("/v1/authorize", json=body).status_code == 200  # from the cache
    served.clock.set(expires_at)
    refused = gateway.post("/v1/authorize", json=body)
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]

    for bad, words in [
        ("banana", "is not a duration"),
        ("-5m", "is not a duration"),
        ("0s", "longer than zero"),
    ]:
        one_line_error(run("token", "create", "x@example.com", "--expires", bad, *db), words)


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


def test_extend_says_when_the_roles_maximum_shortened_it(served: Served) -> None:
    jane = as_(served, "jane.doe@example.com")
    rid = run(
        "request", "db-prod", "--for", "1h", "--reason", "INC-9", "-q", env=jane, check=True
    ).stdout.strip()
    for dba in ("dana@example.com", "dave@example.com"):  # whoever is on call for dba now
        run("approve", rid, env=as_(served, dba))
    assert "state     active" in run("show", rid, env=jane, check=True).stdout
    extended = run("extend", rid, "--for", "10h", "--reason", "INC-9 longer", env=jane, check=True)
    assert "duration  3h" in extended.stdout  # db-prod: 4h in total, 1h already granted
    assert "note: asked 10h, extended by 3h: the role's maximum in total" in extended.stderr
    exact = run("extend", rid, "--for", "30m", "--reason", "INC-9", env=jane, check=True)
    assert "duration  30m" in exact.stdout and "note:" not in exact.stderr


def test_audit_export_verify_and_tamper(served: Served, tmp_path: Path) -> None:
    jane = as_(served, "jane.doe@example.com")
    for _ in range(3):
        run("request", "dev-ssh", "--reason", "x", "-q", env=jane, check=True)
    url = served.app.settings.database_url
    security = as_(served, "sec@example.com")
    listed = run("audit", "--type", "request.created", "--limit", "5", env=security, check=True)
    assert listed.stdout.count("request.created") == 3
    out = tmp_path / "audit.jsonl"
    run("audit", "export", "--db", url, "--out", str(out), check=True)
    lines = out.read_text().splitlines()
    total = len(served.tokens) + 9  # the fixture's tokens, then created, approved, granted x 3
    assert len(lines) == total
    assert [json.loads(line)["type"] for line in lines].count("token.created") == len(served.tokens)
    ok = run("audit", "verify", str(out), check=True)
    assert ok.stdout.startswith(f"ok: {total} events")
    on_db = run("audit", "verify", "--db", url, check=True)
    assert on_db.stdout.startswith(f"ok: {total} events")
    at = len(served.tokens) + 4
    record = json.loads(lines[at])
    record["data"]["reason"] = "tampered"
    lines[at] = json.dumps(record)
    out.write_text("\n".join(lines) + "\n")
    broken = run("audit", "verify", str(out))
    assert broken.returncode == 1 and f"BROKEN at seq {at + 1}" in broken.stderr
    del lines[at]
    out.write_text("\n".join(lines) + "\n")
    assert run("audit", "verify", str(out)).returncode == 1


def test_an_export_read_in_part_stops_quietly(tmp_path: Path, start: datetime) -> None:
    """`jitgate audit export | head -1`: the reader goes away; no error, no traceback."""
    from jitgate.adapters.clock import ManualClock
    from jitgate.adapters.db.engine import connect
    from jitgate.adapters.db.migrate import upgrade
    from jitgate.adapters.db.uow import SqlUnitOfWorkFactory
    from jitgate.domain.policy import Policy
    from jitgate.service.context import Context, PolicyHolder
    from jitgate.service.ports import Principal
    from jitgate.service.tokens import create_token

    url = f"sqlite:///{tmp_path}/big.db"
    db = connect(url)
    upgrade(db)
    ctx = Context(SqlUnitOfWorkFactory(db), ManualClock(start), PolicyHolder(Policy()))
    for n in range(600):  # about 200 KB of JSON Lines: more than a pipe holds
        create_token(ctx, principal=Principal("service", f"gw{n}"))
    db.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    command = [JG, "audit", "export", "--db", url]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert json.loads(proc.stdout.readline())["type"] == "token.created"
        proc.stdout.close()
        assert proc.wait(timeout=60) == 1
        assert proc.stderr.read() == b""


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


def test_serve_on_a_busy_port_fails_in_one_line_before_anything_runs(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(
            "serve",
            "--policy",
            str(REPO / "examples" / "policy.yaml"),
            "--db",
            f"sqlite:///{tmp_path}/busy.db",
            "--port",
            str(port),
        )
    one_line_error(done, f"cannot listen on 127.0.0.1:{port}")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "busy.db").exists()  # nothing migrated, audited or ticked
