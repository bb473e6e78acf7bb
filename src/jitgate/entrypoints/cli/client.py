"""The HTTP client behind the people's commands: ``--server`` and ``--token``/``JITGATE_TOKEN``.

Every failure becomes one line on stderr and exit 1: no token given, the server's problem
``detail``, or why the server could not be reached; a command that uses the API is also
``friendly`` (a file it cannot write is one line too, never a traceback). ``--token`` is
not a required option (``audit export`` and ``verify`` work offline under ``audit``): the
client refuses to start without one, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click
import httpx

from jitgate.entrypoints.cli.common import fail, friendly

P = ParamSpec("P")
T = TypeVar("T")


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


class Api:
    def __init__(self, server: str, token: str | None) -> None:
        if not token or not token.strip():
            fail("no token: pass --token or set JITGATE_TOKEN")
        self.server = server.rstrip("/")
        self._client = httpx.Client(
            base_url=self.server,
            timeout=30.0,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "jitgate-cli"},
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            fail(f"cannot reach {self.server}: {type(exc).__name__}: {exc}")
        if response.status_code >= 400:
            fail(_problem(response))
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.call("POST", path, json=body or {}, **kwargs)


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
        detail = body.get("detail") or body.get("title")
        extra = body.get("problems")
    except ValueError:
        detail, extra = response.text[:200], None
    text = f"{response.status_code} {detail}"
    return text + ("\n" + "\n".join(extra) if extra else "")


def with_api(func: Callable[..., T]) -> Callable[..., T]:
    @wraps(func)
    def wrapper(*args: Any, server: str, token: str | None, **kwargs: Any) -> T:
        return func(Api(server, token), *args, **kwargs)

    return server_options(friendly(wrapper))
