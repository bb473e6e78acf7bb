"""OpenSSH key revocation lists (KRL), written in the binary format of OpenSSH's
``PROTOCOL.krl``: a header, then one certificates section per CA holding its revoked key
ids. sshd reads it through ``RevokedKeys``; ``ssh-keygen -Q -f FILE CERT`` tests a cert.

Invariant: the output depends only on its input (sorted CAs, sorted unique key ids), so
the same revocations always give the same bytes apart from the header's dates.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable, Mapping

KRL_MAGIC = 0x5353484B524C0A00
KRL_FORMAT_VERSION = 1
KRL_SECTION_CERTIFICATES = 1
KRL_SECTION_CERT_KEY_ID = 0x23


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def key_blob(public_key_line: str) -> bytes:
    """The SSH wire serialisation of an OpenSSH public key line (``type base64 [comment]``)."""
    parts = public_key_line.strip().split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key line")
    blob = base64.b64decode(parts[1], validate=True)
    kind_len = struct.unpack(">I", blob[:4])[0]
    if blob[4 : 4 + kind_len].decode("ascii", "replace") != parts[0]:
        raise ValueError("public key type does not match its blob")
    return blob


def build_krl(
    revoked: Mapping[str, Iterable[str]],
    *,
    version: int,
    generated: int,
    comment: str = "jitgate",
) -> bytes:
    """A KRL revoking, for each CA public key line in ``revoked``, the given key ids."""
    out = bytearray()
    out += struct.pack(">QIQQQ", KRL_MAGIC, KRL_FORMAT_VERSION, version, generated, 0)
    out += _string(b"")
    out += _string(comment.encode())
    for ca in sorted(revoked, key=key_blob):
        key_ids = sorted(set(revoked[ca]))
        if not key_ids:
            continue
        section = bytearray(_string(key_blob(ca)) + _string(b""))
        ids = b"".join(_string(k.encode()) for k in key_ids)
        section += bytes([KRL_SECTION_CERT_KEY_ID]) + _string(ids)
        out += bytes([KRL_SECTION_CERTIFICATES]) + _string(bytes(section))
    return bytes(out)
