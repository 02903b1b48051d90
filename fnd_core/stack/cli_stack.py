"""`fnd up`: fnd in Airflow 3 on this machine until Ctrl-C (:mod:`fnd_core.stack.local`).

One of the command modules of :mod:`fnd_core.stack.cli`, which registers it on the ``fnd``
group; split out so each area's commands read on their own.
"""

from __future__ import annotations

import logging

import click

from fnd_core.stack.cli_context import settings_from


@click.command("up")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    envvar="FND_AIRFLOW_PORT",
    show_default=True,
    show_envvar=True,
    help="Port of the Airflow UI / API server.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the UI binds to.")
@click.option(
    "--demo-posts",
    type=click.IntRange(min=0),
    default=1500,
    show_default=True,
    help="Demo batch landed on a first run (no posts, empty landing zone); 0: none.",
)
@click.option("--demo-seed", type=int, default=7, show_default=True)
@click.option(
    "--kickoff/--no-kickoff",
    default=True,
    show_default=True,
    help="Trigger fnd_ingest now, then fnd_retrain if there is no champion yet.",
)
@click.option(
    "--airflow-db-url",
    default=None,
    help="Airflow metadata database (default: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN, else a "
    "database 'airflow' on fnd's server).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "celery"]),
    default="local",
    envvar="FND_EXECUTOR",
    show_default=True,
    show_envvar=True,
    help="Airflow executor: LocalExecutor, or CeleryExecutor with workers on this machine "
    "(broker FND_CELERY_BROKER_URL).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Celery workers on the default queue (--executor celery).",
)
@click.option(
    "--train-workers",
    type=click.IntRange(0, 16),
    default=1,
    show_default=True,
    help="Celery workers serving only FND_TRAIN_QUEUE, when it is not 'default'.",
)
@click.pass_context
def up_cmd(
    ctx: click.Context,
    port: int,
    host: str,
    demo_posts: int,
    demo_seed: int,
    kickoff: bool,
    airflow_db_url: str | None,
    executor: str,
    workers: int,
    train_workers: int,
) -> None:
    """Run fnd in Airflow 3 until Ctrl-C: Postgres, scheduler, DAG processor, triggerer, UI
    (and Celery workers with ``--executor celery``)."""
    from fnd_core.stack.local import run_stack
    from fnd_core.stack.local_setup import StackOptions

    options = StackOptions(
        port=port,
        host=host,
        demo_posts=demo_posts,
        demo_seed=demo_seed,
        kickoff=kickoff,
        airflow_db_url=airflow_db_url,
        executor=executor,
        workers=workers,
        train_workers=train_workers,
    )
    logging.getLogger().setLevel(logging.WARNING)  # the stack prints its own progress
    try:
        code = run_stack(settings_from(ctx), options, echo=click.echo)
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    ctx.exit(code)
