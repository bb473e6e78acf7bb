"""The FastAPI app factory. Nothing is built at import time: ``create_app(app)`` does it."""

from __future__ import annotations

import asyncio
import copy
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager, suppress
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from jitgate import __version__
from jitgate.bootstrap import App
from jitgate.entrypoints.api import (
    problems,
    routes_admin,
    routes_backends,
    routes_integrations,
    routes_requests,
    routes_service,
)
from jitgate.entrypoints.api.auth import WATCH_SECONDS, watch_revocations
from jitgate.entrypoints.api.fastpath import AuthorizeFastPath
from jitgate.entrypoints.api.schemas import AuthorizeBody, Problem
from jitgate.entrypoints.web import routes as web_routes

MAX_BODY = 256 * 1024


class RequestLimits:
    """Refuse, before any route runs: a URL whose path or query carries a NUL character
    (``%00``: no id or filter holds one, and PostgreSQL cannot compare text with it) with
    400, and a body over ``MAX_BODY`` with 413: announced by its Content-Length before it
    is read, or sent in chunks, once more than that has arrived."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if b"%00" in scope.get("raw_path", b"") or b"%00" in scope.get("query_string", b""):
            response = problems.problem(400, "the URL holds a NUL character (%00)")
            await response(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        too_big = length is not None and (not length.isdigit() or int(length) > MAX_BODY)
        if too_big:
            response = problems.problem(413, f"request body is larger than {MAX_BODY} bytes")
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:  # a body without a Content-Length: refused while read
                raise HTTPException(413, f"request body is larger than {MAX_BODY} bytes")
            return message

        await self.app(scope, limited, send)


class Api(FastAPI):
    """The app, with the gateways' fast path (``fastpath``) in front of the framework."""

    fast: AuthorizeFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast is not None and self.fast.takes(scope):
            await self.fast(scope, receive, send)
        else:
            await self.framework(scope, receive, send)

    async def framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI itself: every call the fast path does not take, or hands back."""
        await super().__call__(scope, receive, send)


def create_app(app: App, *, token_watch_seconds: float = WATCH_SECONDS) -> FastAPI:
    """The API over ``app``; revoked tokens leave the token cache within about
    ``token_watch_seconds``."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(
            watch_revocations(app, api.state.token_cache, token_watch_seconds)
        )
        try:
            yield
        finally:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher
            if app.grant_reader is not None:
                await app.grant_reader.aclose()
            api.state.probe_pool.shutdown(wait=False, cancel_futures=True)

    api = Api(
        lifespan=lifespan,
        redirect_slashes=False,  # its redirect would name whatever Host the client sent
        title="jitgate",
        version=__version__,
        description="Just-in-time privileged access broker (RFC-PAM-0001 §10).",
    )
    api.state.jitgate = app
    api.state.token_cache = {}
    # the probes' own threads (no thread starts before a probe asks): see routes_admin
    api.state.probe_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="jitgate-probe")
    problems.install(api)
    # gateways' hot path first: routes are matched in order
    for module in (routes_service, routes_requests, routes_admin):
        api.include_router(module.router)
    api.include_router(routes_integrations.router)
    api.include_router(routes_backends.router)
    api.include_router(web_routes.router)
    _document(api)
    api.add_middleware(RequestLimits)
    api.fast = AuthorizeFastPath(api.framework, app, api.state.token_cache)
    return api


def _document(api: FastAPI) -> None:
    """The OpenAPI schema as FastAPI builds it from the routes, plus what the routes do not
    say: the problem schema, the bearer token, the answers every operation can give."""
    original = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema:
            return api.openapi_schema
        schema = original()
        components = schema.setdefault("components", {})
        models = components.setdefault("schemas", {})
        models["Problem"] = Problem.model_json_schema()
        models["AuthorizeBody"] = AuthorizeBody.model_json_schema()  # read by its route
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        components["responses"] = copy.deepcopy(SHARED_RESPONSES)
        schema["security"] = [{"bearer": []}]
        schema["info"]["description"] += SHARED_ANSWERS
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                _document_answers(path, operation)
        api.openapi_schema = schema
        return schema

    api.openapi = openapi  # type: ignore[method-assign]


def _document_answers(path: str, operation: dict[str, Any]) -> None:
    """The answers ``RequestLimits`` and the problem handlers give besides the route's own,
    on each operation where a call of its shape can get them. The probes take no token
    and give only their own answers."""
    responses = operation["responses"]
    if path in PROBES:
        operation["security"] = []
        operation["responses"] = {"200": responses["200"], **PROBES[path]}
        return
    if any(p.get("in") in ("path", "query") for p in operation.get("parameters", ())):
        responses["400"] = _shared("BadRequest")  # a NUL in a value
    if "requestBody" in operation:
        responses["413"] = _shared("PayloadTooLarge")
        responses["415"] = _shared("UnsupportedMediaType")
    responses["503"] = _shared("ServiceUnavailable")  # every token is looked up there


def _shared(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


SHARED_RESPONSES = {
    "BadRequest": problems.problem_response("The URL holds a NUL character (%00)"),
    "MethodNotAllowed": problems.problem_response(
        "The path does not take this method",
        Allow={"description": "The methods it takes", "schema": {"type": "string"}},
    ),
    "PayloadTooLarge": problems.problem_response(f"The body is larger than {MAX_BODY} bytes"),
    "UnsupportedMediaType": problems.problem_response(
        "The body is not sent as JSON: send Content-Type: application/json"
    ),
    "ServiceUnavailable": problems.problem_response(
        "The database is unavailable right now; nothing was changed, try again",
        **{"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
    ),
}
SHARED_ANSWERS = f"""

Every error is an RFC 9457 problem (`application/problem+json`). Besides each operation's
own: a URL with a NUL character (`%00`) gets 400; a body over {MAX_BODY} bytes, 413; a
body not sent as JSON, 415; a method a path does not take, 405 with `Allow`; and while the
database is unavailable, 503 with `Retry-After`. `/healthz` and `/readyz` take no token,
and answer `HEAD` as `GET` (the same status, no body)."""
# the probes (``routes_admin``): no token, and only their own answers
PROBES: dict[str, dict[str, Any]] = {
    "/healthz": {},
    "/readyz": {
        "503": {
            "description": "Not ready: the database is unreachable, or its schema is not "
            "this jitgate's",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "status": {"type": "string", "enum": ["unavailable"]},
                            "detail": {"type": "string"},
                        },
                        "required": ["status", "detail"],
                    }
                }
            },
        }
    },
}


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulServer(uvicorn.Server):
    """uvicorn's server, stopped by SIGTERM or SIGINT as uvicorn does (no new connections,
    the requests in flight answered, the lifespan closed), but which then returns instead
    of raising that signal again: uvicorn re-raises it under its default handler, which
    killed the process before ``jitgate serve`` stopped its scheduler and closed its
    database. ``stopped_by`` is the signal that stopped it; ``on_started`` is called once
    it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None) -> None:
        super().__init__(config)
        self.on_started = on_started
        self.stopped_by: signal.Signals | None = None

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        before = {signum: signal.signal(signum, self.handle_exit) for signum in STOP_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in before.items():
                signal.signal(signum, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.stopped_by is None:
            self.stopped_by = signal.Signals(sig)
        super().handle_exit(sig, frame)  # a second SIGINT stops without waiting

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit and self.on_started is not None:
            self.on_started()


def serve_api(
    api: FastAPI,
    host: str,
    port: int,
    sock: socket.socket | None = None,
    *,
    on_started: Callable[[], None] | None = None,
) -> signal.Signals | None:
    """Serve ``api`` as ``jitgate serve`` does: one uvicorn worker (uvloop and httptools,
    which uvicorn picks when installed), no access log, until SIGTERM or SIGINT, which it
    returns (see ``GracefulServer``).

    Everything built at startup (the policy, tables, models, the OpenAPI schema: about
    130,000 objects) is first moved out of the garbage collector's reach. A full
    collection over it took about 60 ms, a stall of every request in flight, and the heap
    of a running server triggers one every few seconds under load. A policy reloaded later
    is not frozen and is collected as usual when it is replaced in turn; of the startup
    policy, only reference cycles (if any) outlive its replacement."""
    import gc

    api.openapi()
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(api, host=host, port=port, log_level="warning", access_log=False)
    server = GracefulServer(config, on_started)
    server.run(sockets=None if sock is None else [sock])  # bound already: ``jitgate serve``
    return server.stopped_by
