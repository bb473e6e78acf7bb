"""RFC 9457 problem+json for every error: a useful ``detail``, never a traceback or the input."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from jitgate.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    Unavailable,
)

log = logging.getLogger("jitgate.api")
# a lost or refused connection, a server shutting down, a lock not got in time; psycopg's
# own for the authorize reads of PostgreSQL, which do not go through SQLAlchemy
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)
MEDIA = "application/problem+json"
STATUS = {Invalid: 422, Forbidden: 403, NotFound: 404, Conflict: 409, Gone: 410, Unavailable: 503}
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid request",
    500: "Internal error",
    503: "Service unavailable",
}
NOT_JSON = "the body must be JSON: send Content-Type: application/json"
UNREADABLE_UTF8 = "the body is not valid UTF-8"
UNREADABLE_NUMBER = "a number in the body is too large"
UNREADABLE_DEPTH = "the body nests too deeply"
UNREADABLE_BODY = (UNREADABLE_UTF8, UNREADABLE_NUMBER, UNREADABLE_DEPTH)
FASTAPI_UNREADABLE = "There was an error parsing the body"  # its 400, raised from the cause
# the same three as pydantic's JSON reader words them (``ctx.error``, "… at line 1 column 7")
UNREADABLE_JSON = {
    "invalid unicode code point": UNREADABLE_UTF8,
    "number out of range": UNREADABLE_NUMBER,
    "recursion limit exceeded": UNREADABLE_DEPTH,
}


def problem(
    status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=MEDIA, headers=headers)


def _domain(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 400)
    if isinstance(exc, Unavailable):
        return problem(status, str(exc), headers={"Retry-After": str(exc.retry_after)})
    return problem(status, str(exc))


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if _not_read_as_json(exc):
        return problem(415, NOT_JSON)
    found = [(list(e.get("loc", ())), _message(e)) for e in exc.errors()[:10]]
    parts = [f"{_where(loc, message)}: {message}" for loc, message in found]
    errors = [{"loc": loc, "msg": message} for loc, message in found]
    return problem(422, "; ".join(parts) or "invalid request", errors=errors)


def _message(error: dict[str, Any]) -> str:
    """Pydantic's message, said for people: a body that is not JSON names where it broke,
    and a check's own message loses pydantic's "Value error, " prefix."""
    if error.get("type") == "json_invalid":
        loc = error.get("loc", ())
        if loc and isinstance(loc[-1], int):  # FastAPI's reader: the character's position
            return f"the body is not valid JSON (it breaks at character {loc[-1]})"
        # pydantic's own reader (routes that read their body): "… at line 1 column 7"
        said = str((error.get("ctx") or {}).get("error", ""))
        plain = next((m for start, m in UNREADABLE_JSON.items() if said.startswith(start)), None)
        if plain is not None:
            return plain
        line, _, column = said.rpartition(" at line ")[2].partition(" column ")
        if line.isdigit() and column.isdigit():
            return f"the body is not valid JSON (it breaks at line {line}, column {column})"
        return "the body is not valid JSON"
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def _where(loc: list[Any], message: str) -> str:
    if message.startswith("the body is not valid JSON") or message in UNREADABLE_BODY:
        return "body"
    return ".".join(str(p) for p in loc if p != "body") or "body"


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    said = _unreadable(exc.__cause__) if exc.detail == FASTAPI_UNREADABLE else None
    if said is not None:  # bad JSON like any other, with what was wrong
        return problem(422, f"body: {said}", errors=[{"loc": ["body"], "msg": said}])
    return problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


def _unreadable(cause: BaseException | None) -> str | None:
    """What was wrong with a JSON body Python's ``json`` could not read (FastAPI raises its
    400 from this cause); ``None`` when the 400 did not come from reading a body."""
    if isinstance(cause, UnicodeDecodeError):
        return UNREADABLE_UTF8
    if isinstance(cause, RecursionError):
        return UNREADABLE_DEPTH
    if isinstance(cause, ValueError):  # "Exceeds the limit (4300 digits) for integer …"
        return UNREADABLE_NUMBER if "digits" in str(cause) else "the body is not valid JSON"
    return None


def _not_read_as_json(exc: RequestValidationError) -> bool:
    """A body FastAPI did not read as JSON because its Content-Type is not JSON: it then
    validates (and fails) the raw bytes, and hands them on as ``exc.body``."""
    in_body = any(tuple(e.get("loc") or ())[:1] == ("body",) for e in exc.errors())
    return in_body and isinstance(exc.body, bytes)


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body sent with this ``Content-Type`` as JSON:
    ``application/json`` or ``application/*+json``, parameters (``charset``) allowed, as
    ``email.message`` parses the header; none at all is not (FastAPI's strict default).
    The authorize route and its fast path use this very test, so the three agree."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    if media.count("/") != 1:
        return False
    kind, subtype = media.split("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _database_down(_: Request, exc: Exception) -> JSONResponse:
    """The database cannot be reached (down, restarting, a lost connection) or is too busy
    (SQLite's busy timeout): 503 with ``Retry-After``, one log line, no traceback. Nothing
    was changed: a write commits whole or not at all."""
    log.warning("database unavailable: %s", first_line(exc))
    return problem(
        503, "the database is unavailable right now; try again", headers={"Retry-After": "5"}
    )


def first_line(exc: BaseException) -> str:
    """``OperationalError: connection failed: …``: the error in one line, without the SQL
    statement and the link SQLAlchemy adds."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error: %s", type(exc).__name__, exc_info=exc)
    return problem(500, "internal error; the event was logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    for unavailable in DATABASE_UNAVAILABLE:
        app.add_exception_handler(unavailable, _database_down)
    app.add_exception_handler(Exception, _unexpected)


def problem_response(description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI response: a problem, with ``headers`` (name: header object) if any."""
    answer = {
        "description": description,
        "content": {MEDIA: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    return {**answer, "headers": headers} if headers else answer


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: problem_response(TITLES[code]) for code in (401, 403, 404, 409, 422)
}
