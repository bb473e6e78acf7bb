"""``jitgate reconcile``: one reconciliation pass against the real systems (also run by the
scheduler every minute). Prints the report as JSON; exits 1 when something could not be
repaired, so a cron job or a runbook notices."""

from __future__ import annotations

import sys

import click

from jitgate.entrypoints.cli.common import db_option, emit_json, fail, friendly, policy_option


@click.command()
@policy_option
@db_option
@friendly
def reconcile(policy_path: str, db_url: str) -> None:
    """Re-apply missing grants and remove jitgate-made grants that should not exist."""
    from jitgate.adapters.db.engine import require_existing
    from jitgate.adapters.db.migrate import current
    from jitgate.bootstrap import bootstrap
    from jitgate.entrypoints.cli.common import settings
    from jitgate.service.reconcile import reconcile as run

    require_existing(db_url)  # a repair pass never creates an empty database
    app = bootstrap(settings(policy_path=policy_path, database_url=db_url))
    try:
        if current(app.db) is None:
            fail("the database has no schema yet: run `jitgate db upgrade` first")
        report = run(app.ctx)
    finally:
        app.close()
    emit_json(report.as_dict())
    sys.exit(1 if report.failed else 0)
