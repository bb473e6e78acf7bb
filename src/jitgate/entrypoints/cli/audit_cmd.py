"""``jitgate audit``: list events from the server; ``export`` and ``verify`` work offline.

``verify FILE`` checks the chain with the same rules as the database's (``verify_chain``);
a line that is not JSON, or not an event object, is reported by its number: a damaged
export is one line and exit 1, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

import click

from jitgate.domain.audit import CHAINED_FIELDS
from jitgate.entrypoints.cli.client import Api, server_options
from jitgate.entrypoints.cli.common import (
    cannot,
    db_option,
    emit_json,
    fail,
    friendly,
    opened,
    table,
)


@click.group(invoke_without_command=True)
@click.option("--since", default=None, help="ISO time with zone.")
@click.option("--type", "type_", default=None, help="Event type, e.g. request.approved.")
@click.option("--actor", default=None)
@click.option("--request-id", default=None)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON instead of a table.")
@server_options
@click.pass_context
def audit(
    ctx: click.Context,
    since: str | None,
    type_: str | None,
    actor: str | None,
    request_id: str | None,
    limit: int,
    as_json: bool,
    server: str,
    token: str | None,
) -> None:
    """List audit events (admins); `export` and `verify` work on the database offline."""
    if ctx.invoked_subcommand is not None:
        return
    params: dict[str, Any] = {"limit": limit}
    for key, value in (
        ("since", since),
        ("type", type_),
        ("actor", actor),
        ("request_id", request_id),
    ):
        if value:
            params[key] = value
    page = Api(server, token).get("/v1/audit", params=params)
    if as_json:
        emit_json(page)
        return
    rows = [
        [e["seq"], e["at"], e["type"], e["actor"], e["request_id"] or "-"] for e in page["items"]
    ]
    click.echo(table(rows, ["seq", "at", "type", "actor", "request"]))


@audit.command()
@db_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    default="-",
    show_default=True,
    help="File to write, - for stdout.",
)
@friendly
def export(db_url: str, out: str) -> None:
    """Write every audit event as JSON Lines, in chain order."""
    with opened(db_url) as database:  # a missing database is refused before --out is made
        _export(database, out)


def _export(database: Any, out: str) -> None:
    from jitgate.adapters.db.uow import SqlUnitOfWork

    try:
        handle = sys.stdout if out == "-" else open(out, "w", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        cannot("write", out, exc)
    count = 0
    try:
        with SqlUnitOfWork(database, write=False) as uow:
            for record in uow.audit.iterate():
                handle.write(
                    json.dumps(record.as_dict(), sort_keys=True, ensure_ascii=False) + "\n"
                )
                count += 1
    finally:
        if handle is not sys.stdout:
            handle.close()
    click.echo(f"{count} events exported", err=True)


@audit.command()
@click.argument(
    "path", required=False, type=click.Path(exists=True, dir_okay=False, allow_dash=True)
)
@click.option(
    "--head",
    "expected_head",
    default=None,
    metavar="HASH",
    help="The chain must end at this hash (the head GET /v1/audit/verify gave when the "
    "export was made): events cut off at the end are found too.",
)
@db_option
@friendly
def verify(path: str | None, expected_head: str | None, db_url: str) -> None:
    """Check the hash chain of an export (PATH, - for stdin) or of the database; exit 1 if
    broken or if PATH is not an export.

    A chain proves that nothing inside it was changed, removed or reordered; only a head
    kept elsewhere (--head) proves that nothing was cut off its end."""
    from jitgate.adapters.db.uow import SqlUnitOfWork
    from jitgate.domain.audit import verify_chain

    if path:
        name = "<stdin>" if path == "-" else path
        try:
            with _open_export(path) as handle:
                check = verify_chain(read_export(handle))
        except NotAnExport as exc:
            fail(f"{name} is not a valid audit export: line {exc.line}: {exc.problem}")
        except OSError as exc:
            cannot("read", name, exc)
    else:
        with opened(db_url) as database, SqlUnitOfWork(database, write=False) as uow:
            check = uow.audit.verify()
    if not check.ok:
        click.echo(
            f"BROKEN at seq {check.broken_at}: {check.problem} "
            f"({check.events} events verified before it)",
            err=True,
        )
        raise SystemExit(1)
    if expected_head is not None and check.head != expected_head.strip().lower():
        fail(
            f"the chain is intact but ends at {check.head} after {check.events} events, "
            f"not at the head {expected_head.strip()}: events are missing at its end"
        )
    empty = " (the export holds no events)" if path and not check.events else ""
    click.echo(f"ok: {check.events} events, head {check.head}{empty}")


class NotAnExport(Exception):
    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line, self.problem = line, problem


_STRINGS = ("id", "at", "type", "actor", "prev_hash", "hash")
_KINDS = {list: "a JSON list", str: "a JSON string", bool: "true or false", type(None): "null"}


def _open_export(path: str) -> IO[bytes]:
    # closing stdin's buffer at the end of the command is harmless
    return sys.stdin.buffer if path == "-" else open(path, "rb")


def read_export(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The events of a JSON Lines export, in file order; blank lines are skipped. A line
    that is not JSON, or not an event object, raises ``NotAnExport`` with its number."""
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise NotAnExport(number, "not UTF-8") from None
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise NotAnExport(number, f"not JSON ({exc.msg}, column {exc.colno})") from None
        problem = _event_problem(record)
        if problem:
            raise NotAnExport(number, problem)
        yield record


def _event_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        kind = _KINDS.get(type(record), "a JSON number")
        return f"not an audit event ({kind})"
    missing = [f for f in (*CHAINED_FIELDS, "prev_hash", "hash") if f not in record]
    if missing:
        return f"missing {', '.join(missing)}"
    if not isinstance(record["seq"], int) or isinstance(record["seq"], bool):
        return "seq is not a whole number"
    wrong = [f for f in _STRINGS if not isinstance(record[f], str)]
    if wrong:
        return f"not a string: {', '.join(wrong)}"
    if not (record["request_id"] is None or isinstance(record["request_id"], str)):
        return "request_id is not a string or null"
    if not isinstance(record["data"], dict):
        return "data is not an object"
    return None
