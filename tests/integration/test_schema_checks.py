"""A jitgate runs only on the schema it was released with, on SQLite and PostgreSQL: an older
schema is migrated (``serve``, ``worker``, ``token``, ``db upgrade``) or, with
``--no-migrate``, refused; a schema newer than it knows is refused by every command that
starts on the database, in one line that says what to do, never with Alembic's traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from jitgate.adapters.db.engine import connect
from jitgate.adapters.db.migrate import (
    SchemaMismatch,
    check,
    current,
    expected,
    problem,
    upgrade,
)
from jitgate.bootstrap import bootstrap
from jitgate.config import ConfigError, Settings
from served import EXAMPLE_POLICY_PATH, free_port

JG = str(Path(sys.executable).with_name("jitgate"))
OLD = "0002"
FUTURE = "0007"
NEWER = (
    f"the database is at schema {FUTURE}, newer than this jitgate knows "
    f"(up to {expected()}): upgrade jitgate"
)


def _at(url: str, revision: str) -> None:
    """The database at ``url`` at schema ``revision``; one this jitgate does not know is
    made by stamping the newest one with it, as a newer release's migration would leave it."""
    db = connect(url)
    try:
        if revision == FUTURE:
            upgrade(db)
            with db.engine.begin() as conn:
                conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": FUTURE})
        else:
            upgrade(db, revision)
        assert current(db) == revision
    finally:
        db.dispose()


def _settings(url: str) -> Settings:
    return Settings(policy_path=str(EXAMPLE_POLICY_PATH), database_url=url)


def _run(*args: str, url: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    env["JITGATE_DATABASE_URL"] = url
    env["JITGATE_POLICY"] = str(EXAMPLE_POLICY_PATH)
    try:
        return subprocess.run(
            [JG, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:  # it started instead of refusing
        pytest.fail(f"`jitgate {' '.join(args)}` did not refuse: {exc.stderr!r}")


def _one_line(done: subprocess.CompletedProcess[str], line: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [line], done.stderr


# -- the checks ------------------------------------------------------------------------------


def test_each_schema_is_named_with_what_to_do(db_url: str) -> None:
    db = connect(db_url)
    try:
        assert problem(db) == "the database has no schema yet: run `jitgate db upgrade` first"
        upgrade(db, OLD)
        assert problem(db) == (
            f"the database is at schema {OLD}, this jitgate needs {expected()}: "
            "run `jitgate db upgrade` first"
        )
        with pytest.raises(SchemaMismatch):
            check(db)
        upgrade(db)
        assert problem(db) is None
        check(db)
    finally:
        db.dispose()


def test_upgrade_refuses_a_newer_schema_in_one_line(db_url: str) -> None:
    _at(db_url, FUTURE)
    db = connect(db_url)
    try:
        with pytest.raises(ConfigError) as refused:  # the CLI shows a ConfigError in one line
            upgrade(db)
        assert str(refused.value) == NEWER
        assert problem(db) == NEWER
        assert current(db) == FUTURE
    finally:
        db.dispose()


# -- bootstrap: what serve and worker start with ---------------------------------------------


def test_bootstrap_without_migrating_refuses_an_older_schema(db_url: str) -> None:
    _at(db_url, OLD)
    with pytest.raises(SchemaMismatch, match=f"at schema {OLD}, this jitgate needs"):
        bootstrap(_settings(db_url), migrate=False)
    app = bootstrap(_settings(db_url), migrate=True)
    try:
        assert current(app.db) == expected()
    finally:
        app.close()
    bootstrap(_settings(db_url), migrate=False).close()


@pytest.mark.parametrize("migrate", [None, True, False])
def test_bootstrap_refuses_a_newer_schema(db_url: str, migrate: bool | None) -> None:
    _at(db_url, FUTURE)
    with pytest.raises(SchemaMismatch) as refused:
        bootstrap(_settings(db_url), migrate=migrate)
    assert str(refused.value) == NEWER


# -- the CLI ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("db", "upgrade"),
        ("token", "create", "jane.doe@example.com"),
        ("serve", "--port", "0"),
        ("serve", "--no-migrate", "--port", "0"),
        ("worker",),
        ("worker", "--no-migrate"),
    ],
    ids=" ".join,
)
def test_the_cli_refuses_a_newer_schema_in_one_line(db_url: str, args: tuple[str, ...]) -> None:
    _at(db_url, FUTURE)
    args = tuple(str(free_port()) if a == "0" else a for a in args)
    _one_line(_run(*args, url=db_url), f"error: {NEWER}")


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_the_cli_without_migrating_refuses_an_older_schema(db_url: str, command: str) -> None:
    _at(db_url, OLD)
    extra = ("--port", str(free_port())) if command == "serve" else ()
    done = _run(command, "--no-migrate", *extra, url=db_url, timeout=10)
    _one_line(
        done,
        f"error: the database is at schema {OLD}, this jitgate needs {expected()}: "
        "run `jitgate db upgrade` first",
    )


@pytest.mark.parametrize("revision", [OLD, FUTURE])
def test_readyz_says_a_schema_that_is_not_this_jitgate_s(db_url: str, revision: str) -> None:
    """A replica on a database not yet migrated to its schema is not ready, and says why.
    One a newer release migrated stays ready, with a note: migrations only add, so a
    rolling upgrade does not take every running replica out of its load balancer."""
    import httpx
    from notify_sinks import ServedApi

    from jitgate.entrypoints.api.app import create_app

    upgrade_to = expected()
    db = connect(db_url)
    try:
        upgrade(db)
    finally:
        db.dispose()
    app = bootstrap(_settings(db_url))
    served = ServedApi(create_app(app))
    try:
        with httpx.Client(base_url=served.url, timeout=10) as client:
            ready = client.get("/readyz").json()
            assert (ready["status"], ready["schema"]) == ("ready", upgrade_to)
            assert ready["policy"] == app.ctx.policy.current.digest
            assert ready["policy_step"]["in_step"] is True
            with app.db.engine.begin() as conn:  # another release moves the schema
                conn.execute(
                    sa.text("UPDATE alembic_version SET version_num = :v"), {"v": revision}
                )
            answer = client.get("/readyz")
            head = client.head("/readyz")
        if revision == OLD:
            assert answer.status_code == head.status_code == 503
            assert answer.json()["detail"] == problem(app.db)
            assert f"schema {revision}" in answer.json()["detail"]
        else:
            assert answer.status_code == head.status_code == 200
            assert answer.json()["status"] == "ready"
            assert f"schema {revision}, newer than this jitgate" in answer.json()["note"]
    finally:
        served.stop()
        app.close()
