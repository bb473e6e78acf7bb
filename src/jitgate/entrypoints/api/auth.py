"""Bearer-token authentication. A user token cannot call service endpoints and vice versa.

Tokens are looked up by hash; a short in-process cache (seconds) keeps the hot path
(``/v1/authorize``) off the database for the token, never for the grant. The dependencies
are ``async`` so that a cache hit costs no hop to the thread pool.

A revocation reaches the cache within about ``WATCH_SECONDS``, from whichever process made
it (``jitgate token revoke``, another replica): ``watch_revocations`` counts the revoked
tokens every so often and drops the whole cache when the count moved. Revocations are
rare, so the cost is a few lookups after each. Should the count be unreadable, entries
still end after ``CACHE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, NamedTuple

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from jitgate.bootstrap import App
from jitgate.service.ports import Principal
from jitgate.service.tokens import authenticate, revocations

log = logging.getLogger("jitgate.api")
CACHE_SECONDS = 10.0
WATCH_SECONDS = 1.0
CACHE_MAX = 10_000
CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def get_app(request: Request) -> App:
    app: App = request.app.state.jitgate
    return app


class Checked(NamedTuple):
    """A token checked against the database: whose it is, until when (``time.monotonic``)
    the check holds, and when the token itself expires (``None``: never)."""

    principal: Principal
    until: float
    expires_at: datetime | None


TokenCache = dict[str, Checked]


def bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header; ``None`` for anything else."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def cached(
    cache: TokenCache, token: str, now: float, wall: Callable[[], datetime]
) -> Principal | None:
    """The principal of ``token`` if it was checked against the database in the last
    ``CACHE_SECONDS`` and has not expired since (by ``wall``, the app's clock)."""
    hit = cache.get(token)
    if hit is None or hit.until <= now:
        return None
    if hit.expires_at is not None and wall() >= hit.expires_at:
        return None
    return hit.principal


async def watch_revocations(app: App, cache: TokenCache, every: float = WATCH_SECONDS) -> None:
    """Drop ``cache`` whenever the number of revoked tokens changes; runs until cancelled.
    While the count cannot be read (the database is away) the watch retries, and says so
    once; the cached entries still end after ``CACHE_SECONDS``."""
    seen: int | None = None
    failing = False
    while True:
        try:
            count = await run_in_threadpool(revocations, app.ctx)
        except Exception as exc:
            if not failing:
                log.warning("cannot read token revocations, retrying: %s", type(exc).__name__)
            failing = True
        else:
            if failing:
                log.warning("token revocations are read again")
            if seen is not None and count != seen:
                cache.clear()
            seen, failing = count, False
        await asyncio.sleep(every)


async def principal(request: Request) -> Principal:
    token = bearer(request.headers.get("authorization", ""))
    if token is None:
        raise HTTPException(401, "missing bearer token", headers=CHALLENGE)
    cache: TokenCache = request.app.state.token_cache
    now = time.monotonic()
    app: App = request.app.state.jitgate
    hit = cached(cache, token, now, app.ctx.clock.now)
    if hit is not None:
        return hit
    found = await run_in_threadpool(authenticate, app.ctx, token=token)
    if found is None:
        raise HTTPException(401, "invalid, expired or revoked token", headers=CHALLENGE)
    if len(cache) >= CACHE_MAX:
        cache.clear()
    cache[token] = Checked(found.principal, now + CACHE_SECONDS, found.expires_at)
    return found.principal


async def user(request: Request) -> str:
    # ``principal`` is called, not declared as a sub-dependency: each dependency level
    # costs FastAPI's resolver more than the token check itself on the hot path
    who = await principal(request)
    if who.kind != "user":
        raise HTTPException(403, "this endpoint takes a person's token, not a service token")
    return who.subject


async def service(request: Request) -> str:
    who = await principal(request)
    if who.kind != "service":
        raise HTTPException(403, "this endpoint takes a service token, not a person's token")
    return who.subject


async def gateway_app(request: Request) -> App:
    """``service`` and ``get_app`` in one call, for the gateways' hot path."""
    await service(request)
    app: App = request.app.state.jitgate
    return app


AppDep = Annotated[App, Depends(get_app)]
UserDep = Annotated[str, Depends(user)]
ServiceDep = Annotated[str, Depends(service)]
