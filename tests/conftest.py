"""Shared fixtures: the example policy, a fixed start time, databases and service contexts.

- ``pg_url`` (session): a database on a throwaway PostgreSQL server (see ``tests/pg.py``);
  ``pg_db_url`` (function): a fresh, empty database ``jg_<n>`` on that server.
  Without PostgreSQL binaries the tests that need them are skipped, or fail when ``CI=true``.
- ``db_url`` (function, parametrized): ``sqlite`` (a file in ``tmp_path``) and ``postgres``.
- ``make_ctx(db_url, policy=None)`` -> ``(Context, ManualClock)`` on a migrated database,
  clock at ``START``; engines are disposed at teardown.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from components import require  # noqa: E402
from jitgate.adapters.clock import ManualClock  # noqa: E402
from jitgate.adapters.db.engine import Database, connect  # noqa: E402
from jitgate.adapters.db.migrate import upgrade  # noqa: E402
from jitgate.adapters.db.uow import SqlUnitOfWorkFactory  # noqa: E402
from jitgate.adapters.policy import load_policy  # noqa: E402
from jitgate.domain.policy import Policy  # noqa: E402
from jitgate.service.context import Context, PolicyHolder  # noqa: E402
from pg import INSTALL_HINT, PgServer, find_bindir  # noqa: E402

EXAMPLE_POLICY_PATH = REPO_ROOT / "examples" / "policy.yaml"
#: Monday 2026-03-02 10:00 UTC: the fixed "now" every test starts from.
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

MakeCtx = Callable[..., tuple[Context, ManualClock]]


@pytest.fixture(scope="session")
def example_policy() -> Policy:
    return load_policy(EXAMPLE_POLICY_PATH)


@pytest.fixture
def start() -> datetime:
    return START


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = find_bindir()
    require(bindir is not None, f"PostgreSQL is missing. {INSTALL_HINT}")
    assert bindir is not None
    server = PgServer(bindir)
    try:
        server.start()
    except Exception as exc:
        server.stop()
        pytest.fail(f"could not start a throwaway PostgreSQL from {bindir}: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    """``postgresql://postgres@127.0.0.1:PORT/jitgate`` on the session's server."""
    return pg_server.create_database("jitgate")


@pytest.fixture
def pg_db_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh empty database for one test, dropped afterwards."""
    url = pg_server.create_database()
    yield url
    with contextlib.suppress(Exception):
        pg_server.drop_database(url.rsplit("/", 1)[1])


# -- both databases ----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/jg.db"
    return str(request.getfixturevalue("pg_db_url"))


@pytest.fixture
def make_ctx(example_policy: Policy) -> Iterator[MakeCtx]:
    """Factory: ``make_ctx(db_url, policy=None, start=START)`` -> ``(Context, ManualClock)``."""
    databases: list[Database] = []

    def make(
        url: str, policy: Policy | None = None, *, start: datetime = START
    ) -> tuple[Context, ManualClock]:
        db = connect(url)
        databases.append(db)
        upgrade(db)
        clock = ManualClock(start)
        ctx = Context(
            uow=SqlUnitOfWorkFactory(db),
            clock=clock,
            policy=PolicyHolder(policy if policy is not None else example_policy),
        )
        return ctx, clock

    yield make
    for db in databases:
        db.dispose()
