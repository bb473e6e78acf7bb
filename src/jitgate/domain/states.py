"""Request states and their transitions (SPEC §3), as data.

Invariant: ``expired``, ``denied`` and ``revoked`` are terminal; nothing leaves them.
"""

from __future__ import annotations

from enum import StrEnum

from jitgate.domain.errors import Conflict


class State(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    ACTIVE = "active"
    EXPIRED = "expired"
    DENIED = "denied"
    REVOKED = "revoked"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.APPROVED, State.DENIED, State.EXPIRED, State.REVOKED}),
    State.APPROVED: frozenset({State.ACTIVE, State.REVOKED}),
    State.ACTIVE: frozenset({State.EXPIRED, State.REVOKED}),
    State.EXPIRED: frozenset(),
    State.DENIED: frozenset(),
    State.REVOKED: frozenset(),
}

TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
LIVE_GRANT = frozenset({State.APPROVED, State.ACTIVE})


def check_transition(current: State, target: State) -> None:
    """Raise ``Conflict`` unless ``current -> target`` is in the table."""
    if target not in TRANSITIONS[current]:
        raise Conflict(f"request is {current.value}; it cannot become {target.value}")
