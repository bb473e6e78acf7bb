"""The HTTP client behind the people's commands: ``--server`` and ``--token``/``JITGATE_TOKEN``.

Every failure becomes one line on stderr and exit 1: no token given (or one that cannot
be a token), a ``--server`` that is not an http(s) URL, the server's problem ``detail``, an
answer that is not JSON (a wrong ``--server``), or why the server could not be reached; a
command that uses the API is also ``friendly`` (a file it cannot write is one line too,
never a traceback). ``--token`` is not a required option (``audit export`` and ``verify``
work offline under ``audit``): the client refuses to start without one, before anything
is sent.

A value the user gives goes into a URL path only as one percent-encoded segment
(``segment``), and an id argument must look like an id (``an_id``): ``show "$ID/events"`` or
``approve "X/../Y"`` can never reach another endpoint or another request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

import click
import httpx

from jitgate.entrypoints.cli.common import fail, friendly, line_safe

P = ParamSpec("P")
T = TypeVar("T")

_ID_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:~-]{0,199}")  # a UUID today; lenient


def server_options(func: Callable[P, T]) -> Callable[P, T]:
    func = click.option(
        "--token", envvar="JITGATE_TOKEN", show_envvar=True, default=None, help="API token."
    )(func)
    func = click.option(
        "--server",
        envvar="JITGATE_SERVER",
        show_envvar=True,
        default="http://127.0.0.1:8080",
        show_default=True,
        help="jitgate URL.",
    )(func)
    return func


def segment(value: str) -> str:
    """``value`` as one URL path segment: every ``/``, ``?``, ``%``, control byte… encoded,
    and ``.`` or ``..`` too (a client would otherwise resolve them as the parent)."""
    encoded = quote(value, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def an_id(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """An id argument (a request's): letters, digits and ``-._:~``, so that a slash, a space
    or a control byte is a usage error (exit 2) before anything is sent."""
    text = value.strip()
    if not _ID_SHAPE.fullmatch(text):
        raise click.BadParameter(f"{line_safe(repr(text))} is not an id")
    return text


class Api:
    def __init__(self, server: str, token: str | None) -> None:
        if not token or not token.strip():
            fail("no token: pass --token or set JITGATE_TOKEN")
        token = token.strip()
        if not (token.isascii() and token.isprintable()):
            fail("the token is not printable ASCII: pass the token `jitgate token create` printed")
        self.server = server.rstrip("/")
        try:
            url = httpx.URL(self.server)
            self._client = httpx.Client(
                base_url=url,
                timeout=30.0,
                headers={"Authorization": f"Bearer {token}", "User-Agent": "jitgate-cli"},
            )
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            fail(f"--server {self.server!r} is not a URL: {exc}")
        if url.scheme not in ("http", "https") or not url.host:
            fail(f"--server {self.server!r} is not an http:// or https:// URL")

    def call(self, method: str, path: str, *, raw: bool = False, **kwargs: Any) -> Any:
        """The answer's JSON (``raw``: its bytes); anything else is one line and exit 1."""
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.InvalidURL as exc:
            fail(f"cannot ask {self.server}{path}: {exc}")
        except httpx.HTTPError as exc:
            fail(f"cannot reach {self.server}: {type(exc).__name__}: {exc}")
        if response.status_code >= 400:
            fail(_problem(response, self.server))
        if raw:
            return response.content
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError:
            fail(f"the server at {self.server} did not answer with JSON (is --server right?)")

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.call("POST", path, json=body or {}, **kwargs)


def _problem(response: httpx.Response, server: str) -> str:
    """``404 no such request``: the problem's ``detail`` (and its ``problems``, one line
    each); a body that is not a problem is shown by its first 200 characters, on one line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = (body.get("detail") or body.get("title")) if isinstance(body, dict) else None
    if detail:
        problems = body.get("problems") if isinstance(body, dict) else None
        extra = [line_safe(p) for p in problems] if isinstance(problems, list) else []
        return "\n".join([f"{response.status_code} {line_safe(detail)}", *extra])
    said = f"{response.status_code} {response.reason_phrase}".rstrip()
    text = f"{said} from {server}, not a jitgate answer (is --server right?)"
    snippet = " ".join(response.text.split())[:200]
    return f"{text}: {line_safe(snippet)}" if snippet else text


def with_api(func: Callable[..., T]) -> Callable[..., T]:
    """The command gets an ``Api`` first; an answer of the wrong shape (a wrong
    ``--server`` that answers JSON) is one line too."""

    @wraps(func)
    def wrapper(*args: Any, server: str, token: str | None, **kwargs: Any) -> T:
        api = Api(server, token)
        try:
            return func(api, *args, **kwargs)
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            fail(
                f"the server at {api.server} gave an answer jitgate cannot read "
                f"({type(exc).__name__}: {exc}); is --server right?"
            )

    return server_options(friendly(wrapper))
