"""The gateways' hot path, ``POST /v1/authorize``, answered in front of the framework.

Gateways ask on every connection they let through, so this call's latency is felt by
every SSH login and every database connection. A call whose service token is in the
token cache (checked against the database in the last seconds), with no query string and
a small JSON body that ``AuthorizeBody`` accepts, is answered here by
``routes_service.answer``, the function the route itself uses. Everything else goes on to
the app unchanged, the body read so far handed on with it: no or unknown token, a person's
token, a body that is not JSON by its Content-Type (``problems.is_json``, the route's own
test), a bad or large body, a domain error (an unknown resource). The route
``routes_service.authorize`` stays the endpoint's definition (OpenAPI, every error answer);
this skips only the framework's routing, request object, middleware and exception layers,
which cost more than the answer itself (``bench/README.md``, fifth round). So FastAPI's
own OpenTelemetry spans, when a tracer is configured, cover only the calls the route
answers.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jitgate.bootstrap import App
from jitgate.entrypoints.api.auth import TokenCache, bearer, cached
from jitgate.entrypoints.api.problems import is_json
from jitgate.entrypoints.api.routes_service import answer
from jitgate.entrypoints.api.schemas import AuthorizeBody

PATH = "/v1/authorize"
SMALL_BODY = 4096  # an authorize body is about 100 bytes; larger ones take the route
JSON = b"application/json"
HEADERS = [(b"content-type", JSON)]


class AuthorizeFastPath:
    """``takes`` a scope, then answers it, or hands it on to ``framework``: the app."""

    def __init__(self, framework: ASGIApp, jitgate: App, cache: TokenCache) -> None:
        self.framework, self.jitgate, self.cache = framework, jitgate, cache

    def takes(self, scope: Scope) -> bool:
        """``POST /v1/authorize``, no query, a small body announced by its length (so the
        URL and size limits of ``RequestLimits`` hold), and a service token in the cache."""
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            return False
        if scope.get("query_string"):
            return False
        # the first of a repeated header, as the route reads it (``request.headers.get``)
        headers = {name.lower(): value for name, value in reversed(scope["headers"])}
        length = headers.get(b"content-length", b"")
        if not length.isdigit() or int(length) > SMALL_BODY:
            return False
        media = headers.get(b"content-type", b"")
        if media != JSON and not is_json(media.decode("latin-1")):
            return False  # the route's 415 (or its 422, for an empty body)
        token = bearer(headers.get(b"authorization", b"").decode("latin-1"))
        now = time.monotonic()
        who = cached(self.cache, token, now, self.jitgate.ctx.clock.now) if token else None
        return who is not None and who.kind == "service"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        read: list[Message] = []
        body = await _body(receive, read)
        try:
            out = None if body is None else await answer(self.jitgate, _parse(body))
        except Exception:
            # a bad body, an unknown resource, a database error: the app answers each its
            # own way (problem+json, logged); authorize only reads, so asking again is safe
            out = None
        if out is None:
            await self.framework(scope, _replay(read, receive), send)
            return
        length = (b"content-length", str(len(out)).encode())
        await send({"type": "http.response.start", "status": 200, "headers": [*HEADERS, length]})
        await send({"type": "http.response.body", "body": out})


def _parse(body: bytes) -> AuthorizeBody:
    return AuthorizeBody.model_validate_json(body)


async def _body(receive: Receive, read: list[Message]) -> bytes | None:
    """The whole body, each message kept in ``read``; ``None`` if the client went away."""
    chunks = []
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(read: list[Message], receive: Receive) -> Receive:
    pending = list(read)

    async def replayed() -> Any:
        return pending.pop(0) if pending else await receive()

    return replayed
