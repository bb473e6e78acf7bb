"""The ``jitgate`` command: registers the command groups; nothing runs at import time."""

from __future__ import annotations

import click

from jitgate import __version__
from jitgate.entrypoints.cli import (
    audit_cmd,
    notifications_cmd,
    policy_cmd,
    reconcile_cmd,
    requests_cmd,
    server,
    ssh_cmd,
    tokens_cmd,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jitgate")
def cli() -> None:
    """jitgate: just-in-time privileged access.

    Ask for an elevated role for a while with a reason; the approvers that policy names
    decide; the grant ends by itself; everything is audited.
    """


for command in (
    server.serve,
    server.worker,
    server.db,
    policy_cmd.policy,
    tokens_cmd.token,
    audit_cmd.audit,
    notifications_cmd.notifications,
    requests_cmd.request_cmd,
    requests_cmd.approve,
    requests_cmd.deny,
    requests_cmd.revoke,
    requests_cmd.extend,
    requests_cmd.ls,
    requests_cmd.show,
    requests_cmd.evidence,
    ssh_cmd.ssh,
    reconcile_cmd.reconcile,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="jitgate")
