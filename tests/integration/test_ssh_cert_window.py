"""An SSH certificate is valid for the grant window (SPEC §7), not from the moment it was
issued: jitgate's clock 20 s ahead of a host's must not make the host refuse a certificate
of a grant in force for minutes ("Certificate invalid: not yet valid"). Shown with the real
``ssh-keygen -L`` and a real ``sshd`` whose only source of trust is the CA and a principals
file."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sshd import Sshd, ensure_login_user, keygen, require_openssh, safe_command_dir
from test_ssh_enforcement import POLICY, _ca

from jitgate.adapters.backends.wiring import wire_enforcement
from jitgate.adapters.policy import load_policy
from jitgate.domain.creation import Draft
from jitgate.domain.states import State
from jitgate.service import requests as use
from jitgate.service.backend_access import issue_certificate


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[Sshd, Path]]:
    """A real sshd trusting a fresh CA (its private key's path is yielded)."""
    require_openssh()
    ensure_login_user()
    private, public = _ca(tmp_path)
    krl = tmp_path / "jitgate.krl"
    subprocess.run(["ssh-keygen", "-q", "-k", "-f", str(krl)], check=True, capture_output=True)
    shared = safe_command_dir()  # sshd reads the principals file as the login user
    principals = shared / "principals"
    principals.mkdir(mode=0o755)
    (principals / "jgtest").write_text("jgtest\n")
    (principals / "jgtest").chmod(0o644)
    (tmp_path / "sshd").mkdir()
    server = Sshd(tmp_path / "sshd", public, krl, principals_file=principals / "%u")
    try:
        yield server.start(), private
    finally:
        server.stop()
        shutil.rmtree(shared, ignore_errors=True)


def test_a_host_a_little_behind_jitgates_clock_accepts_a_certificate_of_a_running_grant(
    host: tuple[Sshd, Path], make_ctx: Any, tmp_path: Path
) -> None:
    sshd, ca_key = host
    (tmp_path / "policy.yaml").write_text(POLICY)
    real = datetime.now(UTC).replace(microsecond=0)
    ctx, clock = make_ctx(
        f"sqlite:///{tmp_path}/jg.db",
        load_policy(tmp_path / "policy.yaml"),
        start=real - timedelta(minutes=5),  # the grant began five minutes ago
    )
    wire_enforcement(ctx, ctx.uow.db, environ={"JG_TEST_SSH_CA_KEY": str(ca_key)})
    draft = Draft(roles=("dev-ssh",), reason="INC-3", duration=timedelta(hours=1))
    request = use.create_request(ctx, requester="jane@example.com", draft=draft).request
    assert request.state is State.ACTIVE and request.starts_at is not None

    clock.set(real + timedelta(seconds=20))  # jitgate's clock runs 20 s ahead of the host's
    key = keygen(tmp_path / "id_jane")
    public = Path(f"{key}.pub").read_text()
    issued = issue_certificate(ctx, request_id=request.id, requester=request.requester,
                               public_key=public)  # fmt: skip
    assert issued.valid_after == request.starts_at  # the window's start, not the issuing time
    certificate = Path(f"{key}-cert.pub")
    certificate.write_text(issued.certificate + "\n")

    listed = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(certificate)],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC"},
        check=True,
    ).stdout
    start = request.starts_at.strftime("%Y-%m-%dT%H:%M:%S")
    end = issued.valid_before.strftime("%Y-%m-%dT%H:%M:%S")
    assert f"Valid: from {start} to {end}" in listed, listed

    done = sshd.login(key, certificate)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr + sshd.log()
    assert "not yet valid" not in sshd.log()
