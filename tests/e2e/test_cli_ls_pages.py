"""``jitgate ls`` pages as ``jitgate audit`` does: ``--cursor`` reads the next page, and a
page after which more requests follow ends (on stderr) with the exact command that shows
them, the filters kept; the last page says nothing, even when full. ``--json`` gives the
page with its ``next_cursor``."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from jitgate.domain.creation import Draft
from jitgate.service.requests import create_request
from served import EXAMPLE_POLICY_PATH, Served, serve

JG = str(Path(sys.executable).with_name("jitgate"))
Done = subprocess.CompletedProcess[str]
JANE = "jane.doe@example.com"
PRIYA = "priya@example.com"  # team lead of payments: decides jane's staging-ssh
ADMIN = "sec@example.com"
MORE = "more requests follow: "


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


def _make(app: Served, role: str, count: int) -> list[str]:
    draft = Draft(roles=(role,), reason="page")
    return [
        create_request(app.app.ctx, requester=JANE, draft=draft).request.id for _ in range(count)
    ]


def ids(table: str) -> list[str]:
    return [line.split()[0] for line in table.splitlines()[2:]]


def next_command(done: Done) -> list[str] | None:
    """The words of the command the page ends with, or ``None`` if it says nothing more."""
    assert done.returncode == 0, done.stderr
    if MORE not in done.stderr:
        assert done.stderr == "", done.stderr
        return None
    (line,) = done.stderr.strip().splitlines()
    words = shlex.split(line.split(MORE, 1)[1])
    assert words[:2] == ["jitgate", "ls"] and words[-2] == "--cursor"
    return words


def follow(app: Served, who: str, done: Done) -> list[str]:
    """Every id of ``done`` and of the pages its commands show."""
    seen = ids(done.stdout)
    words = next_command(done)
    while words is not None:
        done = run(app, who, *words[1:])
        seen += ids(done.stdout)
        words = next_command(done)
    return seen


def test_a_page_says_more_follow_and_the_command_shows_the_next(app: Served) -> None:
    made = _make(app, "dev-ssh", 5)
    whole = run(app, JANE, "ls")
    assert next_command(whole) is None
    assert sorted(ids(whole.stdout)) == sorted(made)
    first = run(app, JANE, "ls", "--limit", "2")
    assert ids(first.stdout) == ids(whole.stdout)[:2]
    assert next_command(first) == ["jitgate", "ls", "--limit", "2", "--cursor", _cursor(first)]
    assert follow(app, JANE, first) == ids(whole.stdout)  # each once, in order


def _cursor(done: Done) -> str:
    words = next_command(done)
    assert words is not None
    return words[-1]


def test_a_full_last_page_says_nothing(app: Served) -> None:
    _make(app, "dev-ssh", 4)
    assert next_command(run(app, JANE, "ls", "--limit", "4")) is None
    first = run(app, JANE, "ls", "--limit", "2")
    last = run(app, JANE, "ls", "--limit", "2", "--cursor", _cursor(first))
    assert len(ids(last.stdout)) == 2 and next_command(last) is None


def test_the_next_command_keeps_the_filters(app: Served) -> None:
    waiting = _make(app, "staging-ssh", 3)
    _make(app, "dev-ssh", 2)  # active: not pending
    listed = run(app, ADMIN, "ls", "--state", "pending", "--requester", JANE, "--limit", "1")
    words = next_command(listed)
    assert words is not None
    assert words[2:-1] == ["--state", "pending", "--requester", JANE, "--limit", "1", "--cursor"]
    assert sorted(follow(app, ADMIN, listed)) == sorted(waiting)
    inbox = run(app, PRIYA, "ls", "--to-approve", "--limit", "2")
    assert next_command(inbox) == [
        "jitgate",
        "ls",
        "--to-approve",
        "--limit",
        "2",
        "--cursor",
        _cursor(inbox),
    ]
    assert sorted(follow(app, PRIYA, inbox)) == sorted(waiting)


def test_the_default_page_size_is_left_out_of_the_command(app: Served) -> None:
    _make(app, "dev-ssh", 51)
    first = run(app, JANE, "ls")
    assert len(ids(first.stdout)) == 50
    assert next_command(first) == ["jitgate", "ls", "--cursor", _cursor(first)]
    assert len(follow(app, JANE, first)) == 51


def test_json_gives_the_cursor_and_cursor_takes_it(app: Served) -> None:
    made = _make(app, "dev-ssh", 3)
    first = json.loads(run(app, JANE, "ls", "--limit", "2", "--json").stdout)
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = run(app, JANE, "ls", "--limit", "2", "--json", "--cursor", first["next_cursor"])
    assert second.returncode == 0, second.stderr
    page = json.loads(second.stdout)
    assert page["next_cursor"] is None and second.stderr == ""
    assert sorted(r["id"] for r in first["items"] + page["items"]) == sorted(made)


def test_a_cursor_the_server_did_not_give_is_one_line(app: Served) -> None:
    done = run(app, JANE, "ls", "--cursor", "X")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "cursor: not a cursor this server gave" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
