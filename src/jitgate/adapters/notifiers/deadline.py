"""Sends that end by their deadline, however slowly a peer answers.

httpx's and smtplib's timeouts limit each socket operation, not a send: a peer that answers
a byte every few seconds keeps a send going for as long as it likes. Here every operation
gets what is left of the current send's time (``jitgate.service.delivery_deadline``):

- ``DeadlineTransport``: an httpx transport (connection pool, environment proxies as httpx
  uses them: ``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) whose every connect, TLS
  handshake, read and write is limited to the time left, and refused once none is;
- ``Cutoff``: shuts a socket down when the time is up (for smtplib, whose reads cannot be
  limited one by one), which ends the blocked read at once.

Invariant: outside a send (no deadline) both behave exactly like plain httpx and smtplib.
"""

from __future__ import annotations

import socket
import ssl
import threading
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any

import httpcore
import httpx

from jitgate.service.delivery_deadline import seconds_left

# most specific first: the first match is the one raised
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


def _capped(timeout: float | None, late: type[httpcore.TimeoutException]) -> float | None:
    left = seconds_left()
    if left is None:
        return timeout
    if left <= 0:
        raise late("the send's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _capped(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _capped(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        capped = _capped(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, capped))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        capped = _capped(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.connect_tcp(host, port, capped, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        capped = _capped(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.connect_unix_socket(path, capped, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@contextmanager
def _mapped() -> Iterator[None]:
    """httpcore's errors as the httpx errors they stand for (as httpx's own transport)."""
    try:
        yield
    except Exception as exc:
        mapped = next((ours for core, ours in _ERRORS if isinstance(exc, core)), None)
        if mapped is None:
            raise
        raise mapped(str(exc)) from exc


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _mapped():
            yield from self._stream

    def close(self) -> None:
        close: Callable[[], None] | None = getattr(self._stream, "close", None)
        if close is not None:
            with _mapped():
                close()


class DeadlineTransport(httpx.BaseTransport):
    """HTTP/1.1 over a connection pool per proxy, every socket operation within the send's
    deadline."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._ssl = httpx.create_ssl_context()
        self._pools: dict[str, httpcore.ConnectionPool] = {}
        self._lock = threading.Lock()

    def _pool(self, proxy: str) -> httpcore.ConnectionPool:
        with self._lock:
            pool = self._pools.get(proxy)
            if pool is None:
                pool = self._pools[proxy] = httpcore.ConnectionPool(
                    ssl_context=self._ssl,
                    proxy=_proxy(proxy, self._ssl) if proxy else None,
                    max_connections=self._limits.max_connections,
                    max_keepalive_connections=self._limits.max_keepalive_connections,
                    keepalive_expiry=self._limits.keepalive_expiry,
                    network_backend=_Backend(),
                )
            return pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        url = request.url
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _mapped():
            answer = self._pool(proxy_for(url)).handle_request(core)
        assert isinstance(answer.stream, Iterable)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_Body(answer.stream),
            extensions=answer.extensions,
        )

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


def _proxy(url: str, ssl_context: ssl.SSLContext) -> httpcore.Proxy:
    proxy = httpx.Proxy(url)
    return httpcore.Proxy(
        url=httpcore.URL(
            scheme=proxy.url.raw_scheme,
            host=proxy.url.raw_host,
            port=proxy.url.port,
            target=proxy.url.raw_path,
        ),
        auth=proxy.raw_auth,
        headers=proxy.headers.raw,
        ssl_context=ssl_context,
    )


def proxy_for(url: httpx.URL) -> str:
    """The proxy the environment names for ``url`` (``""``: none), as httpx reads it."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(url.scheme) or proxies.get("all") or ""
    if proxy and urllib.request.proxy_bypass(url.host):
        return ""
    return proxy if "://" in proxy or not proxy else f"http://{proxy}"


def deadline_client(limits: httpx.Limits, timeout: httpx.Timeout) -> httpx.Client:
    """The notifiers' HTTP client: sends end by their deadline (``DeadlineTransport``)."""
    return httpx.Client(transport=DeadlineTransport(limits), timeout=timeout)


class Cutoff:
    """Shuts down the socket ``sock()`` returns when the current send's time is up; used as
    ``with Cutoff(lambda: smtp.sock) as cutoff:``; ``fired`` tells whether it did."""

    def __init__(self, sock: Callable[[], socket.socket | None]) -> None:
        self._sock = sock
        self.fired = False
        left = seconds_left()
        self._timer = None if left is None else threading.Timer(left, self._fire)

    def __enter__(self) -> Cutoff:
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _fire(self) -> None:
        self.fired = True
        sock = self._sock()
        if sock is None:
            return
        with suppress(OSError):  # the plain socket's shutdown, for a TLS one too: it ends
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # a blocked read at once
