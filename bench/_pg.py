"""A throwaway PostgreSQL for the benches that can also run on it: the test suite's own
``tests/pg.py`` (initdb into a temporary directory, loopback only, ``runuser -u postgres``
when root), loaded by path so ``bench`` does not import the test package."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from bench._common import REPO


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jitgate_tests_pg", REPO / "tests" / "pg.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("tests/pg.py not found")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def postgres() -> Iterator[Any | None]:
    """A started ``PgServer``, or ``None`` (with the reason printed) when it cannot start."""
    try:
        pg = _module()
    except Exception as exc:  # the helper moved or broke: run without PostgreSQL
        print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
        yield None
        return
    bindir = pg.find_bindir()
    if bindir is None:
        print("PostgreSQL skipped: no initdb/pg_ctl found", file=sys.stderr)
        yield None
        return
    server = pg.PgServer(bindir)
    try:
        server.start()
    except Exception as exc:
        server.stop()
        print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
        yield None
        return
    try:
        yield server
    finally:
        server.stop()
