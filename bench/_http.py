"""A minimal keep-alive HTTP/1.1 client on asyncio streams, for load generation from Python.

It is far lighter than a full client (no header objects, no redirects, no cookies), so on a
2-core machine the load generator takes as little CPU from the server as Python allows.
Only ``Content-Length`` bodies are read (what uvicorn sends for JSON responses).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any


class HttpError(RuntimeError):
    pass


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> Conn:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    def encode(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Type: application/json")
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        self._writer.write(raw)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"transfer-encoding":
                raise HttpError("chunked responses are not supported by this client")
        body = await self._reader.readexactly(length) if length else b""
        return status, body

    async def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        body = b"" if payload is None else json.dumps(payload).encode()
        status, raw = await self.send(self.encode(method, path, body, headers))
        return status, (json.loads(raw) if raw else None)
