"""The deadline of the send under way in this thread: every send has a total time limit.

The delivery worker sets it around each ``Notifier.send`` (``send_deadline``); a notifier's
I/O reads it (``seconds_left``) so that every socket operation ends by then, however a peer
trickles its answer, and says why it stopped with ``timeout_reason()``.

Invariants: a deadline belongs to the thread (a context variable) and ends with the send;
outside a send ``seconds_left()`` is ``None`` and nothing is limited.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class _Deadline:
    ends: float  # time.monotonic()
    total: float


_current: ContextVar[_Deadline | None] = ContextVar("jitgate_send_deadline", default=None)


@contextmanager
def send_deadline(seconds: float) -> Iterator[None]:
    """Limit the send run inside the block to ``seconds`` in all."""
    token = _current.set(_Deadline(time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _current.reset(token)


def seconds_left() -> float | None:
    """Seconds until the current send's deadline (0 when past), ``None`` outside a send."""
    deadline = _current.get()
    return None if deadline is None else max(0.0, deadline.ends - time.monotonic())


def within(timeout: float) -> float:
    """``timeout``, shortened to what is left of the current send's time."""
    left = seconds_left()
    return timeout if left is None else min(timeout, left)


def timeout_reason() -> str:
    """Why a send stopped for lack of time: ``timed out after 10s``."""
    deadline = _current.get()
    return "timed out" if deadline is None else f"timed out after {deadline.total:g}s"
