"""Real OpenSSH for tests: an ``sshd -D`` on a free loopback port with its own host key,
``TrustedUserCAKeys``, ``RevokedKeys`` and either an ``AuthorizedPrincipalsFile`` or an
``AuthorizedPrincipalsCommand``; the real ``ssh`` client to log in; a local unix user
(``jgtest``) to log in as; and a jitgate served over HTTP in a thread (sshd's helper
calls it). Without root or OpenSSH the tests skip, and fail under ``CI=true``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from components import require

SSHD = "/usr/sbin/sshd"
LOGIN_USER = "jgtest"
INSTALL_HINT = "install openssh-server and openssh-client (`make test` does it)"


def require_openssh() -> None:
    require(os.geteuid() == 0, "sshd tests run as root (sshd must switch to the login user)")
    require(Path(SSHD).is_file(), f"{SSHD} is missing: {INSTALL_HINT}")
    for tool in ("ssh", "ssh-keygen"):
        require(shutil.which(tool) is not None, f"{tool} is missing: {INSTALL_HINT}")


def ensure_login_user(name: str = LOGIN_USER) -> str:
    """A local account to log in as; not locked (sshd without PAM refuses ``!`` passwords)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True, capture_output=True)
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    return name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keygen(path: Path, comment: str = "jitgate-test") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def safe_command_dir() -> Path:
    """A directory sshd accepts for AuthorizedPrincipalsCommand (root-owned up to /)."""
    base = Path("/run") if Path("/run").is_dir() else Path("/var/lib")
    path = Path(tempfile.mkdtemp(prefix="jitgate-sshd-", dir=base))
    path.chmod(0o755)
    return path


@dataclass
class Sshd:
    root: Path
    ca_public_key: Path
    revoked_keys: Path
    principals_file: Path | None = None
    principals_command: str | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "sshd.log"

    def config(self) -> str:
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.root / 'host_ed25519'}",
            f"PidFile {self.root / 'sshd.pid'}",
            "AuthorizedKeysFile none",
            f"TrustedUserCAKeys {self.ca_public_key}",
            f"RevokedKeys {self.revoked_keys}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "StrictModes no",
            "UsePAM no",
            "PermitRootLogin no",
            "LogLevel VERBOSE",
        ]
        if self.principals_file is not None:
            lines.append(f"AuthorizedPrincipalsFile {self.principals_file}")
        if self.principals_command is not None:
            lines.append(f"AuthorizedPrincipalsCommand {self.principals_command}")
            lines.append("AuthorizedPrincipalsCommandUser root")
        return "\n".join(lines) + "\n"

    def start(self) -> Sshd:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        keygen(self.root / "host_ed25519", "host")
        config = self.root / "sshd_config"
        for _attempt in range(5):
            self.port = free_port()
            config.write_text(self.config())
            check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
            assert check.returncode == 0, f"sshd refused its config: {check.stderr}"
            log = self.log_path.open("ab")
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log
            )
            log.close()
            if self._wait_listening():
                return self
            self.stop()
        raise RuntimeError(f"sshd did not start:\n{self.log()}")

    def _wait_listening(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return True
            time.sleep(0.05)
        return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def ssh(self, key: Path, certificate: Path, *remote: str, user: str = LOGIN_USER) -> list[str]:
        """The real client's command line: ``ssh … user@127.0.0.1 REMOTE…`` with a key and
        its certificate."""
        return [
            "ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(key),
            "-o", f"CertificateFile={certificate}", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
            f"{user}@127.0.0.1", *remote,
        ]  # fmt: skip

    def login(
        self, key: Path, certificate: Path, user: str = LOGIN_USER
    ) -> subprocess.CompletedProcess[str]:
        """``ssh … user@127.0.0.1 echo ok``."""
        command = self.ssh(key, certificate, "echo", "ok", user=user)
        return subprocess.run(command, capture_output=True, text=True, timeout=60)


@contextmanager
def served(asgi_app: object) -> Iterator[str]:
    """Serve ``asgi_app`` with uvicorn on a free loopback port in a thread; yields its URL."""
    port = free_port()
    config = uvicorn.Config(
        asgi_app,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="jitgate-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the jitgate test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
