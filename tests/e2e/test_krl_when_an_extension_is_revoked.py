"""A certificate never outlives its grant, whatever the scheduler's lag (SPEC §9.6): a
served jitgate (no scheduler runs: the worst lag) with an ``ssh-ca`` backend, real keys
from ``ssh-keygen``, and the KRL from ``GET /v1/ssh/krl`` checked by ``ssh-keygen -Q``.

A certificate asked while the grant was extended runs to the extended end. When the
extension is revoked the grant's end moves back in; from that moment the KRL lists the
grant's key id, so the certificate is refused, before and after the shortened end, not
only once a late scheduler expires the grant. The KRL revokes by key id (the request id),
so jitgate refuses to sign another certificate for that grant (sshd would refuse it too).
A certificate that ends no later than its grant (the extension kept, or the certificate
asked only after the extension was revoked) is never listed.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from components import require
from jitgate.adapters.backends.krl import build_krl
from jitgate.service import lifecycle
from served import Served, serve

JANE, SEC = "jane.doe@example.com", "sec@example.com"
POLICY = """
version: 1
settings: {pending_ttl: 1h, admins: [security]}
directory:
  users:
    jane.doe@example.com: {groups: [developers]}
    sec@example.com: {groups: [security]}
resources:
  dev-host: {type: ssh, environment: development}
roles:
  dev-ssh:
    grants: [{type: ssh, environment: development}]
    requestable_by: [developers]
    default_duration: 1h
    max_duration: 8h
    extendable: true
    backends: [ssh-dev]
approval:
  - match: {type: ssh, environment: development}
    rule: self
backends:
  ssh-dev: {type: ssh-ca, ca_key_env: JG_KRL_EXT_CA_KEY, principals: [ubuntu]}
"""


@pytest.fixture
def served_ca(
    db_url: str, tmp_path: Path, start: datetime, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    require(shutil.which("ssh-keygen") is not None, "ssh-keygen is missing (openssh-client)")
    ca = ed25519.Ed25519PrivateKey.generate()
    pem = ca.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    monkeypatch.setenv("JG_KRL_EXT_CA_KEY", pem)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    running = serve(db_url, policy, start)
    try:
        yield running
    finally:
        running.stop()


def user_key(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def certificate(served: Served, request_id: str, key: Path) -> tuple[Path, dict[str, Any]]:
    public = Path(f"{key}.pub").read_text().strip()
    answer = served.client(JANE).post(
        f"/v1/requests/{request_id}/ssh-certificate", json={"public_key": public}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    cert = Path(f"{key}-cert.pub")
    cert.write_text(body["certificate"] + "\n")
    return cert, body


def krl_says(served: Served, tmp_path: Path, cert: Path) -> str:
    """``ssh-keygen -Q``'s verdict on ``cert`` against the KRL jitgate serves now."""
    answer = served.client("gateway").get("/v1/ssh/krl")
    assert answer.status_code == 200
    krl = tmp_path / "jitgate.krl"
    krl.write_bytes(answer.content)
    probe = subprocess.run(
        ["ssh-keygen", "-Q", "-f", str(krl), str(cert)], capture_output=True, text=True
    )
    assert probe.stderr == "", probe.stderr
    if "REVOKED" in probe.stdout:
        assert probe.returncode != 0
        return "revoked"
    assert probe.stdout.strip().endswith("ok") and probe.returncode == 0, probe.stdout
    return "ok"


def extended_grant(served: Served) -> tuple[str, str, datetime]:
    """Jane's active 1 h grant, extended by 1 h (self-approved): ``(grant, extension, old
    end)``."""
    jane = served.client(JANE)
    grant = jane.post("/v1/requests", json={"roles": ["dev-ssh"], "reason": "INC-3"}).json()
    assert grant["state"] == "active"
    old_end = datetime.fromisoformat(grant["ends_at"])
    ext = jane.post(f"/v1/requests/{grant['id']}/extend", json={"duration": "1h", "reason": "m"})
    assert ext.status_code == 201 and ext.json()["state"] == "approved", ext.text
    moved = jane.get(f"/v1/requests/{grant['id']}").json()
    assert datetime.fromisoformat(moved["ends_at"]) == old_end + timedelta(hours=1)
    return grant["id"], ext.json()["id"], old_end


def test_a_certificate_past_the_shortened_end_is_revoked_at_once(
    served_ca: Served, tmp_path: Path
) -> None:
    served = served_ca
    rid, ext, old_end = extended_grant(served)
    cert, issued = certificate(served, rid, user_key(tmp_path, "k1"))
    assert datetime.fromisoformat(issued["valid_before"]) == old_end + timedelta(hours=1)
    assert krl_says(served, tmp_path, cert) == "ok"

    served.clock.advance(timedelta(minutes=10))
    taken_back = served.client(SEC).post(
        f"/v1/requests/{ext}/revoke", json={"reason": "no extension after all"}
    )
    assert taken_back.status_code == 200, taken_back.text
    shown = served.client(JANE).get(f"/v1/requests/{rid}").json()
    assert shown["state"] == "active" and datetime.fromisoformat(shown["ends_at"]) == old_end
    assert krl_says(served, tmp_path, cert) == "revoked"  # at once: was "ok" here

    served.clock.set(old_end + timedelta(seconds=30))  # past the shortened end, no tick yet
    assert krl_says(served, tmp_path, cert) == "revoked"  # was "ok" until a tick ran
    lifecycle.tick(served.app.ctx)
    assert served.client(JANE).get(f"/v1/requests/{rid}").json()["state"] == "expired"
    assert krl_says(served, tmp_path, cert) == "revoked"

    events = served.client(SEC).get(f"/v1/requests/{rid}/events").json()["items"]
    (revoked,) = [e for e in events if e["type"] == "ssh.certificates_revoked"]
    assert revoked["data"]["key_id"] == rid
    assert revoked["data"]["ends_at"] == old_end.isoformat()
    assert [c["serial"] for c in revoked["data"]["certificates"]] == [issued["serial"]]


def test_no_certificate_is_signed_for_a_grant_whose_certificates_are_revoked(
    served_ca: Served, tmp_path: Path
) -> None:
    served = served_ca
    rid, ext, _old_end = extended_grant(served)
    certificate(served, rid, user_key(tmp_path, "k1"))
    served.client(JANE).post(f"/v1/requests/{ext}/revoke", json={"reason": "done sooner"})
    public = Path(f"{user_key(tmp_path, 'k2')}.pub").read_text().strip()
    again = served.client(JANE).post(
        f"/v1/requests/{rid}/ssh-certificate", json={"public_key": public}
    )
    assert again.status_code == 409, again.text
    assert "revoked (KRL)" in again.json()["detail"]


def test_certificates_that_end_with_the_grant_are_never_listed(
    served_ca: Served, tmp_path: Path
) -> None:
    served = served_ca
    rid, _ext, _old_end = extended_grant(served)
    kept, _ = certificate(served, rid, user_key(tmp_path, "kept"))
    served.clock.advance(timedelta(hours=1, minutes=30))  # in the extension's time
    lifecycle.tick(served.app.ctx)
    assert krl_says(served, tmp_path, kept) == "ok"

    other = served.client(JANE).post(
        "/v1/requests", json={"roles": ["dev-ssh"], "reason": "INC-4", "duration": "2h"}
    )
    assert other.status_code == 201, other.text
    other_id = other.json()["id"]
    other_ext = served.client(JANE).post(
        f"/v1/requests/{other_id}/extend", json={"duration": "1h", "reason": "m"}
    )
    served.client(JANE).post(
        f"/v1/requests/{other_ext.json()['id']}/revoke", json={"reason": "not needed"}
    )
    after, _ = certificate(served, other_id, user_key(tmp_path, "after"))  # asked after
    assert krl_says(served, tmp_path, after) == "ok"
    assert krl_says(served, tmp_path, kept) == "ok"
    assert served.client("gateway").get("/v1/ssh/krl").content == _empty_krl(served)


def _empty_krl(served: Served) -> bytes:
    """What the KRL is with nothing revoked (its header times are the clock's)."""
    now = int(served.clock.now().timestamp())
    return build_krl({}, version=0, generated=now)


def test_an_early_revoke_of_the_grant_lists_its_certificate_at_once(
    served_ca: Served, tmp_path: Path
) -> None:
    served = served_ca
    rid, _ext, _old_end = extended_grant(served)
    cert, _ = certificate(served, rid, user_key(tmp_path, "k1"))
    gone = served.client(SEC).post(f"/v1/requests/{rid}/revoke", json={"reason": "incident"})
    assert gone.status_code == 200 and gone.json()["state"] == "revoked"
    assert krl_says(served, tmp_path, cert) == "revoked"
