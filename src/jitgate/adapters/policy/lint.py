"""What a valid policy may still get wrong: warnings, with file, line and key path.

Warnings do not stop a load (a policy can be right to name a group nobody is in yet), but
``jitgate policy check`` prints them (``--strict`` fails on them) and the server logs them:
- a group named in ``settings.admins``, ``requestable_by`` or an approver spec that no
  user of the directory belongs to (the directory is the only source of groups): a typo
  there silently means no admin, nobody may request, or nobody may approve;
- a user's ``team`` with no entry in ``directory.teams`` while a rule asks for a team lead;
- a role without ``max_duration``: only a purpose's max caps its grants (and, if it is
  ``extendable``, its extensions), so without a purpose any duration may be asked for;
- a policy with no roles at all (nobody can request anything), and a role that nobody may
  request (``requestable_by`` missing or empty);
- people not in ``directory.users`` (``adapters.policy.lint_people``) and approval
  entries never used, never chosen or never satisfiable (``adapters.policy.lint_approval``);
- a role grant (type/environment) that no ``approval`` entry matches: a request that
  reaches it is refused, so a role with only such grants can never be requested;
- a notification channel that no route (written, or the RFC 10.5.2 defaults) sends to;
- two ``grant_role`` backends granting one ``db_role`` through one ``dsn_env``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jitgate.adapters.policy.checks import Checker, near_hint
from jitgate.adapters.policy.lint_approval import approval_warnings
from jitgate.adapters.policy.lint_people import people_warnings
from jitgate.adapters.policy.problems import Path
from jitgate.domain.policy import Policy, Role, Scope
from jitgate.service.notifications import routes_of


def notice(check: Checker, data: dict[str, Any], policy: Policy) -> None:
    """Add the warnings of ``policy`` (read from ``data``, already valid) to ``check``."""
    groups = {g for user in policy.directory.users.values() for g in user.groups}
    for where, group in _group_names(data):
        if group not in groups:
            near = near_hint(group, groups)
            check.warn(where, f"no user of the directory is in group {group!r}{near}")
    if _asks_team_leads(policy):
        users = (data.get("directory") or {}).get("users") or {}
        for email, entry in users.items():
            team = entry.get("team") if isinstance(entry, dict) else None
            if team is not None and team not in policy.directory.teams:
                path: Path = ("directory", "users", email, "team")
                near = near_hint(team, policy.directory.teams)
                check.warn(path, f"team {team!r} is not in directory.teams{near}: no team lead")
    people_warnings(check, data, policy.directory.users)
    _unapproved_grants(check, data, policy)
    approval_warnings(check, data, policy)
    _unrouted_channels(check, policy)
    _shared_db_roles(check, policy)
    if not policy.roles:
        check.warn(
            ("roles",),
            "the policy defines no roles: nobody can request anything (a folder is read "
            "non-recursively: are the roles in a subfolder?)",
        )
    for role in policy.roles.values():
        _role_limits(check, data, role)


def _role_limits(check: Checker, data: dict[str, Any], role: Role) -> None:
    """A role with no cap on its grants' duration, or that nobody may request."""
    path: Path = ("roles", role.name)
    if role.max_duration is None:
        extends = " and extensions (none at all without a purpose)" if role.extendable else ""
        check.warn(
            path,
            f"no max_duration: only a purpose's max caps this role's grants{extends}, so a "
            "request without a purpose may ask for up to ten years; set max_duration",
        )
    if not role.requestable_by:
        written = "requestable_by" in ((data.get("roles") or {}).get(role.name) or {})
        check.warn(
            (*path, "requestable_by") if written else path,
            f"{'empty' if written else 'no'} requestable_by: nobody may request this role "
            "(list the groups that may)",
        )


def _unapproved_grants(check: Checker, data: dict[str, Any], policy: Policy) -> None:
    """A grant no approval entry matches (``rules_for`` refuses a request that reaches
    it; for ``environment: any``, every environment it reaches needs an entry)."""
    for name, role in policy.roles.items():
        uncovered = {
            grant: [r for r in policy.reach(grant) if policy.rule_for(r) is None]
            for grant in role.grants
        }
        never = all(uncovered.values())
        raw = ((data.get("roles") or {}).get(name) or {}).get("grants") or []
        for grant, missing in uncovered.items():
            if not missing:
                continue
            scopes = ", ".join(f"{s.type}/{s.environment}" for s in missing)
            outcome = (
                f"role {name!r} can never be requested"
                if never
                else "a request that reaches it is refused"
            )
            check.warn(
                _grant_path(name, grant, raw),
                f"no approval entry matches {scopes}: {outcome} (add an approval entry for it)",
            )


def _grant_path(role: str, grant: Scope, raw: list[Any]) -> Path:
    """Where ``grant`` is written in the role's ``grants`` list (the list, if not found)."""
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            continue
        written = (str(item.get("type", "")).strip(), str(item.get("environment", "")).strip())
        if written == (grant.type, grant.environment):
            return ("roles", role, "grants", index)
    return ("roles", role, "grants")


def _unrouted_channels(check: Checker, policy: Policy) -> None:
    used = {name for route in routes_of(policy).values() for name in route.via}
    for name in policy.notifications.channels:
        if name not in used:
            why = (
                ""
                if policy.notifications.routes
                else (
                    " (with no routes written, the RFC 10.5.2 defaults use the slack, email "
                    "and pagerduty channels only)"
                )
            )
            check.warn(
                ("notifications", "channels", name),
                f"no route sends anything to this channel: name it in notifications.routes{why}",
            )


def _shared_db_roles(check: Checker, policy: Policy) -> None:
    """Two ``grant_role`` backends granting one ``db_role`` on one database: each keeps its
    own count of live grants, so one's revoke takes away what the other still grants."""
    seen: dict[tuple[str, str], str] = {}
    for name, config in policy.backends.items():
        if config.get("type") != "postgres" or config.get("mode", "grant_role") != "grant_role":
            continue
        key = (str(config.get("dsn_env")), str(config.get("db_role")))
        if key in seen:
            check.warn(
                ("backends", name, "db_role"),
                f"backend {seen[key]!r} grants db_role {key[1]!r} on the same database "
                f"({key[0]}): one's revoke takes away the other's live grants; attach one "
                "backend to both roles instead",
            )
        else:
            seen[key] = name


def _group_names(data: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    settings = data.get("settings") or {}
    for index, group in enumerate(settings.get("admins") or []):
        yield ("settings", "admins", index), group
    for name, role in (data.get("roles") or {}).items():
        for index, group in enumerate(role.get("requestable_by") or []):
            yield ("roles", name, "requestable_by", index), group
    for index, entry in enumerate(data.get("approval") or []):
        for key in ("any", "all", "escalate_to"):
            for spec_index, spec in enumerate(entry.get(key) or []):
                if isinstance(spec, dict) and isinstance(spec.get("group"), str):
                    yield ("approval", index, key, spec_index, "group"), spec["group"]


def _asks_team_leads(policy: Policy) -> bool:
    specs = (s for rule in policy.approval for s in (*rule.specs, *rule.escalate_to))
    return any(spec.kind == "team_lead" for spec in specs)
