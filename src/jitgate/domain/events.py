"""Domain events: what happened to a request. The service turns each into an audit row
and, where a route exists, notifications, all in the transaction of the state change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DomainEvent:
    type: str
    actor: str
    request_id: str | None
    data: dict[str, Any] = field(default_factory=dict)
