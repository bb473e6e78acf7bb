"""``jitgate audit`` against a served app: a page says when more events follow and gives
the exact command for the next one (``--cursor``); ``--last N`` shows the newest events;
and the CLI's refusals show durations as people write them (``20h``, ``8h``, ``7d``)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from jitgate.domain.events import DomainEvent
from served import EXAMPLE_POLICY_PATH, Served, serve

JG = str(Path(sys.executable).with_name("jitgate"))
Done = subprocess.CompletedProcess[str]
ADMIN = "sec@example.com"  # in group security, the example policy's admins


@pytest.fixture
def app(tmp_path: Path, start: datetime) -> Iterator[Served]:
    running = serve(f"sqlite:///{tmp_path}/jg.db", EXAMPLE_POLICY_PATH, start)
    try:
        yield running
    finally:
        running.stop()


def run(app: Served, who: str, *args: str) -> Done:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    env.update(JITGATE_SERVER=app.url, JITGATE_TOKEN=app.tokens[who])
    return subprocess.run([JG, *args], capture_output=True, text=True, env=env, timeout=120)


def seqs(table: str) -> list[int]:
    return [int(line.split()[0]) for line in table.splitlines()[2:]]


def test_a_page_says_more_follow_and_the_command_shows_the_next(app: Served) -> None:
    with app.app.ctx.uow(write=True) as uow:
        uow.audit.append([DomainEvent("policy.loaded", "t", None, {})] * 208, app.clock.now())
        uow.commit()
    first = run(app, ADMIN, "audit")
    assert first.returncode == 0, first.stderr
    assert seqs(first.stdout) == list(range(1, 101))
    assert "more events follow: jitgate audit --cursor 100" in first.stderr
    seen = seqs(first.stdout)
    said = first.stderr
    while "more events follow: " in said:
        command = said.split("more events follow: ", 1)[1].split("  (", 1)[0]
        words = shlex.split(command)
        assert words[:2] == ["jitgate", "audit"]
        page = run(app, ADMIN, *words[1:])
        assert page.returncode == 0, page.stderr
        seen += seqs(page.stdout)
        said = page.stderr
    total = len(seen)
    assert seen == list(range(1, total + 1)) and total >= 208


def test_the_next_command_keeps_the_filters_and_the_page_size(app: Served) -> None:
    with app.app.ctx.uow(write=True) as uow:
        uow.audit.append([DomainEvent("access.used", "x", None, {})] * 5, app.clock.now())
        uow.commit()
    done = run(app, ADMIN, "audit", "--type", "access.used", "--limit", "2")
    assert done.returncode == 0, done.stderr
    line = done.stderr.strip()
    command = line.split("more events follow: ", 1)[1].split("  (", 1)[0]
    words = shlex.split(command)
    assert words[:6] == ["jitgate", "audit", "--type", "access.used", "--limit", "2"]
    assert words[6] == "--cursor"


def test_a_last_page_says_nothing_more_even_when_full(app: Served) -> None:
    every = json.loads(run(app, ADMIN, "audit", "--limit", "1000", "--json").stdout)["items"]
    done = run(app, ADMIN, "audit", "--limit", str(len(every)))
    assert done.returncode == 0 and "more events" not in done.stderr, done.stderr
    as_json = json.loads(run(app, ADMIN, "audit", "--limit", str(len(every)), "--json").stdout)
    assert as_json["next_cursor"] is None


def test_last_shows_the_newest_events(app: Served) -> None:
    with app.app.ctx.uow(write=True) as uow:
        uow.audit.append([DomainEvent("policy.loaded", "t", None, {})] * 300, app.clock.now())
        uow.audit.append(
            [DomainEvent("access.used", "x", None, {"n": n}) for n in range(3)], app.clock.now()
        )
        uow.audit.append([DomainEvent("policy.loaded", "t", None, {})] * 40, app.clock.now())
        uow.commit()
    every = []
    cursor: str | None = "0"
    while cursor is not None:
        page = json.loads(
            run(app, ADMIN, "audit", "--limit", "1000", "--cursor", cursor, "--json").stdout
        )
        every += [e["seq"] for e in page["items"]]
        cursor = page["next_cursor"]
    newest = run(app, ADMIN, "audit", "--last", "5")
    assert newest.returncode == 0, newest.stderr
    assert seqs(newest.stdout) == every[-5:]
    assert "more events" not in newest.stderr
    used = run(app, ADMIN, "audit", "--last", "2", "--type", "access.used", "--json")
    assert [e["data"]["n"] for e in json.loads(used.stdout)["items"]] == [1, 2]
    assert run(app, ADMIN, "audit", "--last", "2", "--cursor", "3").returncode == 2
    assert run(app, ADMIN, "audit", "--last", "2", "--limit", "3").returncode == 2
    none = run(app, ADMIN, "audit", "--last", "3", "--type", "no.such")
    assert none.returncode == 0 and seqs(none.stdout) == []


def test_the_help_shows_how_to_page_and_see_the_newest(app: Served) -> None:
    shown = " ".join(run(app, ADMIN, "audit", "--help").stdout.split())
    assert "--cursor SEQ" in shown and "--last N" in shown and "--since TIME" in shown
    assert "oldest first" in shown


def test_a_duration_over_the_maximum_is_shown_as_people_write_it(app: Served) -> None:
    jane = "jane.doe@example.com"
    over = run(app, jane, "request", "staging-ssh", "--for", "20h", "--reason", "INC-1")
    assert over.returncode == 1
    assert "duration 20h is over the maximum 8h" in over.stderr, over.stderr


def test_a_start_too_far_ahead_shows_the_limit_as_written(app: Served, start: datetime) -> None:
    ahead = (start + timedelta(days=31)).isoformat()
    late = run(
        app,
        "jane.doe@example.com",
        *("request", "staging-ssh", "--for", "1h", "--reason", "INC-2", "--start-at", ahead),
    )
    assert late.returncode == 1
    assert "start_at is more than 7d ahead (max_schedule_ahead)" in late.stderr, late.stderr


def test_the_readme_describes_every_part_of_the_evidence_and_the_time_forms(
    app: Served,
) -> None:
    from jitgate.domain.audit import format_at

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    described = readme.split("The evidence of a request is one JSON object:", 1)[1]
    described = described.split("\n## ", 1)[0]
    jane = app.client("jane.doe@example.com")
    made = jane.post("/v1/requests", json={"roles": ["dev-ssh"], "reason": "INC-7"})
    assert made.status_code == 201, made.text
    evidence = jane.get(f"/v1/requests/{made.json()['id']}/evidence").json()
    for key, value in evidence.items():
        assert f"`{key}`" in described, key
        if key in ("authorized", "time_limited", "justified", "used"):
            for inner in value:
                assert f"`{inner}`" in described, f"{key}.{inner}"
    at = evidence["audit"][0]["at"]
    assert at == format_at(datetime.fromisoformat(at)) and at.endswith("Z")
    assert "the canonical form that its hash covers" in readme
    assert evidence["time_limited"]["starts_at"].endswith("+00:00")
    assert "the times that the evidence's own sections give are in the `+00:00` form" in readme
