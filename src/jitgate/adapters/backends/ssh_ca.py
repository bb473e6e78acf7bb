"""``ssh-ca``: OpenSSH user certificates signed by a CA whose key comes from the environment.

Policy entry::

    ssh-prod: {type: ssh-ca, ca_key_file_env: SSH_CA_KEY, principals: [ubuntu]}

``ca_key_file_env`` names a variable holding the PATH of the CA private key (OpenSSH or
PEM format); ``ca_key_env`` names one holding the key itself; ``ca_key_passphrase_env``
optionally its passphrase. ``extensions`` (default: the usual ``permit-*``) and
``source_address`` are optional.

Invariants: a certificate is valid for the grant window: from the grant's ``starts_at``
(not the moment of issue, so a host whose clock is a little behind jitgate's accepts it at
once) to its ``ends_at`` (floored to the second, never later), so sshd itself refuses it
after the grant. ``starts_at`` is floored to the second too: rounding it up would refuse a
certificate used in the first second of its grant, and a fraction of a second before the
start grants nothing, since a certificate is only issued once the grant is in force; its key
id is the request id (SPEC §7) and the jitgate user is in its ``USER_EXTENSION``
extension (sshd ignores extensions it does not know); a grant that ends early is revoked
by key id in the KRL (``Receipt.revocations``). The CA private key never leaves this
object.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_ssh_private_key,
    load_ssh_public_identity,
    load_ssh_public_key,
)
from cryptography.hazmat.primitives.serialization.ssh import (
    SSHCertificate,
    SSHCertificateBuilder,
    SSHCertificateType,
)

from jitgate.adapters.backends.base import BackendDeps, env_secret
from jitgate.adapters.plugin_config import ConfigProblem, text_list_problems, text_problems
from jitgate.service.backend_ports import (
    BackendError,
    BackendUnavailable,
    GrantSpec,
    IssuedCertificate,
    Receipt,
    Revocation,
)

DEFAULT_EXTENSIONS = (
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
)
ALLOWED_KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
MAX_PUBLIC_KEY = 16 * 1024
MIN_RSA_BITS = 2048

CaKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


USER_EXTENSION = "jitgate-user@jitgate"  # the certificate's jitgate user (an email)


def certificate_identity(key_type: str, certificate: str, key_id: str) -> tuple[str, str] | None:
    """``(request id, user)`` of a jitgate certificate as sshd hands it to a command (``%t``
    and ``%k``: its type and base64 blob; sshd has checked its CA and signature by then)
    whose key id is ``key_id`` (sshd's ``%i``), or ``None`` for any other key. A
    certificate issued before the key id became the request id
    (``jitgate:<request>:<user>``) is still read."""
    try:
        cert = load_ssh_public_identity(f"{key_type} {certificate}".encode())
    except (ValueError, UnsupportedAlgorithm):
        return None
    if not isinstance(cert, SSHCertificate) or cert.key_id != key_id.encode():
        return None
    older = legacy_identity(key_id)
    if older is not None:
        return older
    user = cert.extensions.get(USER_EXTENSION.encode(), b"").decode(errors="replace")
    return (key_id, user) if key_id and "@" in user else None


def legacy_identity(key_id: str) -> tuple[str, str] | None:
    """``(request id, user)`` of a key id from before the key id became the request id
    (``jitgate:<request>:<user>``), or ``None`` for any other key id."""
    prefix, _, rest = key_id.partition(":")
    request_id, _, user = rest.partition(":")
    return (request_id, user) if prefix == "jitgate" and request_id and "@" in user else None


def fingerprint(public_key_line: str) -> str:
    blob = base64.b64decode(public_key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _load_ca(data: bytes, passphrase: bytes | None) -> CaKey:
    try:
        if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
            key: Any = load_ssh_private_key(data, passphrase)
        else:
            key = load_pem_private_key(data, passphrase)
    except (ValueError, TypeError):
        raise BackendUnavailable(
            "the SSH CA key could not be read (format or passphrase)"
        ) from None
    if not isinstance(
        key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    ):
        raise BackendUnavailable("the SSH CA key must be Ed25519, ECDSA or RSA")
    return key


class SshCaBackend:
    shares_grants = False
    verifiable = False
    CONFIG_KEYS: ClassVar[tuple[str, ...]] = (
        "ca_key_file_env",
        "ca_key_env",
        "ca_key_passphrase_env",
        "principals",
        "extensions",
        "source_address",
    )

    def __init__(self, name: str, config: Mapping[str, Any], deps: BackendDeps) -> None:
        self.name = name
        self.principals = tuple(str(p) for p in config.get("principals") or ())
        if not self.principals:
            raise BackendUnavailable(f"backend {name!r} needs 'principals' (a non-empty list)")
        self.extensions = tuple(str(e) for e in config.get("extensions", DEFAULT_EXTENSIONS))
        source = config.get("source_address")
        self.source_address = str(source) if source else None
        self._ca = self._ca_key(config, deps.environ)
        self._ca_public = (
            self._ca.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
        )

    @classmethod
    def config_problems(cls, config: Mapping[str, Any]) -> list[ConfigProblem]:
        return [
            *text_list_problems(config, "principals", non_empty=True),
            *text_list_problems(config, "extensions"),
            *text_problems(config, "source_address"),
        ]

    def _ca_key(self, config: Mapping[str, Any], environ: Mapping[str, str]) -> CaKey:
        passphrase = None
        if config.get("ca_key_passphrase_env"):
            passphrase = env_secret(
                config, "ca_key_passphrase_env", environ, backend=self.name
            ).encode()
        if config.get("ca_key_env"):
            return _load_ca(
                env_secret(config, "ca_key_env", environ, backend=self.name).encode(), passphrase
            )
        path = env_secret(config, "ca_key_file_env", environ, backend=self.name)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise BackendUnavailable(
                f"backend {self.name!r}: the SSH CA key file cannot be read ({exc.strerror})"
            ) from None
        return _load_ca(data, passphrase)

    # -- the port ---------------------------------------------------------------------------

    def grant(self, spec: GrantSpec) -> Receipt:
        """Nothing to change on hosts: the certificate is the grant. Confirms the CA works."""
        return Receipt(
            self.name,
            "grant",
            changed=False,
            detail={"ca": fingerprint(self._ca_public), "principals": list(self.principals)},
        )

    def revoke(self, spec: GrantSpec) -> Receipt:
        """Certificates expire with the grant; one that ends early is revoked in the KRL."""
        if not spec.ended_early:
            return Receipt(self.name, "revoke", changed=False, detail={"krl": False})
        key_id = spec.request_id
        return Receipt(
            self.name,
            "revoke",
            changed=True,
            detail={"krl": True, "key_id": key_id},
            revocations=(Revocation(self._ca_public, key_id),),
        )

    def check(self, spec: GrantSpec) -> bool:
        return True

    # -- certificates -----------------------------------------------------------------------

    def ca_public_key(self) -> str:
        return self._ca_public

    def issue(self, spec: GrantSpec, public_key: str, now: datetime) -> IssuedCertificate:
        subject = _subject_key(public_key)
        valid_after = int(spec.starts_at.timestamp())  # the window's start, not ``now``
        valid_before = int(spec.ends_at.timestamp())
        if valid_before <= max(valid_after, int(now.timestamp())):
            raise BackendError("the grant window has ended; no certificate is issued")
        key_id = spec.request_id
        serial = secrets.randbits(63) | 1
        builder = (
            SSHCertificateBuilder()
            .public_key(subject)
            .serial(serial)
            .type(SSHCertificateType.USER)
            .key_id(key_id.encode())
            .valid_principals([p.encode() for p in self.principals])
            .valid_after(valid_after)
            .valid_before(valid_before)
        )
        for extension in self.extensions:
            builder = builder.add_extension(extension.encode(), b"")
        builder = builder.add_extension(USER_EXTENSION.encode(), spec.user.encode())
        if self.source_address:
            builder = builder.add_critical_option(b"source-address", self.source_address.encode())
        line = builder.sign(self._ca).public_bytes().decode()
        return IssuedCertificate(
            certificate=f"{line} {key_id}",
            key_id=key_id,
            serial=serial,
            principals=self.principals,
            valid_after=datetime.fromtimestamp(valid_after, UTC),
            valid_before=datetime.fromtimestamp(valid_before, UTC),
            ca_fingerprint=fingerprint(self._ca_public),
            key_fingerprint=fingerprint(public_key),
        )


def _subject_key(public_key: str) -> Any:
    """Parse the requester's public key line; only plain Ed25519, ECDSA or RSA >= 2048."""
    text = public_key.strip()
    if not text or len(text) > MAX_PUBLIC_KEY or "\n" in text:
        raise BackendError("public_key must be one OpenSSH public key line")
    kind = text.split()[0]
    if kind not in ALLOWED_KEY_TYPES:
        raise BackendError(
            f"public_key type {kind[:40]!r} is not accepted ({', '.join(ALLOWED_KEY_TYPES)})"
        )
    try:
        key = load_ssh_public_key(text.encode())
    except (ValueError, TypeError):
        raise BackendError("public_key is not a valid OpenSSH public key") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise BackendError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
    return key
