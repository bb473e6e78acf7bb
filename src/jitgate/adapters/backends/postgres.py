"""``postgres``: a database role granted for the grant window, and taken back at its end.

Policy entry::

    prod-pg: {type: postgres, dsn_env: PROD_PG_DSN, db_role: readonly, mode: ephemeral_user}

``mode: grant_role`` (default) GRANTs ``db_role`` to the user's existing login (``login``
template, default ``{local}``: ``jane.doe@example.com`` -> ``jane_doe``; or an explicit
``logins: {email: login}`` map) and REVOKEs it at the end. ``mode: ephemeral_user``
creates a login for the grant (``LOGIN``, ``VALID UNTIL`` the grant's end, member of
``db_role``, commented ``jitgate:<request>:<user>``) whose password is set only when the
requester asks for credentials, and drops it at the end.

Invariants: identifiers go through ``sql.Identifier`` and values through parameters or
``sql.Literal``; a password reaches the server only as a SCRAM verifier; no DSN, password
or server message with them is ever put in a receipt or an error. With
``terminate_sessions`` the user's (or the ephemeral login's) connections are terminated,
since a session that ran ``SET ROLE`` keeps the privilege otherwise. Works as a
non-superuser with CREATEROLE, ADMIN OPTION on ``db_role`` and ``pg_signal_backend``.
Every statement ends within ``statement_timeout`` (default 5 s; a lock wait at 4/5 of
it), so another session's lock fails a call (retried) rather than holding it. ``made``
lists only logins whose comment reads ``jitgate:<request>:<user>`` (others are logged once
and left alone); ``members`` lists who holds ``db_role`` (``grant_role``) for the standing
access report.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jitgate.adapters.backends.base import BackendDeps, env_secret
from jitgate.adapters.backends.pg_sql import (
    LOGIN_ON_TIME_SQL,
    MEMBER_SQL,
    TERMINATE_SQL,
    inventory_sql,
    scram_sha256,
)
from jitgate.adapters.plugin_config import (
    MAX_SECONDS,
    WITHIN_LEASE,
    ConfigProblem,
    choice_problems,
    seconds_problems,
    text_problems,
    whole_problems,
)
from jitgate.service.backend_ports import (
    BackendError,
    BackendUnavailable,
    Credential,
    GrantSpec,
    MadeGrant,
    Receipt,
)

log = logging.getLogger("jitgate.backends.postgres")

MODES = ("grant_role", "ephemeral_user")
MEMBERS_SQL = """
SELECT DISTINCT u.rolname
FROM pg_auth_members m
JOIN pg_roles r ON r.oid = m.roleid
JOIN pg_roles u ON u.oid = m.member
WHERE r.rolname = %s AND u.rolname <> current_user
  AND NOT EXISTS (
    SELECT 1 FROM pg_shdescription d
    WHERE d.objoid = u.oid AND d.classoid = 'pg_authid'::regclass AND d.description LIKE %s
  )
ORDER BY u.rolname
"""
TIMEOUTS_SQL = (
    "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)"
)
MARKER = "jitgate"
_UNSAFE = re.compile(r"[^a-z0-9_]")


def local_name(email: str) -> str:
    return _UNSAFE.sub("_", email.split("@", 1)[0].lower()) or "user"


class PostgresBackend:
    verifiable = True
    CONFIG_KEYS: ClassVar[tuple[str, ...]] = (
        "dsn_env",
        "db_role",
        "mode",
        "login",
        "logins",
        "login_prefix",
        "connect_timeout",
        "statement_timeout",
        "public_host",
        "public_port",
        "public_dbname",
    )

    def __init__(self, name: str, config: Mapping[str, Any], deps: BackendDeps) -> None:
        self.name = name
        self.mode = str(config.get("mode", "grant_role"))
        if self.mode not in MODES:
            raise BackendUnavailable(f"backend {name!r}: mode must be one of {', '.join(MODES)}")
        self.shares_grants = self.mode == "grant_role"
        self.db_role = str(config.get("db_role") or "")
        if not self.db_role:
            raise BackendUnavailable(f"backend {name!r} needs 'db_role'")
        self.login_template = str(config.get("login", "{local}"))
        self.logins = {str(k).lower(): str(v) for k, v in (config.get("logins") or {}).items()}
        self.prefix = str(config.get("login_prefix", "jit_"))
        self.timeout = int(config.get("connect_timeout", 5))
        self.statement_ms = max(1, round(float(config.get("statement_timeout", 5)) * 1000))
        self._unreadable: set[str] = set()  # logins whose jitgate comment was not readable
        self._dsn = env_secret(config, "dsn_env", deps.environ, backend=name)
        try:
            parts = conninfo_to_dict(self._dsn)
        except psycopg.ProgrammingError:
            raise BackendUnavailable(f"backend {name!r}: the DSN is malformed") from None
        self._secrets = [str(parts["password"])] if parts.get("password") else []
        self._scope = f"{parts.get('host', '')}:{parts.get('port', '')}/{self.db_role}"
        self._public = {
            "host": config.get("public_host", parts.get("host", "localhost")),
            "port": config.get("public_port", parts.get("port", 5432)),
            "dbname": config.get("public_dbname", parts.get("dbname", "postgres")),
        }

    @classmethod
    def config_problems(cls, config: Mapping[str, Any]) -> list[ConfigProblem]:
        return [
            *choice_problems(config, "mode", MODES),
            *text_problems(config, "db_role", "login_prefix", "public_host", "public_dbname"),
            *whole_problems(config, "connect_timeout", minimum=1, maximum=int(MAX_SECONDS / 2)),
            *seconds_problems(
                config, "statement_timeout", maximum=MAX_SECONDS / 2, why=WITHIN_LEASE
            ),
            *whole_problems(config, "public_port", minimum=1, maximum=65535),
            *_login_problems(config),
        ]

    # -- names ------------------------------------------------------------------------------

    def login_for(self, spec: GrantSpec) -> str:
        if self.mode == "ephemeral_user":
            digest = hashlib.sha256(spec.request_id.encode()).hexdigest()[:12]
            return f"{self.prefix}{local_name(spec.user)[:20]}_{digest}"
        return self.member_name(spec.user)

    def member_name(self, user: str) -> str:
        """``grant_role``: the login of ``user``, the member a grant of theirs makes."""
        explicit = self.logins.get(user.lower())
        if explicit:
            return explicit
        return self.login_template.format(local=local_name(user), email=user.lower())

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection whose every statement gives up after ``statement_timeout``, waiting
        for a lock included (another session's open ``REVOKE``, an ``ALTER ROLE`` left
        uncommitted): the call fails as a ``BackendError`` and is retried, rather than
        holding the scheduler or a request for as long as that session likes."""
        try:
            with psycopg.connect(self._dsn, autocommit=True, connect_timeout=self.timeout) as conn:
                # a lock wait gives up first, so that the error names it
                locks = f"{max(1, self.statement_ms * 4 // 5)}ms"
                conn.execute(TIMEOUTS_SQL, (locks, f"{self.statement_ms}ms"))
                yield conn
        except psycopg.Error as exc:
            raise BackendError(self._safe(exc)) from None

    def _safe(self, exc: Exception) -> str:
        text = (str(exc).strip().splitlines() or [""])[0][:300]
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return f"postgres: {type(exc).__name__}: {text}".rstrip(": ")

    def _exists(self, conn: psycopg.Connection[Any], login: str) -> bool:
        row = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
        return row is not None

    def _member(self, conn: psycopg.Connection[Any], login: str) -> bool:
        return conn.execute(MEMBER_SQL, (self.db_role, login)).fetchone() is not None

    def _grant_membership(self, conn: psycopg.Connection[Any], login: str) -> bool:
        if self._member(conn, login):
            return False
        stmt = sql.SQL("GRANT {} TO {}").format(sql.Identifier(self.db_role), sql.Identifier(login))
        conn.execute(stmt)
        return True

    def _revoke_membership(self, conn: psycopg.Connection[Any], login: str) -> bool:
        if not self._member(conn, login):
            return False
        stmt = sql.SQL("REVOKE {} FROM {}").format(
            sql.Identifier(self.db_role), sql.Identifier(login)
        )
        conn.execute(stmt)
        return True

    def _terminate(self, conn: psycopg.Connection[Any], login: str) -> int:
        row = conn.execute(TERMINATE_SQL, (login,)).fetchone()
        return int(row[0]) if row else 0

    def _connections(self, conn: psycopg.Connection[Any], login: str) -> int:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (login,)
        ).fetchone()
        return int(row[0]) if row else 0

    # -- the port ---------------------------------------------------------------------------

    def grant(self, spec: GrantSpec) -> Receipt:
        login = self.login_for(spec)
        with self._connection() as conn:
            if self.mode == "ephemeral_user":
                changed = self._grant_ephemeral(conn, login, spec)
            else:
                if not self._exists(conn, login):
                    raise BackendError(f"postgres: login {login!r} does not exist")
                changed = self._grant_membership(conn, login)
        detail = {"mode": self.mode, "login": login, "db_role": self.db_role}
        return Receipt(self.name, "grant", changed=changed, detail=detail)

    def _grant_ephemeral(self, conn: psycopg.Connection[Any], login: str, spec: GrantSpec) -> bool:
        until = sql.Literal(_pg_time(spec.ends_at))
        with conn.transaction():
            created = not self._exists(conn, login)
            if created:
                conn.execute(
                    sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD NULL VALID UNTIL {}").format(
                        sql.Identifier(login), until
                    )
                )
                comment = sql.Literal(f"{MARKER}:{spec.request_id}:{spec.user}")
                conn.execute(
                    sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(login), comment)
                )
            else:
                conn.execute(
                    sql.SQL("ALTER ROLE {} WITH LOGIN VALID UNTIL {}").format(
                        sql.Identifier(login), until
                    )
                )
            granted = self._grant_membership(conn, login)
        return created or granted

    def revoke(self, spec: GrantSpec) -> Receipt:
        login = self.login_for(spec)
        detail: dict[str, Any] = {"mode": self.mode, "login": login, "db_role": self.db_role}
        with self._connection() as conn:
            if self.mode == "ephemeral_user":
                changed = self._revoke_ephemeral(conn, login, spec.terminate_sessions, detail)
            else:
                revoked = self._revoke_membership(conn, login)
                ended = self._terminate(conn, login) if spec.terminate_sessions else 0
                detail["sessions_terminated"] = ended
                changed = revoked or ended > 0
        return Receipt(self.name, "revoke", changed=changed, detail=detail)

    def _revoke_ephemeral(
        self, conn: psycopg.Connection[Any], login: str, terminate: bool, detail: dict[str, Any]
    ) -> bool:
        row = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (login,))
        found = row.fetchone()
        if found is None:
            detail["dropped"] = False
            return False
        ident = sql.Identifier(login)
        changed = bool(found[0])
        if changed:
            conn.execute(sql.SQL("ALTER ROLE {} WITH NOLOGIN").format(ident))
        changed = self._revoke_membership(conn, login) or changed
        ended = self._terminate(conn, login) if terminate else 0
        detail["sessions_terminated"] = ended
        if self._connections(conn, login):
            detail["dropped"] = False
            detail["drop_deferred"] = "open connections continue; dropped once they end"
            return changed or ended > 0
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident))
        detail["dropped"] = True
        return True

    def check(self, spec: GrantSpec) -> bool:
        login = self.login_for(spec)
        with self._connection() as conn:
            if self.mode != "ephemeral_user":
                return self._member(conn, login)
            row = conn.execute(LOGIN_ON_TIME_SQL, (_pg_time(spec.ends_at), login)).fetchone()
            return row is not None and bool(row[0]) and self._member(conn, login)

    # -- credentials and inventory (ephemeral_user) -----------------------------------------

    def issues_credentials(self) -> bool:
        return self.mode == "ephemeral_user"

    def credentials(self, spec: GrantSpec) -> Credential:
        """A fresh password for the grant's login (the previous one stops working)."""
        if self.mode != "ephemeral_user":
            raise BackendError(f"backend {self.name!r} grants a role; it issues no credentials")
        login = self.login_for(spec)
        password = secrets.token_urlsafe(24)
        with self._connection() as conn:
            if not self._exists(conn, login):
                raise BackendError(f"postgres: the login of this grant ({login}) is missing")
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {} VALID UNTIL {}").format(
                    sql.Identifier(login),
                    sql.Literal(scram_sha256(password)),
                    sql.Literal(_pg_time(spec.ends_at)),
                )
            )
        dsn = make_conninfo(
            host=str(self._public["host"]),
            port=str(self._public["port"]),
            dbname=str(self._public["dbname"]),
            user=login,
        )
        return Credential(self.name, login, password, dsn)

    def made(self) -> Sequence[MadeGrant]:
        if self.mode != "ephemeral_user":
            return []
        with self._connection() as conn:
            rows = conn.execute(inventory_sql(), (self.prefix + "%", MARKER + ":%")).fetchall()
        found = []
        for name, comment in rows:
            made = _made_grant(str(name), str(comment))
            if made is not None:
                found.append(made)
            elif str(name) not in self._unreadable:  # said once per login, not every pass
                self._unreadable.add(str(name))
                log.warning(
                    "postgres backend %s: login %s carries a jitgate comment that is not "
                    "'jitgate:<request>:<user>'; left alone",
                    self.name,
                    _printable(str(name)),
                )
        return found

    # -- members (grant_role) --------------------------------------------------------------

    def member_scope(self) -> str | None:
        """The role on its server (roles are per cluster), or ``None`` in ``ephemeral_user``
        mode, whose grants are logins of their own (``made`` lists those)."""
        return self._scope if self.mode == "grant_role" else None

    def members(self) -> Sequence[str]:
        """Direct members of ``db_role``, but for jitgate's own service account and the
        logins jitgate made (they carry its comment; their backend's ``made`` owns them)."""
        with self._connection() as conn:
            rows = conn.execute(MEMBERS_SQL, (self.db_role, MARKER + ":%")).fetchall()
        return [str(row[0]) for row in rows]

    def remove_made(self, grant: MadeGrant, *, terminate: bool) -> Receipt:
        """Remove a login jitgate made (found by ``made``) under the name it really has."""
        detail: dict[str, Any] = {"mode": self.mode, "login": grant.key, "db_role": self.db_role}
        with self._connection() as conn:
            changed = self._revoke_ephemeral(conn, grant.key, terminate, detail)
        return Receipt(self.name, "revoke", changed=changed, detail=detail)


def _login_problems(config: Mapping[str, Any]) -> list[ConfigProblem]:
    """``login`` a template of ``{local}``/``{email}``; ``logins`` maps emails to logins."""
    out: list[ConfigProblem] = text_problems(config, "login")
    template = config.get("login")
    if not out and isinstance(template, str):
        try:
            template.format(local="jane_doe", email="jane.doe@example.com")
        except (KeyError, IndexError, ValueError, AttributeError):
            out.append((("login",), "must be a template using only {local} and {email}"))
    logins = config.get("logins")
    if logins is not None and not isinstance(logins, dict):
        out.append((("logins",), "must be a mapping of emails to logins"))
    elif logins:
        out.extend(
            (("logins", str(email)), "must be a non-empty login name")
            for email, login in logins.items()
            if not isinstance(login, str) or not login.strip()
        )
    return out


def _made_grant(name: str, comment: str) -> MadeGrant | None:
    """The grant a ``jitgate:<request>:<user>`` comment names; ``None`` for any other text
    (a comment written by hand, a truncated one): such a login is not known to be ours."""
    marker, _, rest = comment.partition(":")
    request_id, _, user = rest.partition(":")
    if marker != MARKER or not request_id.strip() or not user.strip():
        return None
    return MadeGrant(request_id, user, name)


def _printable(text: str, limit: int = 80) -> str:
    """``text`` fit for one log line: no control characters, at most ``limit`` long."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _pg_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat()
