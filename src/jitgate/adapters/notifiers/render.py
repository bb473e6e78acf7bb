"""Wording and escaping shared by the notifiers.

Invariants: every user-supplied string (reason, purpose, names, a deny reason) passes through
the escaper of its channel before it is placed in a message, so ``<!channel>``,
``<https://evil|Approve>``, ``@here``, HTML, Markdown links and CR/LF render as inert text;
every escaper starts from ``plain``, so no channel carries a C0 or C1 control character, a
bidi embedding, override or isolate (U+202A-U+202E, U+2066-U+2069) or a run of blank lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from jitgate.service.notifications import Message

# C0 but tab and newline, DEL, C1, bidi marks, embeddings, overrides and isolates, separators
_CONTROL = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n)+")  # a line break and the blank lines after it
_LINE_BREAKS = re.compile(r"[\t\n]+")
_MENTION = re.compile(r"@(here|channel|everyone)\b", re.IGNORECASE)
_MARKDOWN = re.compile(r"([\\`*_\[\]()~])")  # syntax anywhere in a line
_LINE_START = re.compile(r"^(\s*)([-+#]|\d+(?=\.))", re.MULTILINE)  # lists and headings
ZWSP = "\u200b"

TITLES = {
    "request.created": "🔐 Access request",
    "request.urgent": "🚨 Urgent access request",
    "request.escalated": "⏫ Access request escalated",
    "request.rules_updated": "🔐 Access request, now yours to decide",
    "request.approved": "✅ Access request approved",
    "request.denied": "⛔ Access request denied",
    "request.expired": "⌛ Access request expired",
    "request.revoked": "↩️ Access request withdrawn",
    "access.expiring": "⏳ Access expiring soon",
}


def plain(text: str | None) -> str:
    """Text without control or bidi characters (newlines and tabs stay; CR becomes a
    newline); a run of blank lines becomes one, and there are none at either end."""
    lines = _CONTROL.sub("", (text or "").replace("\r\n", "\n").replace("\r", "\n"))
    return _BLANK_LINES.sub("\n\n", lines).strip("\n")


def one_line(text: str | None, limit: int = 200) -> str:
    """Safe for a header or a title: ``plain`` text on one line (tabs and newlines become a
    space), bounded."""
    flat = _LINE_BREAKS.sub(" ", plain(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def quoted(text: str | None) -> str:
    """``plain`` text with each line marked ``> `` (an empty one ``>``), as mail quotes: what
    someone wrote stays visibly apart from jitgate's own lines around it."""
    return "\n".join(f"> {line}".rstrip() for line in plain(text).split("\n"))


def slack_escape(text: str | None) -> str:
    """Slack mrkdwn: escape ``&``, ``<``, ``>`` and defuse @here/@channel/@everyone."""
    escaped = plain(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION.sub(lambda m: "@" + ZWSP + m.group(1), escaped)


def teams_escape(text: str | None) -> str:
    """Adaptive Card Markdown: entities for ``&<>`` and a backslash before Markdown syntax
    (emphasis, links and code anywhere; list and heading marks at the start of a line)."""
    escaped = plain(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = _MARKDOWN.sub(r"\\\1", escaped)
    escaped = _LINE_START.sub(_defuse_line_start, escaped)
    return _MENTION.sub(lambda m: "@" + ZWSP + m.group(1), escaped)


def _defuse_line_start(match: re.Match[str]) -> str:
    """``- a``, ``+ a``, ``# a`` -> a backslash before the mark; ``1. a`` -> ``1\\. a``:
    only where they would start a list or a heading (``jane.doe@example.com`` stays)."""
    space, mark = match.group(1), match.group(2)
    return f"{space}{mark}\\" if mark[0].isdigit() else f"{space}\\{mark}"


def clipped(text: str | None, limit: int, escape: Callable[[str | None], str]) -> str:
    """``escape(text)`` cut to ``limit`` characters without breaking an escape sequence:
    the longest start of the text whose escaped form, with "…", fits (a binary search, as
    escaping may lengthen some characters several times)."""
    raw = plain(text)
    out = escape(raw)
    if len(out) <= limit:
        return out
    fits, over = 0, len(raw)  # escape(raw[:fits] + "…") fits; raw[:over] does not
    while over - fits > 1:
        middle = (fits + over) // 2
        if len(escape(raw[:middle] + "…")) <= limit:
            fits = middle
        else:
            over = middle
    return escape(raw[:fits] + "…")


def human_duration(seconds: int) -> str:
    """``7200`` -> ``2 hours``; ``5400`` -> ``1 hour 30 minutes``."""
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
    return " ".join(parts[:2]) or "0 seconds"


def when(iso: str | None) -> str:
    """``2026-03-03T09:00:00+00:00`` -> ``2026-03-03 09:00 UTC`` (in UTC, whatever its zone)."""
    if not iso:
        return "—"
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def title(message: Message) -> str:
    if message.action == "resolve":
        text = "Access request settled"
    else:
        text = TITLES.get(message.event, "Access request update")
    if message.request.extends:  # "Access extension request approved", ...
        text = text.replace("ccess request", "ccess extension request", 1)
    return text


def facts(message: Message) -> list[tuple[str, str]]:
    """(label, raw value) pairs every channel shows; values are NOT escaped here."""
    r = message.request
    rows = [
        ("User", r.requester),
        ("Requesting", ", ".join(r.roles) + (" role" if len(r.roles) == 1 else " roles")),
    ]
    if r.extends:  # an extension: what it adds to, not a new grant
        rows.append(("Extends", f"request {r.extends}"))
    rows += [
        ("Resources", ", ".join(r.resources) or "everything the roles grant"),
        ("Duration", human_duration(r.duration_seconds)),
    ]
    if r.start_at:  # a scheduled request: access from then, not from the approval
        rows.append(("Starts", when(r.start_at)))
    rows.append(("Urgency", r.urgency))
    if r.purpose:
        rows.append(("Purpose", r.purpose))
    rows.append(("Request", r.id))
    outcome = outcome_line(message)
    if outcome:
        rows.append(("Outcome", outcome))
    return rows


def outcome_line(message: Message) -> str | None:
    r = message.request
    event = message.event
    if event == "request.approved":
        by = ", ".join(r.approved_by or (message.actor,))
        return f"approved by {by}; access {when(r.starts_at)} to {when(r.ends_at)}"
    if event == "request.denied":
        return f"denied by {message.actor}: {message.detail or ''}".rstrip(": ")
    if event == "request.expired":
        return "expired with no decision"
    if event == "access.expiring":
        return f"access ends at {when(message.detail or r.ends_at)}"
    if event == "request.revoked":
        return f"withdrawn by {message.actor}"
    if message.asks_decision and message.approvers:
        return "can be decided by " + ", ".join(message.approvers[:10])
    return None


def summary(message: Message) -> str:
    """One line: what happened to which request (raw text; escape for the channel)."""
    r = message.request
    asks, span = ("asks to extend", "by") if r.extends else ("asks for", "for")
    return one_line(
        f"{title(message)}: {r.requester} {asks} {', '.join(r.roles)} {span} "
        f"{human_duration(r.duration_seconds)} (request {r.id})",
        300,
    )
