"""The ``fast`` fixture: how many ``/v1/authorize`` calls the fast path answered itself
(it wraps ``fastpath.answer``), so a test can tell the fast path from the route."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from jitgate.bootstrap import App
from jitgate.entrypoints.api import fastpath
from jitgate.entrypoints.api.schemas import AuthorizeBody


@dataclass
class Fast:
    """How many calls the fast path answered itself."""

    answered: int = 0


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> Fast:
    seen, answer = Fast(), fastpath.answer

    async def counting(app: App, body: AuthorizeBody) -> bytes:
        out = await answer(app, body)
        seen.answered += 1
        return out

    monkeypatch.setattr(fastpath, "answer", counting)
    return seen
