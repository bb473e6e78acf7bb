"""The CLI as a first-time user meets it, following the README: a database URL jitgate
cannot use, no token, a typo in --db, no policy file, and what --help says. Every failure
is one line on stderr and exit 1, never a traceback nor a password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from jitgate.entrypoints.cli.main import cli

JG = str(Path(sys.executable).with_name("jitgate"))
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = str(REPO / "examples" / "policy.yaml")
NO_ENV = {"JITGATE_TOKEN": None, "JITGATE_DATABASE_URL": None, "JITGATE_POLICY": None}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITGATE_")}
    return subprocess.run(
        [JG, *args], capture_output=True, text=True, env=env, timeout=60, check=False, cwd=cwd
    )


def invoke(*args: str) -> Result:
    return CliRunner(env=NO_ENV).invoke(cli, list(args), prog_name="jitgate")


def one_line(stderr: str, code: int, words: str) -> None:
    assert code == 1, (code, stderr)
    assert "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert words in stderr, stderr


# --- 1. a database URL jitgate cannot use -----------------------------------------------------


def test_db_upgrade_on_mysql_is_refused_in_one_line_without_the_password() -> None:
    done = run("db", "upgrade", "--db", "mysql://root:hunter2@db.internal/jit")
    one_line(
        done.stderr,
        done.returncode,
        "error: unsupported database URL 'mysql://root:***@db.internal/jit' "
        "(use sqlite:///FILE or postgresql://…)",
    )
    assert "hunter2" not in done.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["serve", "--policy", EXAMPLE],
        ["worker", "--policy", EXAMPLE],
        ["db", "upgrade"],
        ["token", "create", "a@example.com"],
        ["token", "ls"],
        ["token", "revoke", "abcdef12"],
        ["audit", "export"],
        ["audit", "verify"],
        ["notifications", "ls"],
        ["reconcile", "--policy", EXAMPLE],
    ],
    ids=lambda c: " ".join(c[:2]),
)
@pytest.mark.parametrize(
    ("url", "words"),
    [
        (
            "mysql+pymysql://app:s3cret@h/d",
            "unsupported database URL 'mysql+pymysql://app:***@h/d'",
        ),
        ("postgresql+asyncpg://app:s3cret@h/d", "unsupported database URL"),
        ("not a url:s3cret@", "is not a database URL"),
    ],
    ids=["mysql", "other-driver", "garbage"],
)
def test_every_command_refuses_an_unsupported_url(command: list[str], url: str, words: str) -> None:
    done = invoke(*command, "--db", url)
    one_line(done.stderr, done.exit_code, words)
    assert "s3cret" not in done.output and done.stdout == ""


# --- 2. no token --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["audit"],
        ["audit", "--request-id", "r1"],
        ["ls"],
        ["show", "r1"],
        ["request", "dev-ssh", "--reason", "x"],
        ["approve", "r1"],
        ["deny", "r1", "--reason", "x"],
        ["revoke", "r1", "--reason", "x"],
        ["extend", "r1", "--for", "1h", "--reason", "x"],
        ["evidence", "r1"],
        ["ssh", "krl", "--out", "krl"],
        ["ssh", "cert", "r1"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_an_api_command_without_a_token_says_so_before_sending_anything(
    command: list[str],
) -> None:
    # nothing listens on port 9: a command that sent anything would say "cannot reach"
    done = invoke(*command, "--server", "http://127.0.0.1:9")
    one_line(done.stderr, done.exit_code, "error: no token: pass --token or set JITGATE_TOKEN")
    empty = CliRunner(env={**NO_ENV, "JITGATE_TOKEN": ""}).invoke(
        cli, [*command, "--server", "http://127.0.0.1:9"]
    )
    one_line(empty.stderr, empty.exit_code, "error: no token")


def test_audit_without_a_token_in_a_real_process() -> None:
    done = run("audit", "--server", "http://127.0.0.1:9")
    one_line(done.stderr, done.returncode, "error: no token: pass --token or set JITGATE_TOKEN")


# --- 10. a typo in --db never makes an empty database ---------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["token", "ls"],
        ["token", "revoke", "abcdef12"],
        ["audit", "verify"],
        ["audit", "export", "--out", "{tmp}/audit.jsonl"],
        ["notifications", "ls"],
        ["notifications", "retry", "n1"],
        ["reconcile", "--policy", EXAMPLE],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_reading_command_refuses_a_sqlite_file_that_does_not_exist(
    command: list[str], tmp_path: Path
) -> None:
    typo = tmp_path / "typo.db"
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    done = invoke(*args, "--db", f"sqlite:///{typo}")
    one_line(done.stderr, done.exit_code, f"error: no database at {typo}: check --db")
    assert list(tmp_path.iterdir()) == []  # neither the database nor the --out file


def test_token_ls_on_a_typo_in_a_real_process(tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    done = run("token", "ls", "--db", f"sqlite:///{typo}")
    one_line(done.stderr, done.returncode, f"no database at {typo}")
    assert not typo.exists()


def test_commands_that_may_create_the_database_still_do(tmp_path: Path) -> None:
    made = tmp_path / "made.db"
    assert invoke("token", "create", "a@example.com", "--db", f"sqlite:///{made}").exit_code == 0
    listed = invoke("token", "ls", "--db", f"sqlite:///{made}")
    assert listed.exit_code == 0 and "a@example.com" in listed.stdout
    other = tmp_path / "other.db"
    assert invoke("db", "upgrade", "--db", f"sqlite:///{other}").exit_code == 0
    assert other.exists()


@pytest.mark.parametrize("command", [["token", "ls"], ["token", "revoke", "--service", "gw"]])
def test_token_ls_and_revoke_leave_an_older_schema_alone(
    command: list[str], tmp_path: Path
) -> None:
    """Only `token create` and `db upgrade` migrate: a newer CLI listing tokens on a live
    database must not move its schema under the replicas that serve it."""
    from jitgate.adapters.db.engine import connect
    from jitgate.adapters.db.migrate import current, expected, upgrade

    url = f"sqlite:///{tmp_path}/old.db"
    db = connect(url)
    try:
        upgrade(db, "0004")
        done = run(*command, "--db", url)
        one_line(done.stderr, done.returncode, "this jitgate needs")
        assert "run `jitgate db upgrade` first" in done.stderr
        assert current(db) == "0004" != expected()
    finally:
        db.dispose()


# --- 8. no policy file; what --help says ------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["policy", "explain", "--user", "a@example.com", "--role", "dev-ssh"],
        ["policy", "oncall", "sre"],
        ["serve"],
        ["worker"],
        ["reconcile"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_missing_policy_gets_no_line_number_and_a_hint(
    command: list[str], tmp_path: Path
) -> None:
    done = run(*command, cwd=tmp_path)
    one_line(
        done.stderr,
        done.returncode,
        "error: no policy file or folder at policy.yaml: pass --policy FILE or set JITGATE_POLICY",
    )
    assert "policy.yaml:1" not in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["worker"],
        ["reconcile"],
        ["db", "upgrade"],
        ["token", "create"],
        ["token", "ls"],
        ["audit", "export"],
        ["notifications", "ls"],
        ["policy", "explain"],
    ],
    ids=" ".join,
)
def test_help_names_the_environment_variables(command: list[str]) -> None:
    shown = " ".join(invoke(*command, "--help").stdout.split())
    names = {"--db": "JITGATE_DATABASE_URL", "--policy": "JITGATE_POLICY"}
    for option, variable in names.items():
        if f"{option} " in shown:
            assert f"env var: {variable}" in shown, shown


def test_help_of_the_people_commands() -> None:
    request = " ".join(invoke("request", "--help").stdout.split())
    assert "Optional: by default the purpose's default, else the roles'" in request
    assert "env var: JITGATE_TOKEN" in request and "env var: JITGATE_SERVER" in request
    audit = " ".join(invoke("audit", "--help").stdout.split())
    assert "--json Print the page as JSON instead of a table." in audit
    explain = " ".join(invoke("policy", "explain", "--help").stdout.split())
    assert "--purpose TEXT The request's purpose" in explain


# --- 4, 5. policy explain: nothing on stdout when refused; plain words for nobody --------------

K8S_ONLY = """\
version: 1
directory:
  users:
    jane@example.com: {groups: [dev]}
roles:
  k8s-prod:
    grants: [{type: kubernetes, environment: production}]
    requestable_by: [dev]
approval:
  - match: {type: ssh, environment: development}
    rule: self
"""


def test_the_readme_explain_example_works() -> None:
    done = invoke(
        "policy", "explain", "--policy", EXAMPLE, "--user", "jane.doe@example.com",
        "--role", "sre-oncall", "--resource", "prod-bastion",
    )  # fmt: skip
    assert done.exit_code == 0, done.stderr
    assert "scope:   ssh/production" in done.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--policy", EXAMPLE, "--role", "sre-oncall", "--resource", "prod-db-01"],
         "error: none of the requested roles grants access to resource 'prod-db-01'"),
        (["--policy", EXAMPLE, "--role", "nope"], "error: unknown role 'nope'"),
        (["--policy", EXAMPLE, "--role", "dev-ssh", "--purpose", "nap"],
         "error: unknown purpose 'nap'"),
    ],
    ids=["resource", "role", "purpose"],
)  # fmt: skip
def test_a_refused_explain_prints_nothing_on_stdout(args: list[str], words: str) -> None:
    done = invoke("policy", "explain", "--user", "jane.doe@example.com", *args)
    one_line(done.stderr, done.exit_code, words)
    assert done.stdout == ""


def test_a_grant_no_rule_covers_is_said_once(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(K8S_ONLY)
    done = invoke(
        "policy", "explain", "--policy", str(policy), "--user", "jane@example.com",
        "--role", "k8s-prod",
    )  # fmt: skip
    one_line(
        done.stderr,
        done.exit_code,
        "error: no approval rule covers kubernetes/production: it cannot be requested",
    )
    assert done.stderr.count("cannot be requested") == 1 and done.stdout == ""
    checked = invoke("policy", "check", str(policy))
    assert checked.exit_code == 0
    assert f"warning: {policy}:7: roles.k8s-prod.grants[0]: no approval entry matches" in (
        checked.stderr
    )
    assert invoke("policy", "check", "--strict", str(policy)).exit_code == 1


def test_explain_says_plainly_when_the_requester_has_no_manager() -> None:
    done = invoke(
        "policy", "explain", "--policy", EXAMPLE, "--user", "lee@example.com",
        "--role", "root-any", "--at", "2026-03-02T10:00:00Z",
    )  # fmt: skip
    assert done.exit_code == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "  - manager: nobody: lee@example.com has no manager in the directory" in lines
    assert "  - group:security: sec@example.com  (members of group security)" in lines
    assert "right now" not in done.stdout
