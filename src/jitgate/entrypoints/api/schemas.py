"""Bodies and answers of the API, as pydantic models (they are also the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from fastapi.exceptions import RequestValidationError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from jitgate.domain.policy import Directory
from jitgate.domain.request import MAX_REASON, AccessRequest
from jitgate.domain.states import State

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=MAX_REASON)]
Email = Annotated[str, StringConstraints(min_length=3, max_length=320, strip_whitespace=True)]
MAX_SECONDS = 10 * 365 * 86400


def _duration_in(value: Any) -> Any:
    """A duration string (checked by the domain) or a whole number of seconds, with one
    plain message for anything else instead of one per accepted form."""
    if isinstance(value, str) and 0 < len(value.strip()) <= 40:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_SECONDS:
        return value
    raise ValueError(
        "must be a duration like 45s, 30m, 2h, 1h30m, 7d or PT2H, "
        f"or a whole number of seconds from 1 to {MAX_SECONDS}"
    )


DurationIn = Annotated[str | int, PlainValidator(_duration_in, json_schema_input_type=str | int)]


NUL = "\x00"


def refuse_nul(value: Any) -> Any:
    """``value`` unchanged, unless a string anywhere in it holds a NUL character: no name,
    reason or comment needs one, and PostgreSQL cannot store it in text."""
    if isinstance(value, str):
        if NUL in value:
            raise ValueError("text must not contain NUL (\\u0000) characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_nul(key)
            refuse_nul(item)
    elif isinstance(value, list):
        for item in value:
            refuse_nul(item)
    return value


class Strict(BaseModel):
    """Every request body: unknown fields and NUL characters are refused (422)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        return refuse_nul(data)


StrictT = TypeVar("StrictT", bound=Strict)


def read_body(model: type[StrictT], raw: bytes) -> StrictT:
    """A JSON body read by a route itself: the model's checks and the API's usual 422,
    as if FastAPI had read it (``body.`` prefixes each location)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def json_body(model: type[Strict]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route that reads ``model`` itself (``read_body``);
    ``create_app`` adds the schema to the components."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"required": True, "content": {"application/json": {"schema": ref}}}


class CreateBody(Strict):
    roles: list[Name] = Field(min_length=1, max_length=20)
    resources: list[Name] = Field(default_factory=list, max_length=50)
    duration: DurationIn | None = Field(None, description="`2h`, `1h30m`, `PT2H`, or seconds")
    reason: Reason
    urgency: Literal["low", "normal", "high"] = "normal"
    purpose: Name | None = None
    start_at: datetime | None = None
    cap: StrictBool = False


class ApproveBody(Strict):
    comment: Annotated[str, StringConstraints(max_length=MAX_REASON)] | None = None


class ReasonBody(Strict):
    reason: Reason


class ExtendBody(Strict):
    duration: DurationIn
    reason: Reason


class AuthorizeBody(Strict):
    user: Email
    resource: Name | None = None
    type: Name | None = None
    environment: Name | None = None


class SessionBody(Strict):
    user: Email
    resource: Name | None = None
    # required (SPEC §4 ``{user, resource, kind}``): the audit and the evidence say it
    kind: Name = Field(description="what the session is: `ssh`, `database`, `kubectl`…")
    type: Name | None = None
    environment: Name | None = None


class EndSessionBody(Strict):
    recording_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    terminated: bool | None = Field(
        None,
        description="true: the gateway ended the session (after jitgate asked, see "
        "termination_requested_at); false: it closed by itself; unset: not said",
    )

    @field_validator("recording_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        """An auditor opens it from the evidence: only an http(s) address with a host."""
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// address")
        return value


class ApprovalOut(BaseModel):
    approver: str
    decision: str
    comment: str | None
    at: datetime


class RequirementOut(BaseModel):
    rule: int
    spec: dict[str, Any]
    satisfied_by: str | None


class RequestOut(BaseModel):
    id: str
    requester: str
    roles: list[str]
    resources: list[str]
    duration_seconds: int
    reason: str
    urgency: str
    purpose: str | None
    state: State
    created_at: datetime
    start_at: datetime | None
    starts_at: datetime | None
    ends_at: datetime | None
    expires_at: datetime
    approvals: list[ApprovalOut]
    requirements: list[RequirementOut]
    eligible_approvers: list[str]
    escalated: bool
    extends: str | None
    closed_at: datetime | None
    close_reason: str | None


class RequestPage(BaseModel):
    items: list[RequestOut]
    next_cursor: str | None


class AuthorizeOut(BaseModel):
    allowed: bool
    request_id: str | None
    role: str | None
    ends_at: datetime | None
    reason: str | None = None


class SessionOut(BaseModel):
    id: str
    request_id: str
    user: str
    resource: str | None
    kind: str
    started_at: datetime
    ended_at: datetime | None
    recording_url: str | None
    end_reason: str | None
    termination_requested_at: datetime | None = Field(
        None, description="when jitgate asked its gateway to end it; ended_at once it did"
    )
    termination_reason: str | None = None


class SessionPage(BaseModel):
    items: list[SessionOut]
    next_cursor: str | None = None


class AuditOut(BaseModel):
    seq: int
    id: str
    at: str
    type: str
    actor: str
    request_id: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None = None


class VerifyOut(BaseModel):
    ok: bool
    events: int
    head: str
    broken_at: int | None = None
    problem: str | None = None


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str


def request_out(r: AccessRequest, directory: Directory, now: datetime) -> RequestOut:
    evaluation = r.evaluation(directory)
    pending = r.state is State.PENDING
    return RequestOut(
        id=r.id,
        requester=r.requester,
        roles=list(r.roles),
        resources=list(r.resources),
        duration_seconds=int(r.duration.total_seconds()),
        reason=r.reason,
        urgency=r.urgency,
        purpose=r.purpose,
        state=r.state,
        created_at=r.created_at,
        start_at=r.start_at,
        starts_at=r.starts_at,
        ends_at=r.ends_at,
        expires_at=r.expires_at,
        approvals=[
            ApprovalOut(approver=a.approver, decision=a.decision, comment=a.comment, at=a.at)
            for a in r.approvals
        ],
        requirements=[
            RequirementOut(rule=q.rule, spec=q.spec, satisfied_by=q.satisfied_by)
            for q in evaluation.requirements
        ],
        eligible_approvers=sorted(r.approvers_now(directory, now)) if pending else [],
        escalated=r.escalated,
        extends=r.extends,
        closed_at=r.closed_at,
        close_reason=r.close_reason,
    )
