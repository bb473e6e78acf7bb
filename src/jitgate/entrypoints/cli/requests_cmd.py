"""The people's commands: request, approve, deny, revoke, extend, ls, show, evidence.

``show``, ``request``, ``approve`` and ``revoke`` also say where each backend of the grant
stands (``GET /v1/requests/{id}/backends``): applied, pending retry with the last error,
removed, removal pending; a backend that failed is a ``note:`` on stderr too, so a
request that stays ``approved`` is never silent about why. ``--json`` adds ``backends``.

What the server says (a requester's reason, a comment, role and people's names) is shown
``line_safe``: a reason can never fake a line of ``show`` or move an approver's cursor.
A request id goes into a URL only as one encoded segment, and only if it looks like an id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from jitgate.domain.durations import format_duration, parse_duration
from jitgate.domain.states import State
from jitgate.entrypoints.cli.client import Api, an_id, segment, with_api
from jitgate.entrypoints.cli.common import (
    cannot,
    emit_json,
    fail,
    line_safe,
    more_follow,
    table,
)

json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
quiet_flag = click.option("-q", "--quiet", is_flag=True, help="Print only the request id.")


def _duration(value: str) -> str:
    try:
        parse_duration(value)
    except ValueError as exc:
        fail(str(exc))
    return value


def _short(when: str | None) -> str:
    if not when:
        return "-"
    try:
        return datetime.fromisoformat(when).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except ValueError:
        return line_safe(when)


def show_request(
    r: dict[str, Any], as_json: bool, backends: list[dict[str, Any]] | None = None
) -> None:
    if as_json:
        emit_json(r if backends is None else {**r, "backends": backends})
        return
    dur = format_duration(_seconds(r["duration_seconds"]))
    lines = [
        f"request   {line_safe(r['id'])}",
        f"state     {line_safe(r['state'])}",
        f"requester {line_safe(r['requester'])}",
        f"roles     {_listed(r['roles'])}",
        f"resources {_listed(r['resources']) or '-'}",
        f"duration  {dur}   urgency {line_safe(r['urgency'])}   "
        f"purpose {line_safe(r['purpose'] or '-')}",
        f"reason    {line_safe(r['reason'])}",
        f"window    {_short(r['starts_at'])} -> {_short(r['ends_at'])}",
    ]
    if r.get("extends"):
        lines.append(f"extends   {line_safe(r['extends'])}")
    click.echo("\n".join(lines))
    rows = [[_spec(q["spec"]), q["satisfied_by"] or "(waiting)"] for q in r["requirements"]]
    click.echo("\n" + table(rows, ["requirement", "satisfied by"]))
    if r["state"] == "pending":
        click.echo("\ncan approve now: " + (_listed(r["eligible_approvers"]) or "nobody"))
    elif backends:
        _show_backends(r, backends)


def _backends_of(api: Api, request: dict[str, Any]) -> list[dict[str, Any]]:
    """Where the grant stands on each backend (whoever may see the request may see this)."""
    found = api.get(f"/v1/requests/{segment(request['id'])}/backends")
    return [b for b in found if isinstance(b, dict)] if isinstance(found, list) else []


def _show_request_and_backends(api: Api, r: dict[str, Any], as_json: bool) -> None:
    show_request(r, as_json, _backends_of(api, r))


#: What a backend row's ``status`` means for the grant, in people's words.
_ENFORCEMENT = {
    "pending": "not applied yet",
    "applying": "applying",
    "applied": "applied",
    "failed": "pending retry",
    "removing": "removal pending",
    "removed": "removed",
}


def _enforcement(b: dict[str, Any], state: str) -> tuple[str, str]:
    """``(status, detail)`` of one backend row, the detail with the last (sanitised) error."""
    status = str(b.get("status"))
    said = _ENFORCEMENT.get(status, status)
    if status == "pending" and state in _CLOSED:
        return "never applied", "-"
    if status == "applied":
        return said, f"since {_short(b.get('applied_at'))}"
    if status == "removed":
        kept = f", kept for request {b['covered_by']}" if b.get("covered_by") else ""
        return said, f"at {_short(b.get('removed_at'))}{kept}"
    parts = []
    if b.get("attempts"):
        parts.append(f"attempt {b['attempts']}, next {_short(b.get('next_attempt_at'))}")
    if b.get("last_error"):
        parts.append(f"last error: {b['last_error']}")
    return said, "; ".join(parts) or "-"


_CLOSED = frozenset({"denied", "expired", "revoked"})


def _show_backends(r: dict[str, Any], backends: list[dict[str, Any]]) -> None:
    rows = [[b.get("backend"), b.get("type"), *_enforcement(b, r["state"])] for b in backends]
    click.echo("\n" + table(rows, ["backend", "type", "enforcement", "detail"]))
    for b in backends:
        if b.get("status") in ("failed", "removing") and b.get("last_error"):
            doing = "applied the grant" if b["status"] == "failed" else "removed the grant"
            click.echo(
                f"note: backend {line_safe(b.get('backend'))} has not {doing} yet: "
                f"{line_safe(b['last_error'])}; jitgate retries",
                err=True,
            )


def _listed(values: list[Any], sep: str = ", ") -> str:
    return sep.join(line_safe(v) for v in values)


def _spec(spec: dict[str, Any]) -> str:
    if "any" in spec:
        return "any of " + " | ".join(_spec(s) for s in spec["any"])
    return ", ".join(k if v is True else f"{k}:{v}" for k, v in spec.items())


def _seconds(value: int) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)


@click.command("request")
@click.argument("roles", nargs=-1, required=True)
@click.option(
    "--for",
    "duration",
    default=None,
    metavar="DURATION",
    help="How long: 30m, 2h, 1h30m, PT2H. Optional: by default the purpose's default, "
    "else the roles' (shortest) default_duration.",
)
@click.option("--reason", required=True, help="Why (e.g. INC-12345).")
@click.option("--resource", "resources", multiple=True, help="Limit to a resource (repeatable).")
@click.option("--urgency", type=click.Choice(["low", "normal", "high"]), default="normal")
@click.option("--purpose", default=None, help="incident-response, debugging, maintenance…")
@click.option("--start-at", default=None, help="Scheduled start, ISO 8601 with zone.")
@click.option("--cap", is_flag=True, help="Accept the maximum if --for is over it.")
@json_flag
@quiet_flag
@with_api
def request_cmd(
    api: Api,
    roles: tuple[str, ...],
    duration: str | None,
    reason: str,
    resources: tuple[str, ...],
    urgency: str,
    purpose: str | None,
    start_at: str | None,
    cap: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Ask for ROLES for a while, with a reason.

    Without --for the policy's default applies; a duration over the maximum is refused
    unless --cap accepts the maximum instead."""
    body: dict[str, Any] = {
        "roles": list(roles),
        "reason": reason,
        "urgency": urgency,
        "resources": list(resources),
        "cap": cap,
    }
    for key, value in (
        ("duration", duration and _duration(duration)),
        ("purpose", purpose),
        ("start_at", start_at),
    ):
        if value:
            body[key] = value
    created = api.post("/v1/requests", body)
    if quiet:
        click.echo(line_safe(created["id"]))
    else:
        _show_request_and_backends(api, created, as_json)


@click.command()
@click.argument("request_id", callback=an_id)
@click.option("--comment", default=None)
@json_flag
@with_api
def approve(api: Api, request_id: str, comment: str | None, as_json: bool) -> None:
    """Approve REQUEST_ID."""
    approved = api.post(f"/v1/requests/{segment(request_id)}/approve", {"comment": comment})
    _show_request_and_backends(api, approved, as_json)


@click.command()
@click.argument("request_id", callback=an_id)
@click.option("--reason", required=True)
@json_flag
@with_api
def deny(api: Api, request_id: str, reason: str, as_json: bool) -> None:
    """Deny REQUEST_ID (a reason is required)."""
    show_request(api.post(f"/v1/requests/{segment(request_id)}/deny", {"reason": reason}), as_json)


@click.command()
@click.argument("request_id", callback=an_id)
@click.option("--reason", required=True)
@json_flag
@with_api
def revoke(api: Api, request_id: str, reason: str, as_json: bool) -> None:
    """Revoke a grant early, or withdraw a pending request."""
    revoked = api.post(f"/v1/requests/{segment(request_id)}/revoke", {"reason": reason})
    _show_request_and_backends(api, revoked, as_json)


@click.command()
@click.argument("request_id", callback=an_id)
@click.option("--for", "duration", required=True, help="How much longer.")
@click.option("--reason", required=True)
@json_flag
@quiet_flag
@with_api
def extend(
    api: Api, request_id: str, duration: str, reason: str, as_json: bool, quiet: bool
) -> None:
    """Ask to extend a live grant: a new request that goes through approval."""
    body = {"duration": _duration(duration), "reason": reason}
    created = api.post(f"/v1/requests/{segment(request_id)}/extend", body)
    granted = _seconds(created["duration_seconds"])
    if granted < parse_duration(duration):
        # the role's maximum counts from the original's start (SPEC §3); say so, not silently
        click.echo(
            f"note: asked {duration}, extended by {format_duration(granted)}: "
            "the role's maximum in total",
            err=True,
        )
    click.echo(line_safe(created["id"])) if quiet else show_request(created, as_json)


@click.command()
@click.argument("request_id", callback=an_id)
@json_flag
@with_api
def show(api: Api, request_id: str, as_json: bool) -> None:
    """Show one request, and where its grant stands on each backend."""
    _show_request_and_backends(api, api.get(f"/v1/requests/{segment(request_id)}"), as_json)


_LS_PAGE = 50


@click.command("ls")
@click.option("--state", type=click.Choice([s.value for s in State]), default=None)
@click.option(
    "--requester",
    default=None,
    help="Someone else's: admins see all of them, others those they may decide or decided.",
)
@click.option("--to-approve", is_flag=True, help="Pending requests you may decide.")
@click.option("--limit", default=_LS_PAGE, show_default=True, type=click.IntRange(1, 500))
@click.option(
    "--cursor",
    default=None,
    metavar="CURSOR",
    help="Start after the page that gave CURSOR: the next page (the line after the table, "
    "or next_cursor in --json, gives it).",
)
@json_flag
@with_api
def ls(
    api: Api,
    state: str | None,
    requester: str | None,
    to_approve: bool,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List requests, newest first, one page of --limit at a time; when more follow, the
    table is followed (on stderr) by the command that shows the next page."""
    if to_approve and state not in (None, "pending"):
        fail("--to-approve lists pending requests only; leave out --state")
    params: dict[str, Any] = {"limit": limit}
    for key, value in (
        # approver=me alone also lists the ones already decided
        ("state", "pending" if to_approve else state),
        ("requester", requester),
        ("approver", "me" if to_approve else None),
        ("cursor", cursor),
    ):
        if value:
            params[key] = value
    page = api.get("/v1/requests", params=params)
    if as_json:
        emit_json(page)
        return
    rows = [
        [
            r["id"],
            r["state"],
            r["requester"],
            _listed(r["roles"], ","),
            format_duration(_seconds(r["duration_seconds"])),
            _short(r["ends_at"]),
            r["reason"][:40],
        ]
        for r in page["items"]
    ]
    click.echo(table(rows, ["id", "state", "requester", "roles", "for", "ends", "reason"]))
    if page.get("next_cursor"):
        given = {"state": state, "requester": requester, "to_approve": to_approve}
        paged = {**given, "limit": str(limit) if limit != _LS_PAGE else None}
        more_follow("requests", ["jitgate", "ls"], paged, str(page["next_cursor"]))


@click.command()
@click.argument("request_id", callback=an_id)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None)
@with_api
def evidence(api: Api, request_id: str, out: str | None) -> None:
    """Compliance evidence of REQUEST_ID as JSON (RFC 10.6.3)."""
    import json

    body = json.dumps(
        api.get(f"/v1/requests/{segment(request_id)}/evidence"), indent=2, sort_keys=True
    )
    if out:
        try:
            with open(out, "w", encoding="utf-8") as handle:
                handle.write(body + "\n")
        except OSError as exc:
            cannot("write", out, exc)
        click.echo(f"evidence written to {out}", err=True)
    else:
        click.echo(body)
