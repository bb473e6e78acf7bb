"""A throwaway PostgreSQL server for tests.

``PgServer.start()`` runs ``initdb`` into a fresh temporary directory and starts the server
listening on 127.0.0.1 only (free port, socket directory inside the temporary directory,
``fsync=off``, trust authentication); ``stop()`` shuts it down and removes everything.
PostgreSQL refuses to run as root, so when we are root every server command runs as the
``postgres`` system user through ``runuser`` (or ``su``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found in "
    "/usr/lib/postgresql/*/bin or `pg_config --bindir`. Install them, e.g. "
    "`apt-get install -y postgresql` (Debian/Ubuntu), `dnf install postgresql-server` "
    "or `brew install postgresql`."
)
SERVER_USER = "postgres"


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` of the newest installed PostgreSQL."""
    candidates: list[Path] = []

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit()) or (0,)

    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        candidates.append(Path(found))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for path in candidates:
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """One temporary PostgreSQL cluster; ``url(db)`` names a database in it."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root: Path | None = None
        self.port: int | None = None
        self._as_root = os.geteuid() == 0
        self._counter = 0
        self._options = ""

    # -- running server commands ---------------------------------------------------------

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            runuser = shutil.which("runuser")
            if runuser:
                command = [runuser, "-u", SERVER_USER, "--", *command]
            else:
                quoted = " ".join(_quote(part) for part in command)
                command = ["su", SERVER_USER, "-s", "/bin/sh", "-c", quoted]
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        env.pop("PGDATA", None)
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, cwd="/"
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> PgServer:
        self.root = Path(tempfile.mkdtemp(prefix="jitgate-pg-"))
        if self._as_root:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.root.chmod(0o700)
        data = self.root / "data"
        self._run(
            "initdb",
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        last_error: Exception | None = None
        for _attempt in range(5):
            self.port = free_port()
            options = " ".join(
                [
                    f"-p {self.port}",
                    "-c listen_addresses=127.0.0.1",
                    f"-c unix_socket_directories={self.root}",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=200",
                ]
            )
            self._options = options
            try:
                self.resume()
                return self
            except RuntimeError as exc:  # port taken between probe and bind: try another
                last_error = exc
        raise RuntimeError(f"PostgreSQL did not start: {last_error}\n{self.log()}")

    def resume(self) -> None:
        """Start the server (again, after ``pause``) on its port, with its data."""
        assert self.root is not None
        data, log = str(self.root / "data"), str(self.root / "server.log")
        self._run("pg_ctl", "-D", data, "-l", log, "-o", self._options, "-w", "-t", "60", "start")

    def pause(self) -> None:
        """Stop the server as an outage would (its clients' connections are cut), keeping
        its data for ``resume``."""
        assert self.root is not None
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")

    def log(self) -> str:
        if self.root is None:
            return ""
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        """Stop the server (immediately: it holds nothing worth keeping) and delete its files."""
        root, self.root = self.root, None
        if root is None:
            return
        try:
            if (root / "data" / "postmaster.pid").exists():
                with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                    self._run(
                        "pg_ctl",
                        "-D",
                        str(root / "data"),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                        timeout=60,
                    )
        finally:
            shutil.rmtree(root, ignore_errors=True)

    # -- databases -----------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        assert self.port is not None, "server not started"
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """``CREATE DATABASE`` (``jg_<n>`` by default); returns its URL."""
        import psycopg

        if name is None:
            self._counter += 1
            name = f"jg_{self._counter}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _quote(part: str) -> str:
    return "'" + part.replace("'", "'\"'\"'") + "'"
