"""The CLI against hostile or mistaken input, as a real `jitgate` process: a requester's
reason that carries terminal escapes and fake lines, request ids that are paths, a
``--server`` that is not jitgate, a token or database URL that cannot work, and a token
that cannot be printed. Every failure is one line (exit 1) or a usage error (exit 2),
never a traceback; nothing a requester typed reaches an approver's terminal raw."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from components import require
from served import Served

JG = str(Path(sys.executable).with_name("jitgate"))
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = str(REPO / "examples" / "policy.yaml")
Done = subprocess.CompletedProcess[str]

ESC = "\x1b"
HOSTILE = f"INC-7{ESC}[1A{ESC}[2K\r\n state     approved\u202eevil{ESC}]0;title\x07\x9b"


def run(*args: str, env: dict[str, str] | None = None) -> Done:
    full = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    full.update(env or {})
    return subprocess.run(
        [JG, *args], capture_output=True, text=True, env=full, timeout=60, check=False
    )


def shell(command: str, env: dict[str, str] | None = None) -> Done:
    """``command`` in sh, for redirections the test needs (``>&-``, ``>/dev/full``)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    full.update(env or {})
    return subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, env=full, timeout=60, check=False
    )


def one_line_error(done: Done, words: str) -> None:
    """Exit 1 and a single ``error: …`` line on stderr that says ``words``."""
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: "), done.stderr
    assert words in done.stderr, done.stderr


def usage_error(done: Done, words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and ESC not in done.stderr, done.stderr
    assert "Usage:" in done.stderr and words in done.stderr, done.stderr


def as_(served: Served, who: str) -> dict[str, str]:
    return {"JITGATE_SERVER": served.url, "JITGATE_TOKEN": served.tokens[who]}


def request_id(served: Served, reason: str = "INC-9") -> str:
    jane = as_(served, "jane.doe@example.com")
    done = run("request", "staging-ssh", "--for", "1h", "--reason", reason, "-q", env=jane)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def terminal_safe(text: str) -> None:
    """No ESC, no C1 control, no bidi override, no carriage return anywhere."""
    for bad in (ESC, "\x9b", "\x07", "\r", "\u202e"):
        assert bad not in text, (bad, text)


# --- 1. server-supplied text is shown escaped, each value on its own line ---------------------


def test_show_prints_a_hostile_reason_escaped_on_its_own_line(served: Served) -> None:
    rid = request_id(served, HOSTILE)
    for who in ("jane.doe@example.com", "priya@example.com"):  # the requester, an approver
        shown = run("show", rid, env=as_(served, who))
        assert shown.returncode == 0, shown.stderr
        terminal_safe(shown.stdout)
        lines = shown.stdout.splitlines()
        assert [line for line in lines if line.startswith("state")] == ["state     pending"]
        (reason,) = [line for line in lines if line.startswith("reason")]
        assert reason == (
            r"reason    INC-7\x1b[1A\x1b[2K\r\n state     approved\u202eevil"
            r"\x1b]0;title\x07\x9b"
        )


def test_ls_and_to_approve_print_a_hostile_reason_on_one_row(served: Served) -> None:
    rid = request_id(served, HOSTILE)
    for who, extra in (("jane.doe@example.com", []), ("priya@example.com", ["--to-approve"])):
        listed = run("ls", *extra, env=as_(served, who))
        assert listed.returncode == 0, listed.stderr
        terminal_safe(listed.stdout)
        rows = listed.stdout.splitlines()
        assert len(rows) == 3 and rows[2].startswith(rid), rows  # header, rule, the request
        assert r"INC-7\x1b[1A" in rows[2]


def test_json_output_keeps_the_reason_exact(served: Served) -> None:
    rid = request_id(served, HOSTILE)
    jane = as_(served, "jane.doe@example.com")
    shown = run("show", rid, "--json", env=jane)
    assert json.loads(shown.stdout)["reason"] == HOSTILE
    terminal_safe(shown.stdout)  # JSON escapes them by itself
    listed = json.loads(run("ls", "--json", env=jane).stdout)
    assert listed["items"][0]["reason"] == HOSTILE


def test_token_ls_and_revoke_show_a_hostile_service_name_escaped(served: Served) -> None:
    """`token create` refuses such a name now; one an older jitgate stored is still shown
    escaped, one line, and its tokens can still be revoked."""
    from jitgate.service.ports import Principal
    from jitgate.service.tokens import hash_token

    db = ["--db", served.app.settings.database_url]
    name = f"gw{ESC}[2J\nfake"
    refused = run("token", "create", "--service", name, *db)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    terminal_safe(refused.stderr)
    now = served.clock.now()
    with served.app.ctx.uow() as uow:  # as an older release stored it: unchecked
        uow.tokens.add(hash_token("jg_legacy"), Principal("service", name), now, None)
        uow.commit()
    listed = run("token", "ls", *db)
    assert listed.returncode == 0, listed.stderr
    terminal_safe(listed.stdout)
    assert r"gw\x1b[2J\nfake" in listed.stdout
    assert len(listed.stdout.splitlines()) == 2 + len(served.tokens) + 1
    revoked = run("token", "revoke", hash_token("jg_legacy")[:12], *db)
    assert revoked.returncode == 0, revoked.stderr
    terminal_safe(revoked.stdout)
    assert len(revoked.stdout.splitlines()) == 1 and r"\nfake" in revoked.stdout


# --- 2. a request id is one path segment, and looks like an id --------------------------------


def test_an_id_that_is_a_path_never_reaches_another_endpoint(served: Served) -> None:
    jane, priya = as_(served, "jane.doe@example.com"), as_(served, "priya@example.com")
    rid, other = request_id(served), request_id(served)
    usage_error(run("show", f"{rid}/events", env=jane), "is not an id")
    usage_error(run("approve", f"{rid}/../{other}", env=priya), "is not an id")
    usage_error(run("deny", f"../{other}", "--reason", "x", env=priya), "is not an id")
    usage_error(run("evidence", "..", env=jane), "is not an id")
    usage_error(run("show", f"{rid}\x01", env=jane), r"\x01")
    usage_error(run("show", f"{rid}{ESC}[2J", env=jane), r"\x1b")
    usage_error(run("ssh", "cert", f"{rid}/x", env=jane), "is not an id")
    for which in (rid, other):
        shown = json.loads(run("show", which, "--json", env=jane).stdout)
        assert shown["state"] == "pending" and shown["approvals"] == []
    one_line_error(run("show", "no-such-request", env=jane), "404")


# --- 3. a --server, --token or --db that cannot work: one line, never a traceback -------------


def test_a_server_that_is_not_a_url_or_not_http(served: Served) -> None:
    token = served.tokens["jane.doe@example.com"]
    one_line_error(run("ls", "--server", "http://[::1", "--token", token), "is not a URL")
    one_line_error(
        run("ls", "--server", "localhost:8080", "--token", token), "not an http:// or https://"
    )
    one_line_error(run("audit", "--server", "http://[::1", "--token", token), "is not a URL")


def test_a_token_that_is_not_printable_ascii(served: Served) -> None:
    for token in ("é", "jg_a\nb", "jg_\x1b[2J"):
        done = run("ls", "--server", served.url, "--token", token)
        one_line_error(done, "the token is not printable ASCII")
        assert ESC not in done.stderr


class _NotJitgate(BaseHTTPRequestHandler):
    """A web server that is not jitgate: ``/v1/requests`` and ``/ok`` answer HTML with 200,
    ``/shape`` answers JSON of another shape, anything else a long HTML 404 page."""

    def do_GET(self) -> None:
        if self.path.startswith("/shape/v1/requests"):
            status, kind, body = 200, "application/json", json.dumps({"items": [{"x": 1}]})
        elif self.path.startswith("/v1/requests"):
            status, kind, body = 200, "text/html", "<html><body>Welcome</body></html>"
        else:
            status, kind = 404, "text/html"
            body = "<html>\n<head><title>404 Not Found</title></head>\n" + "\n".join(
                f"<p>line {n} {ESC}[31mred{ESC}[0m</p>" for n in range(10)
            )
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def not_jitgate() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotJitgate)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_does_not_answer_json(not_jitgate: str) -> None:
    token = ["--token", "jg_x"]
    one_line_error(
        run("ls", "--server", not_jitgate, *token),
        f"error: the server at {not_jitgate} did not answer with JSON (is --server right?)",
    )
    missing = run("show", "r1", "--server", f"{not_jitgate}/nothing", *token)
    one_line_error(missing, f"404 Not Found from {not_jitgate}/nothing")
    assert ESC not in missing.stderr and r"\x1b[31mred" in missing.stderr
    assert len(missing.stderr) < 400
    shape = run("ls", "--server", f"{not_jitgate}/shape", *token)
    one_line_error(shape, "gave an answer jitgate cannot read")


@pytest.mark.parametrize(
    "command",
    [
        ["db", "upgrade"],
        ["token", "create", "a@example.com"],
        ["token", "ls"],
        ["serve", "--policy", EXAMPLE, "--port", "1"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://", "sqlite:///:memory:"])
def test_a_sqlite_url_without_a_file(command: list[str], url: str) -> None:
    done = run(*command, "--db", url)
    one_line_error(done, "a SQLite URL needs a file path, e.g. sqlite:///jitgate.db")
    assert done.stdout == ""


def test_a_database_url_that_cannot_be_parsed_hides_its_password() -> None:
    for url in ("postgresql://u:hunter2@[::1", "postgresql://u:hunter2@db:port/jit"):
        done = run("db", "upgrade", "--db", url)
        one_line_error(done, "is not a database URL")
        assert "hunter2" not in done.stderr and "u:***@" in done.stderr


# --- 4. a token nobody could see does not stay working ----------------------------------------


def _tokens_of(url: str, subject: str) -> list[dict[str, object]]:
    listed = run("token", "ls", "--all", "--json", "--db", url)
    assert listed.returncode == 0, listed.stderr
    return [t for t in json.loads(listed.stdout) if t["subject"] == subject]


def test_token_create_with_stdout_closed_creates_none(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jit.db"
    assert run("db", "upgrade", "--db", url).returncode == 0
    done = shell(f"exec {shlex.quote(JG)} token create q@example.com --db {url} >&-")
    one_line_error(done, "stdout is closed")
    assert _tokens_of(url, "q@example.com") == []


def test_token_create_that_cannot_print_revokes_the_token(tmp_path: Path) -> None:
    require(Path("/dev/full").exists(), "/dev/full is missing")
    url = f"sqlite:///{tmp_path}/jit.db"
    done = shell(f"exec {shlex.quote(JG)} token create q@example.com --db {url} >/dev/full")
    one_line_error(done, "cannot print the token (No space left on device)")
    (made,) = _tokens_of(url, "q@example.com")
    assert made["revoked_at"] is not None
    assert f"token {made['id']} was revoked again" in done.stderr
    working = json.loads(run("token", "ls", "--json", "--db", url).stdout)
    assert [t for t in working if t["subject"] == "q@example.com"] == []


def test_the_ssh_host_helpers_refuse_a_server_that_is_not_a_url(tmp_path: Path) -> None:
    """``ssh authorize`` and ``ssh reap`` (run by sshd and a service manager) fail closed
    in one ``jitgate: …`` line, never a traceback."""
    token = {"JITGATE_TOKEN": "jg_x"}
    state = ["--state-dir", str(tmp_path)]
    for command in (
        ["authorize", "--user", "u", "--key-id", "jitgate:r1:jane@example.com"],
        ["reap"],
    ):
        extra = ["--resource", "prod-bastion"] if command[0] == "authorize" else []
        done = run("ssh", *command, *extra, *state, "--server", "http://[::1", env=token)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
        assert done.stderr.startswith("jitgate: --server 'http://[::1' is not a URL")
        assert done.stdout == ""
