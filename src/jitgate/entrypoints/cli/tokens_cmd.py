"""``jitgate token create``: print one new API token alone on stdout (stored hashed)."""

from __future__ import annotations

import click

from jitgate.entrypoints.cli.common import db_option, fail, friendly


@click.group()
def token() -> None:
    """API tokens for people and gateways."""


@token.command()
@click.argument("email", required=False)
@click.option("--service", "service", default=None, help="A gateway's name instead of a person.")
@db_option
@friendly
def create(email: str | None, service: str | None, db_url: str) -> None:
    """Create a token for EMAIL, or for --service NAME; print it alone on stdout.

    Only its SHA-256 hash is stored. The schema is brought up to date first if needed."""
    from jitgate.adapters.clock import SystemClock
    from jitgate.adapters.db.migrate import upgrade
    from jitgate.adapters.db.uow import SqlUnitOfWorkFactory
    from jitgate.domain.policy import Policy
    from jitgate.entrypoints.cli.common import opened
    from jitgate.service.context import Context, PolicyHolder
    from jitgate.service.ports import Principal
    from jitgate.service.tokens import create_token

    if bool(email) == bool(service):
        fail("give either EMAIL or --service NAME")
    if email and "@" not in email:
        fail(f"{email!r} is not an email address")
    principal = Principal("user", email.lower()) if email else Principal("service", str(service))
    with opened(db_url) as database:
        upgrade(database)
        ctx = Context(
            uow=SqlUnitOfWorkFactory(database), clock=SystemClock(), policy=PolicyHolder(Policy())
        )
        click.echo(create_token(ctx, principal=principal))
