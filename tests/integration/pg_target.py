"""A real PostgreSQL to enforce grants on (not jitgate's own store): a throwaway server
(``tests/pg.py``) with password (SCRAM) authentication for everyone but ``postgres`` (so
``VALID UNTIL`` is enforced), a database ``app`` with a table only ``readonly`` may read,
and the non-superuser service account jitgate runs as: ``CREATEROLE``, ``readonly`` WITH
ADMIN OPTION, and ``pg_signal_backend`` (see docs/postgres.md). Also a TCP proxy to take
the backend "down" and up again. Without PostgreSQL the tests skip (fail under CI=true).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import psycopg

from components import require
from pg import INSTALL_HINT, PgServer, find_bindir

SERVICE, SERVICE_PASSWORD = "jitgate_svc", "svc-Secret-123"
HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""
SETUP = [
    "CREATE ROLE readonly NOLOGIN",
    "CREATE TABLE secrets (v text)",
    "INSERT INTO secrets VALUES ('the crown jewels')",
    "REVOKE ALL ON secrets FROM PUBLIC",
    "GRANT SELECT ON secrets TO readonly",
    f"CREATE ROLE {SERVICE} LOGIN CREATEROLE PASSWORD '{SERVICE_PASSWORD}'",
    f"GRANT readonly TO {SERVICE} WITH ADMIN OPTION",
    f"GRANT pg_signal_backend TO {SERVICE}",
]


@dataclass
class PgTarget:
    server: PgServer

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def dsn(self, user: str, password: str, port: int | None = None) -> str:
        return (
            f"host=127.0.0.1 port={port or self.port} dbname=app user={user} "
            f"password={password} connect_timeout=3"
        )

    def service_dsn(self, port: int | None = None) -> str:
        return self.dsn(SERVICE, SERVICE_PASSWORD, port)

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.server.url("app"), autocommit=True)

    def login(self, user: str, password: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn(user, password), autocommit=True)

    def fresh_login(self, name: str, password: str) -> None:
        """A person's own login, with no membership in ``readonly``."""
        with self.admin() as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{name}"')
            conn.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")

    def can_read(self, user: str, password: str) -> bool:
        with self.login(user, password) as conn:
            try:
                conn.execute("SELECT v FROM secrets").fetchall()
            except psycopg.errors.InsufficientPrivilege:
                return False
        return True


def start_target() -> PgTarget:
    bindir = find_bindir()
    require(bindir is not None, f"PostgreSQL is missing. {INSTALL_HINT}")
    assert bindir is not None
    server = PgServer(bindir).start()
    assert server.root is not None
    (server.root / "data" / "pg_hba.conf").write_text(HBA)
    server.create_database("app")
    with psycopg.connect(server.url("app"), autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
        for statement in SETUP:
            conn.execute(statement)
    return PgTarget(server)


@dataclass
class TcpProxy:
    """Forwards a loopback port to PostgreSQL; ``down()`` makes it drop every connection."""

    target_port: int
    port: int = 0
    up: bool = True
    _listener: socket.socket = field(init=False)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> TcpProxy:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def down(self) -> None:
        self.up = False

    def restore(self) -> None:
        self.up = True

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
