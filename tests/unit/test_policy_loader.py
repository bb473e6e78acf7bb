"""The policy loader (SPEC §2): examples/policy.yaml, and every problem with file, line and path."""

from __future__ import annotations

import hashlib
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jitgate.adapters.policy import PolicyError, PolicyProblem, load_policy, load_policy_text
from jitgate.domain.policy import (
    ApprovalRule,
    ApproverSpec,
    Match,
    Policy,
    Purpose,
    Resource,
    Route,
    Scope,
    Settings,
    Team,
    User,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"

MINIMAL = "version: 1\n"


def _problems(text: str, filename: str = "p.yaml") -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as caught:
        load_policy_text(textwrap.dedent(text), filename)
    return caught.value.problems


def _where(text: str) -> list[tuple[int, str]]:
    return [(p.line, p.path) for p in _problems(text)]


def _one(text: str) -> PolicyProblem:
    found = _problems(text)
    assert len(found) == 1, found
    return found[0]


# --- the example policy -----------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> Policy:
    return load_policy(EXAMPLE)


def test_example_approval_table_is_rfc_10_3_1(example: Policy) -> None:
    g, oncall = ApproverSpec("group", "sre"), ApproverSpec("oncall", "sre")
    manager, lead = ApproverSpec("manager"), ApproverSpec("team_lead")
    expected = (
        ApprovalRule(0, Match("ssh", "development"), "self"),
        ApprovalRule(1, Match("ssh", "staging"), "any", (lead, g)),
        ApprovalRule(
            2,
            Match("ssh", "production"),
            "all",
            (oncall, manager),
            escalate_to=(ApproverSpec("group", "sre-leads"),),
        ),
        ApprovalRule(3, Match("database", "development"), "self"),
        ApprovalRule(4, Match("database", "staging"), "self"),
        ApprovalRule(
            5,
            Match("database", "production"),
            "any",
            (ApproverSpec("oncall", "dba"),),
            escalate_to=(ApproverSpec("group", "dba"),),
        ),
        ApprovalRule(6, Match("root", "any"), "all", (ApproverSpec("group", "security"), manager)),
        ApprovalRule(7, Match("kubernetes", "development"), "self"),
        ApprovalRule(8, Match("kubernetes", "staging"), "self"),
        ApprovalRule(
            9,
            Match("kubernetes", "production"),
            "any",
            (oncall,),
            escalate_to=(ApproverSpec("group", "sre-leads"),),
        ),
    )
    assert example.approval == expected
    root_rule = example.rule_for(Scope("root", "staging"))
    assert root_rule is not None and root_rule.index == 6
    assert example.rule_for(Scope("ssh", "qa")) is None


def test_example_settings_purposes_and_resources(example: Policy) -> None:
    assert example.settings == Settings(
        public_url="http://127.0.0.1:8080",
        pending_ttl=timedelta(hours=1),
        escalate_after=timedelta(minutes=30),
        expiry_warning=timedelta(minutes=15),
        sessions_at_expiry="continue",
        max_schedule_ahead=timedelta(days=7),
        admins=("security",),
    )
    h = timedelta(hours=1)
    assert example.purposes == {
        "incident-response": Purpose("incident-response", 2 * h, 8 * h),
        "debugging": Purpose("debugging", h, 4 * h),
        "maintenance": Purpose("maintenance", 4 * h, 8 * h),
        "break-glass": Purpose("break-glass", timedelta(minutes=30), h),
    }
    assert example.resources == {
        "prod-db-01": Resource("prod-db-01", "database", "production"),
        "staging-db-01": Resource("staging-db-01", "database", "staging"),
        "dev-db-01": Resource("dev-db-01", "database", "development"),
        "prod-bastion": Resource("prod-bastion", "ssh", "production"),
        "prod-k8s": Resource("prod-k8s", "kubernetes", "production"),
    }


def test_example_roles(example: Policy) -> None:
    h = timedelta(hours=1)
    summary = {
        name: (
            {(s.type, s.environment) for s in r.grants},
            set(r.requestable_by),
            r.default_duration,
            r.max_duration,
            r.extendable,
            r.backends,
        )
        for name, r in example.roles.items()
    }
    dev, stg, prod = "development", "staging", "production"
    assert summary == {
        "sre-oncall": (
            {("ssh", prod), ("kubernetes", prod)},
            {"developers", "sre"},
            2 * h,
            8 * h,
            True,
            (),
        ),
        "dev-ssh": ({("ssh", dev)}, {"developers", "sre"}, 4 * h, 8 * h, False, ()),
        "staging-ssh": ({("ssh", stg)}, {"developers", "sre"}, 2 * h, 8 * h, False, ()),
        "db-readonly-nonprod": (
            {("database", dev), ("database", stg)},
            {"developers", "dba"},
            2 * h,
            8 * h,
            False,
            (),
        ),
        "db-prod": ({("database", prod)}, {"developers", "dba", "sre"}, h, 4 * h, True, ()),
        "k8s-nonprod": (
            {("kubernetes", dev), ("kubernetes", stg)},
            {"developers", "sre"},
            4 * h,
            8 * h,
            False,
            (),
        ),
        "k8s-prod": ({("kubernetes", prod)}, {"developers", "sre"}, h, 4 * h, False, ()),
        "root-any": (
            {("root", prod), ("root", stg), ("root", dev)},
            {"sre", "security"},
            h,
            2 * h,
            False,
            (),
        ),
    }
    assert example.roles["sre-oncall"].description


def test_example_notifications_rfc_10_5(example: Policy) -> None:
    assert example.notifications.routes == {  # RFC 10.5.2, plus the SIEM and Teams
        "request.created": Route("approvers", ("slack", "email", "teams", "siem")),
        "request.approved": Route("requester", ("slack", "email", "siem")),
        "request.denied": Route("requester", ("slack", "email", "siem")),
        "request.expired": Route("requester", ("slack", "siem")),
        "access.expiring": Route("requester", ("slack", "siem")),
        "request.urgent": Route("oncall", ("pagerduty", "siem")),
        "request.escalated": Route("escalate_to", ("slack", "email", "pagerduty", "siem")),
    }
    channels = example.notifications.channels
    assert channels["slack"] == {
        "type": "slack",
        "webhook_url_env": "SLACK_WEBHOOK_URL",
        "channel": "#access-requests",
    }
    assert channels["pagerduty"] == {"type": "pagerduty", "routing_key_env": "PD_ROUTING_KEY"}
    assert channels["email"] == {
        "type": "email",
        "smtp_host": "127.0.0.1",
        "smtp_port": 8025,
        "starttls": False,
        "sender": "jit@example.com",
    }
    assert channels["teams"] == {"type": "teams", "webhook_url_env": "TEAMS_WEBHOOK_URL"}
    assert channels["siem"] == {
        "type": "webhook",
        "url_env": "SIEM_WEBHOOK_URL",
        "secret_env": "SIEM_WEBHOOK_SECRET",
    }
    assert example.backends == {
        "ssh-prod": {"type": "ssh-ca", "ca_key_file_env": "SSH_CA_KEY", "principals": ["ubuntu"]},
        "prod-pg": {
            "type": "postgres",
            "dsn_env": "PROD_PG_DSN",
            "db_role": "readonly",
            "mode": "ephemeral_user",
        },
    }


def test_example_directory(example: Policy) -> None:
    d = example.directory
    assert len(d.users) == 10
    assert d.users["jane.doe@example.com"] == User(
        "jane.doe@example.com", "payments", "mark.lee@example.com", ("developers",)
    )
    assert d.users["lee@example.com"].groups == ("sre", "sre-leads")
    assert d.members("dba") == {"dana@example.com", "dave@example.com"}
    assert d.teams == {
        "payments": Team("payments", "priya@example.com"),
        "sre": Team("sre", "lee@example.com"),
        "data": Team("data", "dana@example.com"),
        "security": Team("security", "sec@example.com"),
    }
    assert d.team_lead_of("jane.doe@example.com") == "priya@example.com"
    sre = d.oncall["sre"]
    assert sre.rotation == ("sam@example.com", "sue@example.com")
    assert sre.shift == timedelta(days=7)
    assert sre.starts == datetime(2026, 1, 5, 9, tzinfo=UTC)
    assert len(sre.overrides) == 1
    assert d.oncall["dba"].rotation == ("dana@example.com", "dave@example.com")
    assert d.on_call("sre", datetime(2026, 1, 13, tzinfo=UTC)) == "sue@example.com"


def test_example_digest_is_sha256_of_file(example: Policy) -> None:
    assert example.digest == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()


# --- problems: all of them, with file, line and path --------------------------------------

SEVERAL = """\
version: 1
settings:
  pending_ttl: banana
  sessions_at_expiry: sometimes
roles:
  ops:
    grants: [{type: ssh, environment: production}]
    max_durtion: 2h
    default_duration: 4h
    max_duration: 1h
approval:
  - match: {type: ssh, environment: production}
    all: [{oncall: ghost}, {manager: false}]
  - match: {type: ssh, environment: staging}
    rule: self
    any: [{group: sre}]
"""


def test_several_problems_all_reported_with_lines_and_paths() -> None:
    found = _problems(SEVERAL, "policies/prod.yaml")
    assert [(p.file, p.line, p.path) for p in found] == [
        ("policies/prod.yaml", 3, "settings.pending_ttl"),
        ("policies/prod.yaml", 4, "settings.sessions_at_expiry"),
        ("policies/prod.yaml", 8, "roles.ops.max_durtion"),
        ("policies/prod.yaml", 9, "roles.ops.default_duration"),
        ("policies/prod.yaml", 13, "approval[0].all[0].oncall"),
        ("policies/prod.yaml", 13, "approval[0].all[1].manager"),
        ("policies/prod.yaml", 14, "approval[1]"),
    ]
    assert "longer than max_duration" in found[3].message


def test_policy_error_str_is_one_problem_per_line() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy_text(SEVERAL, "p.yaml")
    lines = str(caught.value).splitlines()
    assert len(lines) == 7
    assert lines[0].startswith("p.yaml:3: settings.pending_ttl: ")
    problem = PolicyProblem("f.yaml", 12, "roles.x", "boom")
    assert str(problem) == "f.yaml:12: roles.x: boom"


def test_typo_key_is_an_error_with_suggestion() -> None:
    problem = _one(
        """\
        version: 1
        roles:
          sre:
            grants: [{type: ssh, environment: production}]
            max_durtion: 8h
        """
    )
    assert (problem.line, problem.path) == (5, "roles.sre.max_durtion")
    assert "max_duration" in problem.message


@pytest.mark.parametrize("bad", ["banana", "-5m", "0s", "999999999999d"])
def test_bad_duration(bad: str) -> None:
    problem = _one(f"version: 1\npurposes:\n  debugging:\n    default: 1h\n    max: {bad}\n")
    assert (problem.line, problem.path) == (5, "purposes.debugging.max")
    assert repr(bad) in problem.message


def test_purpose_default_longer_than_max() -> None:
    problem = _one("version: 1\npurposes:\n  p: {default: 4h, max: 1h}\n")
    assert (problem.line, problem.path) == (3, "purposes.p.default")


def test_oncall_spec_naming_missing_schedule() -> None:
    problem = _one(
        """\
        version: 1
        directory:
          oncall:
            sre: {rotation: [a@example.com], shift: 7d, starts: 2026-01-05T09:00:00Z}
        approval:
          - match: {type: database, environment: production}
            any:
              - {oncall: sre}
              - {oncall: dba}
        """
    )
    assert (problem.line, problem.path) == (9, "approval[0].any[1].oncall")
    assert "'dba'" in problem.message


def test_role_naming_unknown_backend() -> None:
    problem = _one(
        """\
        version: 1
        backends:
          ssh-prod: {type: ssh-ca, ca_key_file_env: SSH_CA_KEY}
        roles:
          r:
            grants: [{type: ssh, environment: production}]
            backends:
              - ssh-prod
              - pg-prod
        """
    )
    assert (problem.line, problem.path) == (9, "roles.r.backends[1]")
    assert "pg-prod" in problem.message


def test_role_backends_resolve() -> None:
    policy = load_policy_text(
        "version: 1\nbackends: {b: {type: webhook, url: 'https://x.example'}}\n"
        "roles: {r: {grants: [{type: ssh, environment: staging}], backends: [b]}}\n"
    )
    assert policy.roles["r"].backends == ("b",)


@pytest.mark.parametrize(
    "key", ["webhook_url", "token", "secret", "password", "routing_key", "api_key"]
)
def test_inline_secret_rejected(key: str) -> None:
    problem = _one(
        f"""\
        version: 1
        notifications:
          channels:
            hook:
              type: webhook
              {key}: hunter2-s3cr3t
        """
    )
    assert (problem.line, problem.path) == (6, f"notifications.channels.hook.{key}")
    assert f"{key}_env" in problem.message
    assert "hunter2" not in problem.message


def test_inline_secret_in_backend_rejected_and_env_name_checked() -> None:
    found = _where(
        """\
        version: 1
        backends:
          pg: {type: postgres, dsn: "postgresql://u:pw@h/db"}
          hook: {type: webhook, secret_env: "not a var"}
        """
    )
    assert found == [(3, "backends.pg.dsn"), (4, "backends.hook.secret_env")]


def test_channel_type_and_routes_checked() -> None:
    found = _where(
        """\
        version: 1
        notifications:
          channels:
            fax: {type: fax}
            slack: {type: slack, webhook_url_env: SLACK}
          routes:
            request.created: {to: everybody, via: [slack]}
            request.denied: {to: requester, via: [slack, nowhere]}
            request.exploded: {to: requester, via: [slack]}
        """
    )
    assert found == [
        (4, "notifications.channels.fax.type"),
        (7, "notifications.routes.request.created.to"),
        (8, "notifications.routes.request.denied.via[1]"),
        (9, "notifications.routes.request.exploded"),
    ]


def test_yaml_syntax_error_has_its_line() -> None:
    problem = _one("version: 1\nroles:\n  r: {grants: [\n  q: 1\n: :\n")
    assert problem.line in (4, 5)
    assert problem.message.startswith("YAML syntax error")
    problem = _one("version: 1\nsettings:\n  pending_ttl: 1h\n bad_indent: 2\n")
    assert problem.line == 4
    assert problem.path == ""


def test_duplicate_keys() -> None:
    found = _problems(
        """\
        version: 1
        roles:
          r: {grants: [{type: ssh, environment: staging}]}
          r: {grants: [{type: ssh, environment: production}]}
        """
    )
    assert [(p.line, p.path) for p in found] == [(4, "roles.r")]
    assert "duplicate" in found[0].message and "line 3" in found[0].message


def test_override_from_not_before_until() -> None:
    problem = _one(
        """\
        version: 1
        directory:
          oncall:
            sre:
              rotation: [sam@example.com]
              shift: 7d
              starts: 2026-01-05T09:00:00Z
              overrides:
                - {user: sue@example.com, from: 2026-02-02T00:00:00Z, until: 2026-02-02T00:00:00Z}
        """
    )
    assert (problem.line, problem.path) == (9, "directory.oncall.sre.overrides[0].until")


def test_approval_entry_shapes() -> None:
    found = _where(
        """\
        version: 1
        approval:
          - match: {type: ssh}
          - rule: everyone
          - all: [{group: a}]
            threshold: 2
          - any: []
          - any: [{group: a, user: b@example.com}]
          - rule: self
            escalate_to: [{group: leads}]
          - any: [{group: a}]
            threshold: 0
        """
    )
    assert found == [
        (3, "approval[0]"),
        (4, "approval[1].rule"),
        (6, "approval[2].threshold"),
        (7, "approval[3].any"),
        (8, "approval[4].any[0]"),
        (10, "approval[5].escalate_to"),
        (12, "approval[6].threshold"),
    ]


def test_threshold_and_user_specs_read() -> None:
    policy = load_policy_text(
        "version: 1\napproval:\n"
        "  - {match: {type: root}, any: [{group: sec}, {user: Boss@Example.com}], threshold: 2}\n"
    )
    rule = policy.approval[0]
    assert rule.match == Match("root", None)
    assert rule.specs == (ApproverSpec("group", "sec"), ApproverSpec("user", "boss@example.com"))
    assert rule.threshold == 2


def test_a_spec_repeated_in_all_asks_for_that_many_people() -> None:
    """``all: [{group: sre}, {group: sre}]``: two different SREs (SPEC §2: each spec by a
    different person); in ``any`` a repeated spec adds nothing and is read once."""
    policy = load_policy_text(
        "version: 1\napproval:\n"
        "  - {match: {type: root}, all: [{group: sre}, {group: sre}]}\n"
        "  - {match: {type: ssh}, any: [{group: sre}, {group: sre}]}\n"
    )
    sre = ApproverSpec("group", "sre")
    assert policy.approval[0].specs == (sre, sre)
    assert policy.approval[1].specs == (sre,)


def test_top_level_shape_and_version() -> None:
    assert _one("- 1\n- 2\n").message.startswith("the top level must be a mapping")
    assert _one("settings: {}\n").path == "version"
    assert _one("version: 2\n").path == "version"
    assert _where("version: 1\nrolez: {}\n") == [(2, "rolez")]


def test_defaults_when_sections_absent() -> None:
    policy = load_policy_text(MINIMAL)
    assert policy.settings == Settings()
    assert policy.notifications.routes == {}
    assert policy.approval == ()
    assert policy.digest == hashlib.sha256(MINIMAL.encode()).hexdigest()


def test_emails_lower_cased_and_datetimes_utc() -> None:
    policy = load_policy_text(
        textwrap.dedent(
            """\
            version: 1
            directory:
              users:
                Jane.Doe@Example.COM: {team: payments, manager: Mark@Example.com}
              teams:
                payments: {lead: Priya@Example.com}
              oncall:
                naive: {rotation: [Sam@Example.com], shift: 12h, starts: "2026-01-05 09:00:00"}
                offset: {rotation: [a@example.com], shift: 1d, starts: "2026-01-05T11:00:00+02:00"}
            """
        )
    )
    d = policy.directory
    assert d.users["jane.doe@example.com"].manager == "mark@example.com"
    assert d.teams["payments"].lead == "priya@example.com"
    assert d.oncall["naive"].rotation == ("sam@example.com",)
    assert d.oncall["naive"].starts == datetime(2026, 1, 5, 9, tzinfo=UTC)
    assert d.oncall["offset"].starts == datetime(2026, 1, 5, 9, tzinfo=UTC)
    assert d.user("JANE.DOE@example.com").team == "payments"


def test_directory_problems() -> None:
    found = _where(
        """\
        version: 1
        directory:
          users:
            a@example.com: {groups: [x]}
            A@Example.com: {}
            not-an-email: {}
          oncall:
            s: {rotation: [], shift: 7d, starts: 2026-01-05}
        """
    )
    assert found == [
        (5, "directory.users.A@Example.com"),
        (6, "directory.users.not-an-email"),
        (8, "directory.oncall.s.rotation"),
        (8, "directory.oncall.s.starts"),
    ]


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path / "nope.yaml")
    assert caught.value.problems[0].file.endswith("nope.yaml")


# --- folders ------------------------------------------------------------------------------


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_folder_merge(tmp_path: Path) -> None:
    a = _write(
        tmp_path,
        "10-base.yaml",
        """\
        version: 1
        settings: {pending_ttl: 2h}
        directory:
          users: {a@example.com: {groups: [sre]}}
        roles:
          dev: {grants: [{type: ssh, environment: development}]}
        approval:
          - {match: {type: ssh, environment: development}, rule: self}
        """,
    )
    b = _write(
        tmp_path,
        "20-prod.yml",
        """\
        settings: {escalate_after: 10m}
        directory:
          users: {b@example.com: {groups: [sre]}}
        roles:
          prod: {grants: [{type: ssh, environment: production}]}
        approval:
          - {match: {type: ssh, environment: production}, any: [{group: sre}]}
        """,
    )
    _write(tmp_path, "README.md", "not: [policy\n")
    policy = load_policy(tmp_path)
    assert set(policy.roles) == {"dev", "prod"}
    assert set(policy.directory.users) == {"a@example.com", "b@example.com"}
    assert policy.settings.pending_ttl == timedelta(hours=2)
    assert policy.settings.escalate_after == timedelta(minutes=10)
    assert [(r.index, r.match.environment, r.kind) for r in policy.approval] == [
        (0, "development", "self"),
        (1, "production", "any"),
    ]
    assert policy.digest == hashlib.sha256(a.read_bytes() + b.read_bytes()).hexdigest()


def test_folder_duplicate_role_names_both_files(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "a.yaml",
        "version: 1\nroles:\n  ops: {grants: [{type: ssh, environment: staging}]}\n",
    )
    _write(
        tmp_path,
        "b.yaml",
        "roles:\n  other: {grants: [{type: ssh, environment: staging}]}\n"
        "  ops: {grants: [{type: ssh, environment: production}]}\n",
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path)
    (problem,) = caught.value.problems
    a, b = str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")
    assert (problem.file, problem.line, problem.path) == (b, 3, "roles.ops")
    assert f"{a}:3" in problem.message and f"{b}:3" in problem.message


def test_folder_problems_name_their_file_and_merged_index(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "1.yaml",
        "version: 1\napproval:\n  - {match: {type: ssh}, rule: self}\n",
    )
    _write(
        tmp_path,
        "2.yaml",
        "version: 2\napproval:\n  - match: {type: db}\n    any: [{oncall: ghost}]\n",
    )
    found = _folder_problems(tmp_path)
    b = str(tmp_path / "2.yaml")
    assert [(p.file, p.line, p.path) for p in found] == [
        (b, 1, "version"),
        (b, 4, "approval[1].any[0].oncall"),
    ]


def test_folder_syntax_error_names_file(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", "version: 1\n")
    _write(tmp_path, "b.yaml", "roles: {\n")
    found = _folder_problems(tmp_path)
    assert [(p.file, p.path) for p in found] == [(str(tmp_path / "b.yaml"), "")]


def test_empty_folder(tmp_path: Path) -> None:
    assert len(_folder_problems(tmp_path)) == 1


def _folder_problems(folder: Path) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as caught:
        load_policy(folder)
    return caught.value.problems
