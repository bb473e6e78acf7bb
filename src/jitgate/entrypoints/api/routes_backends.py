"""Routes of enforcement (SPEC §7): SSH certificates, the KRL, database credentials, and
where each backend of a request stands. Thin: the rules live in ``service.backend_access``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from jitgate.adapters.backends.krl import build_krl
from jitgate.entrypoints.api.auth import AppDep, UserDep, principal
from jitgate.entrypoints.api.problems import PROBLEM_RESPONSES
from jitgate.service import backend_access
from jitgate.service.ports import Principal

router = APIRouter(prefix="/v1", tags=["backends"], responses=PROBLEM_RESPONSES)
NO_STORE = {"Cache-Control": "no-store"}


class CertificateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public_key: str = Field(min_length=1, max_length=16 * 1024, description="One OpenSSH key line")
    backend: str | None = Field(None, max_length=200, description="Which ssh-ca backend")


class CertificateOut(BaseModel):
    certificate: str
    key_id: str
    valid_after: datetime
    valid_before: datetime
    serial: int
    principals: list[str]


class CredentialOut(BaseModel):
    backend: str
    username: str
    password: str
    dsn: str


class BackendGrantOut(BaseModel):
    backend: str
    type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    covered_by: str | None
    applied_at: datetime | None
    removed_at: datetime | None
    updated_at: datetime | None


@router.post("/requests/{request_id}/ssh-certificate", response_model=CertificateOut)
def ssh_certificate(
    request_id: str, body: CertificateBody, app: AppDep, who: UserDep, response: Response
) -> CertificateOut:
    """An OpenSSH user certificate for the rest of the grant window (the requester only)."""
    issued = backend_access.issue_certificate(
        app.ctx,
        request_id=request_id,
        requester=who,
        public_key=body.public_key,
        backend=body.backend,
    )
    response.headers.update(NO_STORE)
    return CertificateOut(
        certificate=issued.certificate,
        key_id=issued.key_id,
        valid_after=issued.valid_after,
        valid_before=issued.valid_before,
        serial=issued.serial,
        principals=list(issued.principals),
    )


@router.get(
    "/ssh/krl",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "OpenSSH KRL"}},
)
def ssh_krl(app: AppDep, who: Annotated[Principal, Depends(principal)]) -> Response:
    """The KRL of certificates whose grant ended early, for sshd's ``RevokedKeys``."""
    contents = backend_access.krl_contents(app.ctx)
    revoked: dict[str, list[str]] = {}
    for entry in contents.revoked:
        revoked.setdefault(entry.ca_public_key, []).append(entry.key_id)
    stamps = [int(e.revoked_at.timestamp()) for e in contents.revoked]
    body = build_krl(
        revoked,
        version=max(stamps, default=0),
        generated=int(app.ctx.clock.now().timestamp()),
    )
    return Response(
        body,
        media_type="application/octet-stream",
        headers={"Content-Disposition": 'attachment; filename="jitgate.krl"', **NO_STORE},
    )


@router.get("/requests/{request_id}/credentials", response_model=list[CredentialOut])
def request_credentials(
    request_id: str, app: AppDep, who: UserDep, response: Response
) -> list[CredentialOut]:
    """A login per ``ephemeral_user`` backend, with a fresh password (the requester only)."""
    issued = backend_access.credentials(app.ctx, request_id=request_id, requester=who)
    response.headers.update(NO_STORE)
    return [
        CredentialOut(backend=c.backend, username=c.username, password=c.password, dsn=c.dsn)
        for c in issued
    ]


@router.get("/requests/{request_id}/backends", response_model=list[BackendGrantOut])
def request_backends(request_id: str, app: AppDep, who: UserDep) -> list[BackendGrantOut]:
    """Where the grant stands on each backend, and the last error if one failed."""
    rows = backend_access.backend_status(app.ctx, request_id=request_id, viewer=who)
    out: list[BackendGrantOut] = []
    for row in rows:
        data: dict[str, Any] = row.as_dict()
        out.append(BackendGrantOut(**{k: data[k] for k in BackendGrantOut.model_fields}))
    return out
