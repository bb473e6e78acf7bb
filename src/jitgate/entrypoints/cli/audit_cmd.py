"""``jitgate audit``: list events from the server; ``export`` and ``verify`` work offline.

The list is a page, oldest first, that says when more follow and how to see them
(``--cursor``); ``--last N`` finds the newest N through the same API, which pages only
from the oldest.

``verify FILE`` checks the chain with the same rules as the database's (``verify_chain``);
a line that is not JSON, not an event object, or one with a key twice or a field no event
has, is reported by its number: a damaged export is one line and exit 1, never a traceback.
``verify --head HASH`` holds the chain to a checkpoint: it must pass through the event
whose hash that is. ``export`` writes the file whole or not at all, and names the event it
ended at (seq and hash) on stderr: the checkpoint to keep.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

import click
from click.core import ParameterSource

from jitgate.domain.audit import (
    CHAINED_FIELDS,
    GENESIS,
    BadData,
    ChainCheck,
    DuplicateKey,
    strict_loads,
)
from jitgate.entrypoints.cli.client import Api, server_options
from jitgate.entrypoints.cli.common import (
    cannot,
    db_option,
    emit_json,
    fail,
    friendly,
    more_follow,
    opened,
    table,
)

MAX_SEQ = 2**63 - 1  # the largest cursor the API takes
_PAGE = 100


@click.group(invoke_without_command=True)
@click.option(
    "--since",
    default=None,
    metavar="TIME",
    help="Events from the first one at or after TIME on (ISO, with a zone).",
)
@click.option("--type", "type_", default=None, help="Event type, e.g. request.approved.")
@click.option("--actor", default=None)
@click.option("--request-id", default=None)
@click.option(
    "--limit",
    default=_PAGE,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Events per page.",
)
@click.option(
    "--cursor",
    default=None,
    metavar="SEQ",
    type=click.IntRange(min=0),
    help="Start after the event with this seq: the next page (the table's last line, or "
    "next_cursor in --json, gives it).",
)
@click.option(
    "--last",
    default=None,
    metavar="N",
    type=click.IntRange(1, 1000),
    help="The newest N events (of those the other options select) instead of the oldest.",
)
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
    cursor: int | None,
    last: int | None,
    as_json: bool,
    server: str,
    token: str | None,
) -> None:
    """List audit events (admins), oldest first, one page of --limit at a time; the table
    ends with the command that shows the next page. --last N shows the newest N events
    instead, --since TIME those from TIME on. `export` and `verify` work on the database
    offline."""
    if ctx.invoked_subcommand is not None:
        return
    if last is not None and cursor is not None:
        raise click.UsageError("--last and --cursor do not go together")
    if last is not None and ctx.get_parameter_source("limit") is not ParameterSource.DEFAULT:
        raise click.UsageError("--last N sets how many events: leave --limit out")
    filters = _filters(since=since, type=type_, actor=actor, request_id=request_id)
    api = Api(server, token)
    if last is not None:
        page: dict[str, Any] = {"items": _newest(api, filters, last), "next_cursor": None}
    else:
        page = _page(api, filters, limit, cursor)
        if page["next_cursor"] and not _page(api, filters, 1, int(page["next_cursor"]))["items"]:
            page["next_cursor"] = None  # a full page that happened to end the chain
    if as_json:
        emit_json(page)
        return
    rows = [
        [e["seq"], e["at"], e["type"], e["actor"], e["request_id"] or "-"] for e in page["items"]
    ]
    click.echo(table(rows, ["seq", "at", "type", "actor", "request"]))
    if page["next_cursor"]:
        paged = {**filters, "limit": str(limit) if limit != _PAGE else None}
        more_follow(
            "events",
            ["jitgate", "audit"],
            paged,
            str(page["next_cursor"]),
            "  (--last N: the newest N)",
        )


def _filters(**given: str | None) -> dict[str, str]:
    return {key: value for key, value in given.items() if value}


def _page(api: Api, filters: dict[str, str], limit: int, cursor: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {**filters, "limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    page: dict[str, Any] = api.get("/v1/audit", params=params)
    return page


def _newest(api: Api, filters: dict[str, str], count: int) -> list[dict[str, Any]]:
    """The newest ``count`` events that ``filters`` select, oldest first. The API pages from
    the oldest: the last selected seq is found by doubling, then halving, a cursor (is any
    event after it?), then pages are read from ever earlier cursors until ``count`` are
    found: some 2 log2(seq) small requests, and the last ``count`` events (more when
    ``filters`` select few of them)."""

    def any_after(cursor: int) -> bool:
        return bool(_page(api, filters, 1, cursor)["items"])

    if not any_after(0):
        return []
    low, high = 0, 1  # an event is after ``low``; after ``high``, to be seen
    while high < MAX_SEQ and any_after(high):
        low, high = high, min(high * 2, MAX_SEQ)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if any_after(middle) else (low, middle)
    window = count
    while True:
        start = max(0, high - window)
        found = _all_after(api, filters, start)
        if len(found) >= count or start == 0:
            return found[-count:]
        window *= 4


def _all_after(api: Api, filters: dict[str, str], cursor: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = _page(api, filters, 1000, cursor)
        found += page["items"]
        if not page["next_cursor"]:
            return found
        cursor = int(page["next_cursor"])


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
    """Write to a hidden file beside ``out`` and rename it over ``out`` once every event is
    written: a failure leaves no partial export (and an earlier ``out`` as it was)."""
    if out == "-":
        end = _write_events(database, sys.stdout)
    else:
        folder, name = os.path.split(out)
        partial = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.partial")
        try:
            handle = open(partial, "x", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            cannot("write", out, exc)
        try:
            with handle:
                end = _write_events(database, handle)
            os.replace(partial, out)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
    count, seq, head = end
    if not count:
        click.echo("0 events exported (the chain is empty)", err=True)
    else:
        click.echo(
            f"{count} events exported, ending at seq {seq} with hash {head} (keep it: "
            "`jitgate audit verify --head HASH` checks that a later chain passes through it)",
            err=True,
        )


def _write_events(database: Any, handle: IO[str]) -> tuple[int, int, str]:
    """Every event as one JSON line: how many, and the seq and hash of the last one."""
    from jitgate.adapters.db.uow import SqlUnitOfWork

    count, seq, head = 0, 0, GENESIS
    try:
        with SqlUnitOfWork(database, write=False) as uow:
            for record in uow.audit.iterate():
                handle.write(
                    json.dumps(record.as_dict(), sort_keys=True, ensure_ascii=False) + "\n"
                )
                count, seq, head = count + 1, record.seq, record.hash
    except BadData as exc:
        fail(
            f"cannot export: the event at seq {exc.seq} is damaged ({exc.problem}); "
            "`jitgate audit verify` checks the whole chain"
        )
    return count, seq, head


def _hash_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise click.BadParameter("must be an event's hash: 64 hexadecimal digits")
    return value


@audit.command()
@click.argument(
    "path", required=False, type=click.Path(exists=True, dir_okay=False, allow_dash=True)
)
@click.option(
    "--head",
    "checkpoint",
    default=None,
    metavar="HASH",
    callback=_hash_option,
    help="A checkpoint kept elsewhere: the hash `audit export` ended at, or the head GET "
    "/v1/audit/verify gave. The chain must pass through it; events after it are fine.",
)
@click.option(
    "--at-end",
    is_flag=True,
    help="With --head: the chain must also end at HASH (an export held to the head kept "
    "when it was made: events cut off its end are found).",
)
@db_option
@friendly
def verify(path: str | None, checkpoint: str | None, at_end: bool, db_url: str) -> None:
    """Check the hash chain of an export (PATH, - for stdin) or of the database; exit 1 if
    broken, if PATH is not an export, or if the chain misses the checkpoint (--head).

    A chain proves that nothing inside it was changed, removed or reordered; only a
    checkpoint kept elsewhere (--head) proves that what came before it was not rewritten
    or cut off."""
    from jitgate.adapters.db.uow import SqlUnitOfWork
    from jitgate.domain.audit import verify_chain

    if at_end and checkpoint is None:
        raise click.UsageError("--at-end needs --head HASH")
    if path:
        name = "<stdin>" if path == "-" else path
        try:
            with _open_export(path) as handle:
                check = verify_chain(read_export(handle), checkpoint)
        except NotAnExport as exc:
            fail(f"{name} is not a valid audit export: line {exc.line}: {exc.problem}")
        except OSError as exc:
            cannot("read", name, exc)
    else:
        with opened(db_url) as database, SqlUnitOfWork(database, write=False) as uow:
            check = uow.audit.verify(checkpoint)
    if not check.ok:
        click.echo(
            f"BROKEN at seq {check.broken_at}: {check.problem} "
            f"({check.events} events verified before it)",
            err=True,
        )
        raise SystemExit(1)
    empty = " (the export holds no events)" if path and not check.events else ""
    click.echo(f"ok: {check.events} events{_against(check, checkpoint, at_end)}{empty}")


def _against(check: ChainCheck, checkpoint: str | None, at_end: bool) -> str:
    """How an intact chain stands to the checkpoint, for the ok line; exit 1 if it misses."""
    where = check.checkpoint_seq
    if checkpoint is None:
        return f", head {check.head}"
    if where is None:
        fail(
            f"the chain is intact ({check.events} events, head {check.head}) but no event in "
            f"it has the hash {checkpoint}: it was rewritten, or cut before that checkpoint"
        )
    after = check.events - where
    if at_end and after:
        fail(
            f"the chain passes through the checkpoint at seq {where} but does not end there: "
            f"{after} events follow it (--at-end)"
        )
    follow = "it ends there" if not after else f"{after} events follow it"
    return f"; passes through the checkpoint at seq {where} ({follow}), head {check.head}"


class NotAnExport(Exception):
    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line, self.problem = line, problem


_FIELDS = (*CHAINED_FIELDS, "prev_hash", "hash")
_STRINGS = ("id", "at", "type", "actor", "prev_hash", "hash")
_KINDS = {list: "a JSON list", str: "a JSON string", bool: "true or false", type(None): "null"}


def _open_export(path: str) -> IO[bytes]:
    # closing stdin's buffer at the end of the command is harmless
    return sys.stdin.buffer if path == "-" else open(path, "rb")


def read_export(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The events of a JSON Lines export, in file order; blank lines are skipped. A line
    that is not JSON, has a key twice (anywhere: the plain parser would keep the last one,
    hiding the other), or is not an event object, raises ``NotAnExport`` with its number."""
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise NotAnExport(number, "not UTF-8") from None
        if not text.strip():
            continue
        try:
            record = strict_loads(text)
        except DuplicateKey as exc:
            raise NotAnExport(number, str(exc)) from None
        except json.JSONDecodeError as exc:
            raise NotAnExport(number, f"not JSON ({exc.msg}, column {exc.colno})") from None
        except (ValueError, RecursionError):
            raise NotAnExport(number, "not JSON that can be read") from None
        problem = _event_problem(record)
        if problem:
            raise NotAnExport(number, problem)
        yield record


def _event_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        kind = _KINDS.get(type(record), "a JSON number")
        return f"not an audit event ({kind})"
    missing = [f for f in _FIELDS if f not in record]
    if missing:
        return f"missing {', '.join(missing)}"
    extra = sorted(f for f in record if f not in _FIELDS)
    if extra:
        return f"fields no event has: {', '.join(extra)}"
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
