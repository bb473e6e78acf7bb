"""What CLI commands share: options, loading the app, printing errors in one line.

Text that came from elsewhere (a requester's reason, a server's answer, a name in the
database) is printed for people only through ``line_safe``: it can never move the cursor,
retitle the terminal, reorder what follows or start a line of its own. ``--json`` output is
exact JSON (which escapes all of these by itself).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from jitgate.adapters.policy import PolicyError
from jitgate.config import ConfigError, Settings
from jitgate.domain.text import line_safe as line_safe  # the CLI's, re-exported

P = ParamSpec("P")
T = TypeVar("T")


def _existing_policy(_ctx: click.Context, _param: click.Parameter, path: str) -> str:
    """A missing policy is one line that says how to name it, never ``policy.yaml:1: …``."""
    if path != "-" and not os.path.exists(path):
        fail(f"no policy file or folder at {path}: pass --policy FILE or set JITGATE_POLICY")
    return path


db_option = click.option(
    "--db",
    "db_url",
    envvar="JITGATE_DATABASE_URL",
    show_envvar=True,
    metavar="URL",
    default="sqlite:///./jitgate.db",
    show_default=True,
    help="Database URL: sqlite:///FILE or postgresql://…",
)
policy_option = click.option(
    "--policy",
    "policy_path",
    envvar="JITGATE_POLICY",
    show_envvar=True,
    metavar="FILE",
    default="policy.yaml",
    show_default=True,
    callback=_existing_policy,
    help="Policy file, or folder of *.yaml/*.yml files (read non-recursively).",
)


def lines_safe(text: str) -> str:
    """``line_safe`` for each line of ``text`` (one of several lines the caller meant)."""
    return "\n".join(line_safe(line) for line in text.split("\n"))


def fail(message: str, code: int = 1) -> NoReturn:
    """``error: message`` on stderr and exit ``code``, each line made ``line_safe``."""
    click.echo(f"error: {lines_safe(message)}", err=True)
    sys.exit(code)


def cannot(doing: str, path: object, exc: OSError) -> NoReturn:
    """``error: cannot write out.json: No such file or directory``: the file the user named,
    not a temporary file beside it."""
    fail(f"cannot {doing} {path}: {exc.strerror or type(exc).__name__}")


def settings(**overrides: Any) -> Settings:
    return Settings.from_env(**overrides)


def friendly(func: Callable[P, T]) -> Callable[P, T]:
    """Turn expected failures into one line on stderr and exit 1; never a traceback."""
    from jitgate.domain.errors import DomainError

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except PolicyError as exc:
            click.echo(lines_safe(str(exc)), err=True)
            sys.exit(1)
        except (DomainError, ConfigError) as exc:
            fail(str(exc))
        except BrokenPipeError:
            # the reader went away (`jitgate audit export | head`): stop quietly, and keep
            # the interpreter's flush of stdout at exit from failing again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except OSError as exc:
            fail(f"{exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": "))
        except _db_errors() as exc:
            fail(_database_error(exc))

    return wrapper


def _db_errors() -> tuple[type[Exception], ...]:
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    return (SQLAlchemyError, ArgumentError)


_NO_DATABASE = re.compile(r'database "(?P<name>[^"]+)" does not exist')
_NO_ROLE = re.compile(r'role "(?P<name>[^"]+)" does not exist')
_NO_TABLE = re.compile(r'no such table|relation "[^"]+" does not exist')


def _database_error(exc: Exception) -> str:
    """One line for a database failure, with what to do when that is known: a missing
    PostgreSQL database is created, a missing table means the schema is not there yet."""
    from jitgate.adapters.db.engine import UnopenableDatabase

    if isinstance(exc, UnopenableDatabase):
        return str(exc)
    text = str(exc)
    first = text.splitlines()[0] if text else ""
    hint = ""
    if found := _NO_DATABASE.search(text):
        name = found["name"]
        hint = (
            f' (create it first: `createdb {name}`, or CREATE DATABASE "{name}"; '
            "then `jitgate db upgrade` creates the schema in it)"
        )
    elif found := _NO_ROLE.search(text):
        hint = f" (the user {found['name']!r} in --db does not exist on that server)"
    elif _NO_TABLE.search(first):
        hint = " (has the schema been created? run `jitgate db upgrade`)"
    return f"database error: {type(exc).__name__}: {first}{hint}"


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Rows under headers in aligned columns; every cell is made ``line_safe``."""
    text = [[line_safe(h) for h in headers]]
    text += [["" if c is None else line_safe(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in text) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() for row in text]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def more_follow(
    what: str,
    command: Sequence[str],
    options: Mapping[str, str | bool | None],
    cursor: str,
    note: str = "",
) -> None:
    """Say on stderr, after a page of a list, that more ``what`` follow and the exact
    command that shows the next page: ``command`` with ``options`` (``--key VALUE``, a flag
    when ``True``, left out when empty: the filters the page was read with) and
    ``--cursor CURSOR``. A page that is all there is says nothing."""
    words = list(command)
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif value:
            words += [flag, value]
    line = f"more {what} follow: {shlex.join([*words, '--cursor', cursor])}{note}"
    click.echo(line_safe(line), err=True)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


@contextmanager
def opened(db_url: str, *, create: bool = False) -> Iterator[Any]:
    """The database at ``db_url``; a SQLite file that does not exist is refused unless
    ``create`` (``db upgrade``, ``token create``), so a typo never makes an empty one."""
    from jitgate.adapters.db.engine import connect

    db = connect(db_url, pool_size=2, create=create)
    try:
        yield db
    finally:
        db.dispose()
