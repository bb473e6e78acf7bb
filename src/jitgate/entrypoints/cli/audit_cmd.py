"""``jitgate audit``: list events from the server; ``export`` and ``verify`` work offline."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from jitgate.entrypoints.cli.client import Api, server_options
from jitgate.entrypoints.cli.common import db_option, emit_json, friendly, opened, table


@click.group(invoke_without_command=True)
@click.option("--since", default=None, help="ISO time with zone.")
@click.option("--type", "type_", default=None, help="Event type, e.g. request.approved.")
@click.option("--actor", default=None)
@click.option("--request-id", default=None)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True)
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
    token: str,
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


# ``audit`` needs --token only for listing; its offline subcommands must not ask for it.
for param in audit.params:
    if param.name == "token":
        param.required = False


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
    from jitgate.adapters.db.uow import SqlUnitOfWork

    handle = sys.stdout if out == "-" else open(out, "w", encoding="utf-8")  # noqa: SIM115
    count = 0
    try:
        with opened(db_url) as database, SqlUnitOfWork(database, write=False) as uow:
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
@click.argument("path", required=False, type=click.Path(exists=True, dir_okay=False))
@db_option
@friendly
def verify(path: str | None, db_url: str) -> None:
    """Check the hash chain of an export (PATH) or of the database; exit 1 if broken."""
    from jitgate.adapters.db.uow import SqlUnitOfWork
    from jitgate.domain.audit import verify_chain

    if path:
        with open(path, encoding="utf-8") as handle:
            check = verify_chain(json.loads(line) for line in handle if line.strip())
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
    click.echo(f"ok: {check.events} events, head {check.head}")
