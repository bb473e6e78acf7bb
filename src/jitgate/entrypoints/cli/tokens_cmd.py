"""``jitgate token``: create, list and revoke API tokens, straight in the database.

Only a token's SHA-256 hash is stored; ``ls`` and ``revoke`` name a token by its id, the
first 12 hex digits of that hash. Creating and revoking are audited (``token.created``,
``token.revoked``) with the id, never the token.

``create`` leaves no working token nobody saw: with stdout closed it creates none, and a
token it cannot print (a full disk, a closed pipe) is revoked again at once.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

import click

from jitgate.entrypoints.cli.common import db_option, emit_json, fail, friendly, line_safe, table

if TYPE_CHECKING:
    from jitgate.service.context import Context
    from jitgate.service.ports import Principal, TokenInfo


@click.group()
def token() -> None:
    """API tokens for people and gateways: create, ls, revoke."""


@contextmanager
def _context(db_url: str, *, create: bool = False) -> Iterator[Context]:
    """A context on ``db_url``. Only ``create`` (``token create``) makes a new SQLite file
    and brings the schema up to date; ``ls`` and ``revoke`` change no schema: they refuse
    a missing file and any schema but this jitgate's, in one line that says what to run."""
    from jitgate.adapters.clock import SystemClock
    from jitgate.adapters.db.migrate import check, upgrade
    from jitgate.adapters.db.uow import SqlUnitOfWorkFactory
    from jitgate.domain.policy import Policy
    from jitgate.entrypoints.cli.common import opened
    from jitgate.service.context import Context, PolicyHolder

    with opened(db_url, create=create) as database:
        if create:
            upgrade(database)
        else:
            check(database)
        yield Context(
            uow=SqlUnitOfWorkFactory(database), clock=SystemClock(), policy=PolicyHolder(Policy())
        )


def _principal(email: str | None, service: str | None) -> Principal:
    from jitgate.service.ports import Principal

    if bool(email) == bool(service):
        fail("give either EMAIL or --service NAME")
    return Principal("user", str(email)) if email else Principal("service", str(service))


@token.command()
@click.argument("email", required=False)
@click.option("--service", "service", default=None, help="A gateway's name instead of a person.")
@click.option(
    "--expires",
    "expires",
    default=None,
    metavar="DURATION",
    help="Stop working this long from now (90d, 12h, PT8H); default: when revoked.",
)
@db_option
@friendly
def create(email: str | None, service: str | None, expires: str | None, db_url: str) -> None:
    """Create a token for EMAIL, or for --service NAME; print it alone on stdout.

    Only its SHA-256 hash is stored; `jitgate token ls` shows its id. With --expires the
    token stops working after that long. The schema is brought up to date first if
    needed."""
    from jitgate.domain.durations import parse_duration
    from jitgate.service.tokens import checked_principal, create_token

    principal = checked_principal(_principal(email, service))  # refused before any database
    try:
        expires_in = None if expires is None else parse_duration(expires)
    except ValueError as exc:
        fail(f"--expires: {exc}")
    out = _open_stdout()
    with _context(db_url, create=True) as ctx:
        new = create_token(ctx, principal=principal, expires_in=expires_in)
        try:
            out.write(new + "\n")
            out.flush()
        except (OSError, ValueError) as exc:
            _unprinted(ctx, new, out, exc)


def _open_stdout() -> TextIO:
    """Standard output, or one line and exit 1 (before a token exists) if it is closed."""
    out = sys.stdout
    closed = "stdout is closed: a token nobody sees must not exist, none was created"
    if out is None or out.closed:
        fail(closed)
    try:
        os.fstat(out.fileno())
    except io.UnsupportedOperation:
        pass  # not a file (a test's capture): writing it will tell
    except OSError:
        fail(closed)
    return out


def _unprinted(ctx: Context, new: str, out: TextIO, exc: Exception) -> None:
    """The token could not be printed: revoke it (audited) and say so in one line."""
    from jitgate.service.tokens import hash_token, revoke_tokens

    why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    token_id = hash_token(new)[:12]
    with suppress(OSError, ValueError):  # unwritten, it stays buffered: flush it nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    try:
        revoke_tokens(ctx, which=new)
    except Exception as revoking:  # the database failed too: say which token still works
        fail(
            f"cannot print the token ({why}) nor revoke it ({type(revoking).__name__}): "
            f"revoke {token_id} with `jitgate token revoke {token_id}`"
        )
    fail(f"cannot print the token ({why}): token {token_id} was revoked again")


@token.command("ls")
@click.option("--all", "include_ended", is_flag=True, help="Include revoked and expired tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@db_option
@friendly
def list_(include_ended: bool, as_json: bool, db_url: str) -> None:
    """List the tokens that work; with --all, the revoked and expired ones too.

    Oldest first, each named by its id (the start of its hash), never by the token. Only
    reads: a database at another schema is refused (run `jitgate db upgrade`)."""
    from jitgate.service.tokens import list_tokens

    with _context(db_url) as ctx:
        infos = list_tokens(ctx, include_ended=include_ended)
    if as_json:
        emit_json([_as_dict(info) for info in infos])
        return
    rows = [
        (
            i.id,
            i.principal.kind,
            i.principal.subject,
            _when(i.created_at),
            _when(i.expires_at),
            _when(i.revoked_at),
        )
        for i in infos
    ]
    click.echo(table(rows, ["ID", "KIND", "SUBJECT", "CREATED", "EXPIRES", "REVOKED"]))


@token.command()
@click.argument("token_id", metavar="[ID]", required=False)
@click.option("--user", "email", default=None, help="Revoke every token of this person.")
@click.option("--service", "service", default=None, help="Revoke every token of this gateway.")
@db_option
@friendly
def revoke(token_id: str | None, email: str | None, service: str | None, db_url: str) -> None:
    """Revoke a token by its ID, or every token of a person or gateway.

    ID is the id `jitgate token ls` shows (8 digits are enough if they name one token); the
    token itself works too. --user EMAIL or --service NAME revokes all of theirs.

    Running servers notice within about a second and refuse the token from then on. The
    schema is left alone: a database at another schema is refused (run `jitgate db upgrade`)."""
    from jitgate.service.tokens import revoke_tokens

    if sum(x is not None for x in (token_id, email, service)) != 1:
        fail("give one of ID, --user EMAIL or --service NAME")
    which = token_id if token_id is not None else _principal(email, service)
    with _context(db_url) as ctx:
        done = revoke_tokens(ctx, which=which)
    for info, now in done:
        who = line_safe(f"{info.principal.kind} {info.principal.subject}")
        if now:
            click.echo(f"revoked {info.id} ({who})")
        else:
            click.echo(f"{info.id} ({who}) was already revoked at {_when(info.revoked_at)}")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else ""


def _as_dict(info: TokenInfo) -> dict[str, object]:
    return {
        "id": info.id,
        "kind": info.principal.kind,
        "subject": info.principal.subject,
        "created_at": info.created_at.isoformat(),
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
    }
