"""``webhook``: a signed POST for grant and revoke, for systems jitgate has no plugin for.

Policy entry::

    k8s-hook: {type: webhook, url: https://k8s-broker.internal/grant, secret_env: K8S_HOOK_SECRET}

(``url_env`` may name a variable holding the URL instead.) Bodies are JSON
``{"type", "timestamp", "data"}`` with ``type`` one of ``grant``, ``revoke`` and
``session.terminate`` (sent after ``revoke`` when open sessions must end, listing them for
gateways that hold SSH sessions); they are signed like notification webhooks (Standard
Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``, secret in
``whsec_`` form).

Invariants: a 2xx answer means applied; anything else, or no answer within ``timeout``
seconds in all (connect, send and the answer's head, however slowly the receiver trickles
it: ``DeadlineTransport``), raises ``BackendError`` and the grant is retried; only the
status is used, the answer's body is never read (a huge one costs nothing); the
``webhook-id`` names one instruction (``GrantSpec.instruction``): the same on every retry
of it, so receivers may dedupe on it, and new for every new one, even one whose content
repeats an earlier one's (an end moved out and back again); the URL and the secret never
appear in errors. Receivers should key grants on (user, backend): jitgate sends ``revoke``
only when no other live grant of the user still covers this backend.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from jitgate.adapters.backends.base import BackendDeps, env_secret
from jitgate.adapters.plugin_config import (
    MAX_SECONDS,
    WITHIN_LEASE,
    ConfigProblem,
    seconds_problems,
    url_problems,
)
from jitgate.adapters.signing import secret_key, sign_webhook
from jitgate.service.backend_ports import BackendError, BackendUnavailable, GrantSpec, Receipt
from jitgate.service.delivery_deadline import send_deadline, within


class WebhookBackend:
    shares_grants = True
    verifiable = False
    CONFIG_KEYS: ClassVar[tuple[str, ...]] = ("url", "url_env", "secret_env", "timeout")

    def __init__(self, name: str, config: Mapping[str, Any], deps: BackendDeps) -> None:
        self.name = name
        url = config.get("url")
        if not url and config.get("url_env"):
            url = env_secret(config, "url_env", deps.environ, backend=name)
        if not url or not str(url).startswith(("http://", "https://")):
            raise BackendUnavailable(f"backend {name!r} needs 'url' or 'url_env' (an http(s) URL)")
        self.url = str(url)
        self._secret = env_secret(config, "secret_env", deps.environ, backend=name)
        try:
            secret_key(self._secret)
        except ValueError as exc:
            raise BackendUnavailable(f"backend {name!r}: {exc}") from None
        self.timeout = float(config.get("timeout", 10))
        self._http = deps.http

    @classmethod
    def config_problems(cls, config: Mapping[str, Any]) -> list[ConfigProblem]:
        return [
            *url_problems(config, "url"),
            *seconds_problems(config, "timeout", maximum=MAX_SECONDS, why=WITHIN_LEASE),
        ]

    def grant(self, spec: GrantSpec) -> Receipt:
        status = self._post("grant", spec, _grant_data(spec))
        return Receipt(self.name, "grant", changed=True, detail={"status": status})

    def revoke(self, spec: GrantSpec) -> Receipt:
        data = {**_grant_data(spec), "ended_early": spec.ended_early}
        status = self._post("revoke", spec, data)
        detail: dict[str, Any] = {"status": status}
        if spec.terminate_sessions:
            detail.update(self.terminate_sessions(spec).detail)
        return Receipt(self.name, "revoke", changed=True, detail=detail)

    def terminate_sessions(self, spec: GrantSpec) -> Receipt:
        """``session.terminate`` for the gateways holding this grant's sessions."""
        data = {
            "request_id": spec.request_id,
            "user": spec.user,
            "backend": spec.backend,
            "sessions": [s.as_dict() for s in spec.sessions],
        }
        status = self._post("session.terminate", spec, data)
        detail = {"session_terminate_status": status, "sessions": [s.id for s in spec.sessions]}
        return Receipt(self.name, "revoke", changed=bool(spec.sessions), detail=detail)

    def check(self, spec: GrantSpec) -> bool:
        return True

    def _post(self, kind: str, spec: GrantSpec, data: dict[str, Any]) -> int:
        now = int(time.time())
        body = json.dumps(
            {"type": kind, "timestamp": now, "data": data}, sort_keys=True, separators=(",", ":")
        ).encode()
        seed = f"{kind}:{spec.backend}:{spec.request_id}:{spec.ends_at.isoformat()}"
        if spec.instruction:  # without one (a caller of its own), the content names it
            seed += f":{spec.instruction}"
        msg_id = "msg_" + hashlib.sha256(seed.encode()).hexdigest()[:32]
        headers = {
            **sign_webhook(self._secret, msg_id, now, body),
            "content-type": "application/json",
            "user-agent": "jitgate-backend",
        }
        try:
            with (
                send_deadline(self.timeout),
                self._http.stream(
                    "POST", self.url, content=body, headers=headers, timeout=within(self.timeout)
                ) as response,
            ):
                status = response.status_code  # the body is left unread, and dropped
        except httpx.HTTPError as exc:
            raise BackendError(f"webhook {kind}: no answer ({type(exc).__name__})") from None
        if not 200 <= status < 300:
            raise BackendError(f"webhook {kind}: answered HTTP {status}")
        return status


def _grant_data(spec: GrantSpec) -> dict[str, Any]:
    return {
        "request_id": spec.request_id,
        "user": spec.user,
        "roles": list(spec.roles),
        "resources": list(spec.resources),
        "starts_at": spec.starts_at.isoformat(),
        "ends_at": spec.ends_at.isoformat(),
        "backend": spec.backend,
    }
