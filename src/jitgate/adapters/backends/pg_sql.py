"""Fixed SQL of the ``postgres`` backend and the SCRAM-SHA-256 verifier it sends instead of a
password. Every statement here takes its values as parameters; none is built from input."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

MEMBER_SQL = """
SELECT 1
FROM pg_auth_members m
JOIN pg_roles r ON r.oid = m.roleid
JOIN pg_roles u ON u.oid = m.member
WHERE r.rolname = %s AND u.rolname = %s
"""

# The login may log in, and only until the grant's end: a VALID UNTIL moved later by hand,
# 'infinity' or none at all is drift that reconciliation repairs. Compared in SQL: 'infinity'
# has no Python datetime (psycopg refuses to load it), and older servers refuse to subtract it.
LOGIN_ON_TIME_SQL = """
SELECT rolcanlogin AND CASE
    WHEN rolvaliduntil IS NULL OR NOT isfinite(rolvaliduntil) THEN false
    ELSE abs(extract(epoch FROM rolvaliduntil - %s::timestamptz)) < 1
END
FROM pg_roles WHERE rolname = %s
"""

# pg_terminate_backend(pid, timeout) waits up to 5 s for each backend to be gone.
TERMINATE_SQL = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))
FROM pg_stat_activity
WHERE usename = %s AND pid <> pg_backend_pid()
"""


def inventory_sql() -> str:
    """Logins whose name starts with the prefix and whose comment carries jitgate's marker."""
    return """
SELECT r.rolname, d.description
FROM pg_roles r
JOIN pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_authid'::regclass
WHERE r.rolname LIKE replace(%s, '_', '\\_') AND d.description LIKE %s
"""


def scram_sha256(password: str, *, iterations: int = 4096) -> str:
    """The verifier PostgreSQL stores for ``password`` (RFC 5802/7677, as ``pg_authid``)."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
