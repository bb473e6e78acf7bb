"""How an ``actor`` filter of the audit log is read (``normal_actor``): a person by the
normal form of their email, a gateway (``service:NAME``) by its name as given."""

from __future__ import annotations

import pytest

from jitgate.service.queries import normal_actor


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("Sam@Example.com", "sam@example.com"),
        ("  sam@example.com\t", "sam@example.com"),
        ("System", "system"),
        ("service:gw", "service:gw"),
        (" service: GW ", "service:GW"),
        ("service:Gate@Way", "service:Gate@Way"),
    ],
)
def test_normal_actor(given: str, normal: str) -> None:
    assert normal_actor(given) == normal
