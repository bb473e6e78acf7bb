"""SSH connections tied to jitgate sessions, so that a session jitgate ends is ended in sshd.

sshd has no hook to end a connection it accepted. But it runs ``jitgate ssh authorize`` (its
``AuthorizedPrincipalsCommand``) from the connection's own privileged process, the
``sshd: USER [priv]`` process that lives as long as the connection. The helper finds that
process among its ancestors and remembers it with the session it recorded, in
``STATE/sessions/``. ``jitgate ssh reap`` then, run as root on the host (a systemd timer, or
``--every``):

- ends the connection (SIGTERM to that process; sshd closes the connection and the login's
  processes get SIGHUP) of every session whose termination jitgate asked for
  (``termination_requested_at``: a grant revoked early, or one that ended under
  ``sessions_at_expiry: terminate``), and once the process is gone reports it
  (``POST /v1/sessions/{id}/end {"terminated": true}``): jitgate audits ``session.ended``
  then, at the real time of the end, not when it asked;
- records the end of every session whose connection closed by itself (``{"terminated":
  false}``), so that the evidence of a request shows how long each login lasted and
  never calls a login that closed by itself terminated.

A process is identified by its pid and its start time (``/proc/PID/stat``), so a reused pid
is never signalled, and only a process that still is ``sshd: USER`` for the login's account.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import click
import httpx

from jitgate.entrypoints.cli.client import segment
from jitgate.entrypoints.cli.common import line_safe

SSHD_NAMES = frozenset({"sshd", "sshd-session"})  # sshd-session: OpenSSH 9.8 and later
SETTLE_SECONDS = 5.0  # how long reap waits for a signalled connection to close


@dataclass(frozen=True)
class Connection:
    """One sshd connection's privileged process: its pid and start time (clock ticks)."""

    pid: int
    start: int


@dataclass(frozen=True)
class Login:
    """What ``authorize`` remembers of a login, one file per connection."""

    pid: int
    start: int
    session_id: str
    request_id: str
    user: str
    local_user: str
    key_id: str
    signalled: bool = False  # reap sent SIGTERM: its end is a termination, not a close

    @property
    def connection(self) -> Connection:
        return Connection(self.pid, self.start)


def stat_of(pid: int) -> tuple[str, int, int] | None:
    """``(command name, parent pid, start time)`` of ``pid``, or ``None`` if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.find("(") + 1 : raw.rfind(")")]
    fields = raw[raw.rfind(")") + 2 :].split()
    return name, int(fields[1]), int(fields[19])


def connection_of(pid: int) -> Connection | None:
    """The nearest sshd process among the ancestors of ``pid`` (its parent, when sshd runs
    the helper directly; further up through a wrapper script)."""
    seen = 0
    current = stat_of(pid)
    while current is not None and seen < 16:
        _, parent, _ = current
        if parent <= 1:
            return None
        above = stat_of(parent)
        if above is not None and above[0] in SSHD_NAMES:
            return Connection(parent, above[2])
        current, seen = above, seen + 1
    return None


def alive(connection: Connection, local_user: str) -> bool:
    """Still the same process (pid and start time), and still sshd serving ``local_user``."""
    found = stat_of(connection.pid)
    if found is None or found[0] not in SSHD_NAMES or found[2] != connection.start:
        return False
    try:
        title = Path(f"/proc/{connection.pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    # "sshd: USER [priv]" (sshd-session in OpenSSH 9.8 and later); "sshd: USER@pts/0" below it
    text = title.decode(errors="replace")
    return any(text.startswith(f"{found[0]}: {local_user}{mark}") for mark in (" ", "@"))


def _folder(state_dir: Path) -> Path:
    return state_dir / "sessions"


def _file(state_dir: Path, connection: Connection) -> Path:
    return _folder(state_dir) / f"{connection.pid}-{connection.start}.json"


def recalled(state_dir: Path, connection: Connection, key_id: str) -> str | None:
    """The session already recorded for this connection and certificate (sshd asks the
    helper twice per login: the key query, then the signed attempt)."""
    login = _read(_file(state_dir, connection))
    return login.session_id if login is not None and login.key_id == key_id else None


def remember(state_dir: Path, login: Login) -> None:
    folder = _folder(state_dir)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = _file(state_dir, login.connection)
    partial = target.with_suffix(".tmp")
    partial.write_text(json.dumps(asdict(login)))
    partial.replace(target)


def logins(state_dir: Path) -> list[tuple[Path, Login]]:
    folder = _folder(state_dir)
    if not folder.is_dir():
        return []
    found = [(path, _read(path)) for path in sorted(folder.glob("*.json"))]
    return [(path, login) for path, login in found if login is not None]


def _read(path: Path) -> Login | None:
    try:
        return Login(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def end_connection(login: Login) -> bool:
    """SIGTERM to the connection's sshd process, if it still is that process."""
    if not alive(login.connection, login.local_user):
        return False
    try:
        os.kill(login.pid, signal.SIGTERM)
    except OSError:
        return False
    return True


def read_token(token_file: Path | None) -> tuple[str | None, str]:
    """The service token: ``JITGATE_TOKEN``, or a file only its owner can read; or ``None``
    and why not, for the caller's one line."""
    if token_file is None:
        token = os.environ.get("JITGATE_TOKEN") or None
        return token, "no service token (JITGATE_TOKEN or --token-file)"
    shown = line_safe(token_file)
    try:
        info = token_file.stat()
        if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            return None, f"refusing the token file {shown}: it must be ours and mode 0600"
        token = token_file.read_text().strip() or None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not text"
        return None, f"cannot read the token file {shown}: {why}"
    return token, f"the token file {shown} is empty"


def client(server: str, token: str, agent: str) -> httpx.Client:
    """The host helpers' client; a ``--server`` that is not a URL or a token that is not
    printable ASCII is one line (``jitgate: …``) and exit 1, never a traceback."""
    if not (token.isascii() and token.isprintable()):
        click.echo("jitgate: the service token is not printable ASCII", err=True)
        sys.exit(1)
    headers = {"Authorization": f"Bearer {token}", "User-Agent": agent}
    try:
        return httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=5.0)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        click.echo(f"jitgate: --server {server!r} is not a URL: {line_safe(exc)}", err=True)
        sys.exit(1)


def reap_once(http: httpx.Client, state_dir: Path) -> list[str]:
    """One pass over the remembered logins; what it did, one line each."""
    done = []
    for path, login in logins(state_dir):
        if not alive(login.connection, login.local_user):  # closed, or ended by us before
            done += _report_end(http, path, login, "ended by jitgate")
            continue
        answer = http.get(f"/v1/sessions/{segment(login.session_id)}")
        if answer.status_code == 404:  # not jitgate's (any more): leave the process alone
            path.unlink(missing_ok=True)
            continue
        answer.raise_for_status()
        session = answer.json()
        # ``ended_at`` alone: a jitgate from before termination requests ended it itself
        if not (session.get("termination_requested_at") or session.get("ended_at")):
            continue
        reason = session.get("termination_reason") or session.get("end_reason")
        done += _terminate(http, state_dir, path, login, str(reason or "ended by jitgate"))
    return done


def _terminate(
    http: httpx.Client, state_dir: Path, path: Path, login: Login, reason: str
) -> list[str]:
    """End the connection; report the end once its process is gone (else on a later pass)."""
    if not end_connection(login):
        return []  # gone meanwhile: closed by itself, recorded on the next pass
    signalled = replace(login, signalled=True)
    remember(state_dir, signalled)
    deadline = time.monotonic() + SETTLE_SECONDS
    while alive(login.connection, login.local_user) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(login.connection, login.local_user):
        return [f"session {login.session_id}: connection {login.pid} signalled, still open"]
    return _report_end(http, path, signalled, reason)


def _report_end(http: httpx.Client, path: Path, login: Login, reason: str) -> list[str]:
    """``POST /v1/sessions/{id}/end``: terminated (we signalled it) or closed by itself."""
    url = f"/v1/sessions/{segment(login.session_id)}/end"
    answer = http.post(url, json={"terminated": login.signalled})
    if answer.status_code == 422:  # a jitgate that does not know "terminated" yet
        answer = http.post(url, json={})
    if answer.status_code not in (200, 404, 409):  # 409: its end is recorded already
        return [f"session {login.session_id}: end not recorded ({answer.status_code})"]
    path.unlink(missing_ok=True)
    if answer.status_code != 200:
        return []
    if login.signalled:
        return [
            f"session {login.session_id} of {login.request_id}: connection {login.pid} "
            f"of {login.user} ended ({reason}), recorded"
        ]
    return [f"session {login.session_id} of {login.request_id}: closed, recorded"]


def host_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--server`` and ``--token-file``, shared by the host helpers (authorize, reap)."""
    server = click.option(
        "--server",
        envvar="JITGATE_SERVER",
        default="http://127.0.0.1:8080",
        show_default=True,
        help="jitgate's URL (or JITGATE_SERVER).",
    )
    token_file = click.option(
        "--token-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="The service token, in a file of mode 0600 (or JITGATE_TOKEN).",
    )
    return server(token_file(command))


@click.command()
@host_options
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/run/jitgate-ssh",
    show_default=True,
    help="The --state-dir of `jitgate ssh authorize`.",
)
@click.option(
    "--every",
    type=click.FloatRange(min=0.5),
    default=None,
    help="Repeat every SECONDS (run as a service); by default one pass (for a timer).",
)
def reap(server: str, token_file: Path | None, state_dir: Path, every: float | None) -> None:
    """End the SSH connections of sessions jitgate asked to end, and report every end.

    Run as root on the sshd host, with the service token of `jitgate ssh authorize`: a
    grant revoked early (or ending under `sessions_at_expiry: terminate`) then ends its
    open SSH logins too, which sshd alone cannot do. Each end is reported to jitgate
    (terminated, or closed by itself), which audits it at that time."""
    token, why = read_token(token_file)
    if token is None:
        click.echo(f"jitgate: {why}", err=True)
        sys.exit(1)
    with client(server, token, "jitgate-ssh-reap") as http:
        while True:
            try:
                for line in reap_once(http, state_dir):
                    click.echo(f"jitgate: {line_safe(line)}")
            except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
                click.echo(f"jitgate: cannot reach {server}: {type(exc).__name__}", err=True)
                if every is None:
                    sys.exit(1)
            if every is None:
                return
            time.sleep(every)
