"""What CLI commands share: options, loading the app, printing errors in one line.

Text that came from elsewhere (a requester's reason, a server's answer, a name in the
database) is printed for people only through ``line_safe``: it can never move the cursor,
retitle the terminal, reorder what follows or start a line of its own. ``--json`` output is
exact JSON (which escapes all of these by itself).
"""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from jitgate.adapters.policy import PolicyError
from jitgate.config import ConfigError, Settings

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
    help="Policy file or folder.",
)


_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, format (bidi), separators
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def line_safe(value: object) -> str:
    """``value`` as text that stays on one terminal line and means what it shows: control
    characters (C0, DEL, C1: ESC, newline, carriage return…), bidi and other format
    characters (U+200B-U+200F, U+202A-U+202E, U+2066-U+2069…) and line separators become
    visible escapes such as ``\\n``, ``\\x1b`` or ``\\u202e``."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(_escaped(c) if unicodedata.category(c) in _UNSAFE else c for c in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


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
            first = str(exc).splitlines()[0]
            hint = ""
            if "no such table" in first or "does not exist" in first:
                hint = " (has the schema been created? run `jitgate db upgrade`)"
            fail(f"database error: {type(exc).__name__}: {first}{hint}")

    return wrapper


def _db_errors() -> tuple[type[Exception], ...]:
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    return (SQLAlchemyError, ArgumentError)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Rows under headers in aligned columns; every cell is made ``line_safe``."""
    text = [[line_safe(h) for h in headers]]
    text += [["" if c is None else line_safe(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in text) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() for row in text]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


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
