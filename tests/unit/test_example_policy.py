"""What ``examples/policy.yaml`` says about itself holds."""

from __future__ import annotations

from dataclasses import replace

from jitgate.domain.policy import Notifications, Policy
from jitgate.service.notifications import routes_of


def test_its_routes_are_the_defaults_plus_the_siem_and_teams_channels(
    example_policy: Policy,
) -> None:
    """The routes comment: "without siem and teams, these are the defaults"."""
    written = routes_of(example_policy)
    assert written == example_policy.notifications.routes
    unwritten = replace(
        example_policy,
        notifications=Notifications(channels=example_policy.notifications.channels),
    )
    defaults = routes_of(unwritten)
    without = {
        event: (route.to, {v for v in route.via if v not in ("siem", "teams")})
        for event, route in written.items()
    }
    assert without == {event: (r.to, set(r.via)) for event, r in defaults.items()}
