"""The ``saga`` command: the people-facing entry point to every adapter.

Each module of this package holds one family of commands (``definitions``, ``run``,
``instances``, ``index``, ``schedules``, ``dlq``, ``participant``); this one only assembles them.
"""

from __future__ import annotations

import click

from saga.cli import definitions, dlq, index, instances, participant, run, schedules


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nats-saga", prog_name="saga")
def main() -> None:
    """A choreography saga engine for NATS JetStream."""


for _command in (
    *definitions.COMMANDS,
    *run.COMMANDS,
    *instances.COMMANDS,
    *index.COMMANDS,
    *schedules.COMMANDS,
    dlq.dlq_group,
    participant.participant,
):
    main.add_command(_command)
