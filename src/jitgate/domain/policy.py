"""Policy value objects (SPEC §2). Immutable: a loaded policy is never mutated, only replaced.

The loader in ``jitgate.config`` builds these from YAML; the domain only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

SpecKind = Literal["group", "team_lead", "manager", "oncall", "user"]
RuleKind = Literal["self", "any", "all"]
ANY = "any"


@dataclass(frozen=True)
class ApproverSpec:
    """One way to name approvers: ``{group: sre}``, ``{team_lead: true}``, ``{oncall: sre}``…"""

    kind: SpecKind
    value: str = ""

    def as_dict(self) -> dict[str, Any]:
        if self.kind in ("team_lead", "manager"):
            return {self.kind: True}
        return {self.kind: self.value}

    def label(self) -> str:
        return self.kind if self.kind in ("team_lead", "manager") else f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class Scope:
    """An access type in an environment; ``environment == "any"`` matches every environment."""

    type: str
    environment: str

    def covers(self, other: Scope) -> bool:
        type_ok = self.type in (ANY, other.type)
        env_ok = self.environment in (ANY, other.environment)
        return type_ok and env_ok


@dataclass(frozen=True)
class Match:
    """The ``match`` of an approval entry; ``None`` or ``any`` matches everything."""

    type: str | None = None
    environment: str | None = None

    def fits(self, scope: Scope) -> bool:
        type_ok = self.type in (None, ANY, scope.type)
        env_ok = self.environment in (None, ANY, scope.environment)
        return type_ok and env_ok


@dataclass(frozen=True)
class ApprovalRule:
    """One entry of ``approval:``; ``index`` is its position (first fitting entry wins)."""

    index: int
    match: Match
    kind: RuleKind
    specs: tuple[ApproverSpec, ...] = ()
    threshold: int = 1
    escalate_to: tuple[ApproverSpec, ...] = ()

    def label(self) -> str:
        t = self.match.type or ANY
        e = self.match.environment or ANY
        return f"approval[{self.index}] ({t}/{e})"


@dataclass(frozen=True)
class Role:
    name: str
    grants: tuple[Scope, ...]
    requestable_by: tuple[str, ...] = ()
    description: str = ""
    default_duration: timedelta | None = None
    max_duration: timedelta | None = None
    extendable: bool = False
    backends: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resource:
    name: str
    type: str
    environment: str

    @property
    def scope(self) -> Scope:
        return Scope(self.type, self.environment)


@dataclass(frozen=True)
class Purpose:
    name: str
    default: timedelta | None = None
    max: timedelta | None = None


@dataclass(frozen=True)
class User:
    email: str
    team: str | None = None
    manager: str | None = None
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Team:
    name: str
    lead: str | None = None


@dataclass(frozen=True)
class Override:
    user: str
    starts: datetime
    until: datetime


@dataclass(frozen=True)
class OncallSchedule:
    """A rotation: ``rotation[k]`` is on call in shift k counted from ``starts``.

    An override in force beats the rotation; of overlapping overrides, the one that
    started latest wins (a half-day cover inside a week-long one), and of two that
    started together, the one listed last."""

    name: str
    rotation: tuple[str, ...]
    shift: timedelta
    starts: datetime
    overrides: tuple[Override, ...] = ()

    def on_call(self, at: datetime) -> str | None:
        active = [o for o in self.overrides if o.starts <= at < o.until]
        if active:
            # max() keeps the first of equal keys: look from the end for "listed last"
            return max(reversed(active), key=lambda o: o.starts).user
        if not self.rotation or at < self.starts:
            return None
        shift_no = int((at - self.starts) // self.shift)
        return self.rotation[shift_no % len(self.rotation)]


@dataclass(frozen=True)
class Settings:
    public_url: str = "http://127.0.0.1:8080"
    pending_ttl: timedelta = timedelta(hours=1)
    escalate_after: timedelta = timedelta(minutes=30)
    expiry_warning: timedelta = timedelta(minutes=15)
    sessions_at_expiry: Literal["continue", "terminate"] = "continue"
    max_schedule_ahead: timedelta = timedelta(days=7)
    admins: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    to: str
    via: tuple[str, ...]


@dataclass(frozen=True)
class Notifications:
    """Channel and backend configs stay plain mappings: plugins validate their own keys."""

    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)


@dataclass(frozen=True)
class Directory:
    users: dict[str, User] = field(default_factory=dict)
    teams: dict[str, Team] = field(default_factory=dict)
    oncall: dict[str, OncallSchedule] = field(default_factory=dict)

    def user(self, email: str) -> User:
        return self.users.get(email.lower()) or User(email=email.lower())

    def groups_of(self, email: str) -> frozenset[str]:
        return frozenset(self.user(email).groups)

    def members(self, group: str) -> frozenset[str]:
        return frozenset(u.email for u in self.users.values() if group in u.groups)

    def team_lead_of(self, email: str) -> str | None:
        team = self.user(email).team
        return self.teams[team].lead if team and team in self.teams else None

    def manager_of(self, email: str) -> str | None:
        return self.user(email).manager

    def on_call(self, schedule: str, at: datetime) -> str | None:
        rotation = self.oncall.get(schedule)
        return rotation.on_call(at) if rotation else None


@dataclass(frozen=True)
class Policy:
    settings: Settings = field(default_factory=Settings)
    directory: Directory = field(default_factory=Directory)
    resources: dict[str, Resource] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)
    purposes: dict[str, Purpose] = field(default_factory=dict)
    approval: tuple[ApprovalRule, ...] = ()
    notifications: Notifications = field(default_factory=Notifications)
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    digest: str = ""

    def rule_for(self, scope: Scope) -> ApprovalRule | None:
        """The first approval entry whose match fits ``scope`` (SPEC §2), or ``None``."""
        return next((rule for rule in self.approval if rule.match.fits(scope)), None)

    def reach(self, scope: Scope) -> tuple[Scope, ...]:
        """The scopes a grant of ``scope`` reaches: itself, and for ``environment: any``
        also every environment this policy names (SPEC's three, resources, role grants,
        approval matches), each of which an approval entry may treat on its own."""
        if scope.environment != ANY:
            return (scope,)
        named = {"development", "staging", "production"}
        named.update(r.environment for r in self.resources.values())
        named.update(g.environment for role in self.roles.values() for g in role.grants)
        named.update(rule.match.environment or ANY for rule in self.approval)
        named.discard(ANY)
        return (scope, *(Scope(scope.type, env) for env in sorted(named)))

    def is_admin(self, email: str) -> bool:
        return bool(self.directory.groups_of(email) & set(self.settings.admins))
