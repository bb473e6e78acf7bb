"""API tokens: random, shown once, stored only as a SHA-256 hash; listed and revoked by id,
and optionally ending by themselves (``expires_in``).

A token has 256 bits of entropy, so a fast hash is enough: there is nothing to brute-force.
Creating and revoking a token are audited (``token.created``, ``token.revoked``) with the
token's id, never the token: who could act as a person or a gateway, and since when, is
part of the evidence.

A token's principal is named as requests and approvals name people: a person by their email
in its normal form (``domain.approval.normal_email``), a gateway by its name without blanks
around it; a name holding whitespace, a control, an invisible format character (a
zero-width space, a bidi override) or a separator is refused, as it would name nobody.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from dataclasses import replace
from datetime import timedelta

from jitgate.domain.approval import normal_email
from jitgate.domain.errors import Invalid, NotFound
from jitgate.domain.events import DomainEvent
from jitgate.service.context import Context
from jitgate.service.ports import Principal, TokenInfo, Tokens

PREFIX = "jg_"
MIN_ID = 8
_HEX = re.compile(r"[0-9a-f]+")
MAX_NAME = 320
_UNSEEN = ("C", "Z")  # Unicode categories Cc, Cf, Cs, Co, Cn and Zs, Zl, Zp


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    ctx: Context,
    *,
    principal: Principal,
    actor: str = "system",
    via: str = "cli",
    expires_in: timedelta | None = None,
) -> str:
    """A new token for ``principal``, shown only here; it stops working ``expires_in``
    from now (``None``: when revoked)."""
    if expires_in is not None and expires_in <= timedelta(0):
        raise Invalid("a token's lifetime must be positive")
    principal = checked_principal(principal)
    token = PREFIX + secrets.token_urlsafe(32)
    digest = hash_token(token)
    now = ctx.clock.now()
    expires_at = None if expires_in is None else now + expires_in
    with ctx.uow() as uow:
        uow.tokens.add(digest, principal, now, expires_at)
        info = TokenInfo(digest, principal, now, None, expires_at)
        ctx.publish(uow, [_event("token.created", info, actor, via)], None, now)
        uow.commit()
    return token


def normal_principal(principal: Principal) -> Principal:
    """``principal`` named in its normal form: a person's email as requests store it."""
    if principal.kind == "user":
        return Principal("user", normal_email(principal.subject))
    return Principal(principal.kind, principal.subject.strip())


def checked_principal(principal: Principal) -> Principal:
    """``normal_principal(principal)``, or ``Invalid`` for a name that names nobody: empty,
    too long, holding whitespace, a control, format or separator character, or (a person)
    not an email address."""
    normal = normal_principal(principal)
    name = normal.subject
    what = "an email" if normal.kind == "user" else "a service name"
    if not name or len(name) > MAX_NAME:
        raise Invalid(f"{what} must have 1 to {MAX_NAME} characters")
    bad = next((c for c in name if c.isspace() or unicodedata.category(c)[0] in _UNSEEN), None)
    if bad is not None:
        code = f"U+{ord(bad):04X} {unicodedata.name(bad, '')}".rstrip()
        raise Invalid(f"{what} must not hold whitespace or invisible characters ({code})")
    local, at, domain = name.partition("@")
    if normal.kind == "user" and not (local and at and domain and "@" not in domain):
        raise Invalid(f"{name!r} is not an email address")
    return normal


def authenticate(ctx: Context, *, token: str) -> TokenInfo | None:
    """The stored token ``token`` if it works now (not revoked, not expired), naming its
    principal in the normal form (a name stored by an older release, `` Jane@X.com``,
    is the person requests know as ``jane@x.com``)."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    with ctx.uow(write=False, snapshot=False) as uow:
        found = uow.tokens.find(hash_token(token), ctx.clock.now())
    return None if found is None else replace(found, principal=normal_principal(found.principal))


def revocations(ctx: Context) -> int:
    """How many tokens were ever revoked, a number that changes on every revocation: the
    API's token cache is dropped when it does (``entrypoints.api.auth.watch_revocations``)."""
    with ctx.uow(write=False, snapshot=False) as uow:
        return uow.tokens.revoked_count()


def list_tokens(ctx: Context, *, include_ended: bool = False) -> list[TokenInfo]:
    """The tokens that work now; with ``include_ended``, the revoked and expired ones too."""
    working_at = None if include_ended else ctx.clock.now()
    with ctx.uow(write=False) as uow:
        return uow.tokens.infos(working_at=working_at)


def revoke_tokens(
    ctx: Context, *, which: str | Principal, actor: str = "system", via: str = "cli"
) -> list[tuple[TokenInfo, bool]]:
    """Revoke the token named by ``which``: its id (at least ``MIN_ID`` hex digits of it),
    the token itself, or every token of a principal. Answers each token named and whether
    this call revoked it (``False``: it was revoked before). Raises ``NotFound`` when
    nothing matches and ``Invalid`` for an id that is malformed or names several tokens."""
    now = ctx.clock.now()
    with ctx.uow() as uow:
        found = _named(uow.tokens, which)
        live = [info for info in found if info.revoked_at is None]
        if live:
            uow.tokens.revoke([info.token_hash for info in live], now)
            events = [_event("token.revoked", info, actor, via) for info in live]
            ctx.publish(uow, events, None, now)
        uow.commit()
    return [
        (replace(info, revoked_at=now), True) if info.revoked_at is None else (info, False)
        for info in found
    ]


def _named(tokens: Tokens, which: str | Principal) -> list[TokenInfo]:
    if isinstance(which, Principal):
        which = normal_principal(which)
        found = tokens.infos(principal=which)
        if not found:
            raise NotFound(f"no token belongs to {which.kind} {which.subject}")
        return found
    if which.startswith(PREFIX):
        found = tokens.infos(hash_prefix=hash_token(which))
        if not found:
            raise NotFound("no such token (it was never created here)")
        return found
    prefix = which.strip().lower()
    if len(prefix) < MIN_ID or not _HEX.fullmatch(prefix):
        raise Invalid(
            f"{which!r} is not a token id: give the id `jitgate token ls` shows "
            f"(at least {MIN_ID} hex digits) or the token itself"
        )
    found = tokens.infos(hash_prefix=prefix)
    if not found:
        raise NotFound(f"no token has the id {prefix}")
    if len(found) > 1:
        raise Invalid(f"the id {prefix} names {len(found)} tokens; give more of its digits")
    return found


def _event(kind: str, info: TokenInfo, actor: str, via: str) -> DomainEvent:
    data = {
        "token": info.id,
        "kind": info.principal.kind,
        "subject": info.principal.subject,
        "via": via,
    }
    if kind == "token.created" and info.expires_at is not None:
        data["expires_at"] = info.expires_at.isoformat()
    return DomainEvent(kind, actor, None, data)
