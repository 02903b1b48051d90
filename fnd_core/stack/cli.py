"""The ``fnd`` command line: a thin layer over fnd_core's functions.

This module is the root group and the console-script entry point (``fnd =
fnd_core.stack.cli:main``; ``python -m fnd_core.stack.cli`` works too). The commands live by
area in ``cli_*.py`` and are registered here:

- :mod:`~fnd_core.stack.cli_db`: ``fnd config``, ``fnd db upgrade|status|url|psql|stop``;
- :mod:`~fnd_core.stack.cli_data`: ``fnd ingest``, ``fnd label``, ``fnd demo generate``;
- :mod:`~fnd_core.stack.cli_train`: ``fnd train``, ``fnd sweep``, ``fnd evaluate``;
- :mod:`~fnd_core.stack.cli_models`: ``fnd model list|retire|rollback``, ``fnd score``,
  ``fnd performance``;
- :mod:`~fnd_core.stack.cli_stack`: ``fnd up``.

Each command imports what it needs inside its body, so ``fnd --help`` and ``fnd config``
start instantly and only ``fnd train`` pays for torch.
"""

from __future__ import annotations

import logging
import sys

import click

from fnd_core.stack import cli_data, cli_db, cli_models, cli_stack, cli_train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """fnd: batch fake-news scoring of image+text posts (settings from FND_* variables)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.ensure_object(dict)


for command in (
    cli_db.config_cmd,
    cli_db.db_group,
    cli_data.ingest_cmd,
    cli_data.label_cmd,
    cli_data.demo_group,
    cli_train.train_cmd,
    cli_train.sweep_cmd,
    cli_train.evaluate_cmd,
    cli_models.model_group,
    cli_models.score_cmd,
    cli_models.performance_cmd,
    cli_stack.up_cmd,
):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(obj={})


if __name__ == "__main__":
    main()
