"""The CLI's database errors say what to do: a PostgreSQL database that does not exist is
created (not "run `jitgate db upgrade`", the command that just failed); a missing table
means the schema is not there yet; a SQLite file that cannot be opened is named, with the
likely reason, instead of the driver's bare "unable to open database file"."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pg
from components import require
from served import free_port

JG = str(Path(sys.executable).with_name("jitgate"))
Done = subprocess.CompletedProcess[str]


def run(*args: str) -> Done:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    return subprocess.run([JG, *args], capture_output=True, text=True, env=env, timeout=60)


def one_line_error(done: Done) -> str:
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def pg_server() -> Iterator[pg.PgServer]:
    bindir = pg.find_bindir()
    require(bindir is not None, f"PostgreSQL is missing. {pg.INSTALL_HINT}")
    assert bindir is not None
    server = pg.PgServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_a_missing_postgresql_database_is_to_be_created(pg_server: pg.PgServer) -> None:
    line = one_line_error(run("db", "upgrade", "--db", pg_server.url("nodb")))
    assert 'database "nodb" does not exist' in line
    assert "createdb nodb" in line and "CREATE DATABASE" in line
    assert "has the schema been created" not in line


def test_a_missing_table_still_asks_for_db_upgrade(pg_server: pg.PgServer) -> None:
    url = pg_server.create_database("empty")  # no schema in it
    line = one_line_error(run("audit", "verify", "--db", url))
    assert "run `jitgate db upgrade`" in line and "createdb" not in line


def test_a_sqlite_file_in_a_missing_folder_is_named_with_the_reason() -> None:
    path = "/nonexistent/dir/x.db"
    line = one_line_error(run("db", "upgrade", "--db", f"sqlite:///{path}"))
    assert line == (
        f"error: cannot open the SQLite database {path}: the folder /nonexistent/dir does "
        "not exist (create it, or correct --db)"
    )


def test_a_sqlite_file_under_a_file_or_that_is_a_folder_is_named(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("")
    line = one_line_error(run("db", "upgrade", "--db", f"sqlite:///{plain}/x.db"))
    assert f"cannot open the SQLite database {plain}/x.db: {plain} is not a folder" in line
    line = one_line_error(run("db", "upgrade", "--db", f"sqlite:///{tmp_path}"))
    assert f"{tmp_path}: that is a folder, not a database file" in line


def test_serve_names_the_sqlite_file_it_cannot_open(tmp_path: Path) -> None:
    policy = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"
    port = str(free_port())
    done = run(
        "serve",
        "--policy",
        str(policy),
        "--db",
        "sqlite:////nonexistent/dir/x.db",
        "--port",
        port,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1
    assert "cannot open the SQLite database /nonexistent/dir/x.db" in done.stderr
