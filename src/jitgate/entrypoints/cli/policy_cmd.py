"""``jitgate policy check|explain|oncall``: work on a policy file, no server needed."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from jitgate.domain.durations import format_duration
from jitgate.entrypoints.cli.common import fail, friendly, policy_option

if TYPE_CHECKING:
    from jitgate.service.explain import SpecExplanation


@click.group()
def policy() -> None:
    """Check and explain a policy file (GitOps)."""


@policy.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=True, allow_dash=True))
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too (for CI).")
@friendly
def check(path: str, strict: bool) -> None:
    """Validate PATH (a file, a folder, or - for standard input); print every error with
    file, line and key. A folder means its own *.yaml and *.yml files, merged in name
    order; it is read non-recursively (a subfolder holding policy files is a warning).

    Warnings (no roles at all, a group nobody is in, a person not in directory.users, a
    team without an entry while a rule asks for team leads, a role grant no approval
    entry matches, an approval entry never used, never chosen or never satisfiable,
    escalation that cannot happen, a role without max_duration or that nobody may
    request, a channel no route sends to, two grant_role backends granting one db_role on
    one database) are printed too; they fail the check only with --strict."""
    from jitgate.adapters.policy import PolicyError, check_policy, check_policy_text

    try:
        if path == "-":
            checked = check_policy_text(sys.stdin.read(), "<stdin>")
        else:
            checked = check_policy(path)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(exc.problems)} problem(s) in {path}", err=True)
        raise SystemExit(1) from None
    for warning in checked.warnings:
        click.echo(f"warning: {warning}", err=True)
    loaded = checked.policy
    warned = f", {len(checked.warnings)} warning(s)" if checked.warnings else ""
    click.echo(
        f"{path}: ok ({len(loaded.roles)} roles, {len(loaded.approval)} approval rules, "
        f"{len(loaded.resources)} resources, digest {loaded.digest[:12]}{warned})"
    )
    if strict and checked.warnings:
        raise SystemExit(1)


@policy.command()
@policy_option
@click.option("--user", required=True, help="The requester's email.")
@click.option("--role", "roles", required=True, multiple=True, help="Role (repeatable).")
@click.option("--resource", "resources", multiple=True, help="Resource (repeatable).")
@click.option(
    "--purpose",
    default=None,
    help="The request's purpose (incident-response, …): its default and maximum duration.",
)
@click.option("--at", "at", default=None, help="Explain at this ISO time instead of now.")
@friendly
def explain(
    policy_path: str,
    user: str,
    roles: tuple[str, ...],
    resources: tuple[str, ...],
    purpose: str | None,
    at: str | None,
) -> None:
    """Which rule applies, who can approve right now and why, and the durations.

    When the request could not be made, prints only why, on stderr, and exits 1."""
    from jitgate.adapters.policy import load_policy
    from jitgate.service.explain import explain as run

    loaded = load_policy(policy_path)
    now = _when(at)
    user = user.strip().lower()  # as the API reads an email
    result = run(loaded, user=user, roles=roles, resources=resources, purpose=purpose, now=now)
    if not result.allowed:
        fail(str(result.refusal))
    click.echo(f"user:    {result.user}\nroles:   {', '.join(result.roles)}")
    click.echo("scope:   " + ", ".join(f"{s.type}/{s.environment}" for s in result.scopes))
    maximum = format_duration(result.max_duration) if result.max_duration else "none"
    default = format_duration(result.default_duration) if result.default_duration else "-"
    click.echo(f"duration: default {default}, maximum {maximum}")
    for rule in result.rules:
        need = {
            "self": "self-approved",
            "any": f"any {rule.threshold} of",
            "all": "all of (a different person each)",
        }[rule.kind]
        click.echo(f"\n{rule.label}: {need}")
        for spec in rule.specs:
            click.echo(f"  - {spec.spec}: {_who(spec)}")
        for spec in rule.escalate_to:
            click.echo(f"  after escalation {spec.spec}: {_who(spec)}")


def _who(spec: SpecExplanation) -> str:
    if spec.approvers:
        return f"{', '.join(spec.approvers)}  ({spec.why})"
    return spec.nobody


@policy.command()
@policy_option
@click.argument("schedule")
@click.option("--at", "at", default=None, help="ISO time instead of now.")
@friendly
def oncall(policy_path: str, schedule: str, at: str | None) -> None:
    """Print who is on call for SCHEDULE now (or --at)."""
    from jitgate.adapters.policy import load_policy

    loaded = load_policy(policy_path)
    if schedule not in loaded.directory.oncall:
        fail(f"no on-call schedule {schedule!r} in the policy")
    person = loaded.directory.on_call(schedule, _when(at))
    if person is None:
        fail(f"nobody is on call for {schedule} at that time")
    click.echo(person)


def _when(at: str | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(at)
    except ValueError:
        fail(f"--at {at!r} is not an ISO 8601 time")
    return value if value.tzinfo else value.replace(tzinfo=UTC)
