"""`fnd config` and `fnd db ...`: the settings in effect and fnd's Postgres (migrations, URL).

One of the command modules of :mod:`fnd_core.stack.cli`, which registers them on the ``fnd``
group; split out so each area's commands read on their own.
"""

from __future__ import annotations

import click

from fnd_core.stack.cli_context import engine_from, settings_from


@click.command("config")
@click.pass_context
def config_cmd(ctx: click.Context) -> None:
    """Print the effective settings (secrets masked)."""
    rows = settings_from(ctx).describe()
    width = max(len(name) for name, _, _ in rows)
    for name, value, doc in rows:
        click.echo(f"{name:<{width}}  {value}")
        click.echo(f"{'':<{width}}    {doc}")


@click.group("db")
def db_group() -> None:
    """fnd's Postgres: migrations and connection."""


@db_group.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending sql/ migrations, each in its own transaction; set the password of the
    UI's read-only login fnd_ui (FND_DB_READ_PASSWORD, else one generated once in FND_HOME)."""
    from fnd_core.io import migrations
    from fnd_core.stack.local_setup import ensure_reader_login

    engine = engine_from(ctx)
    applied = migrations.upgrade(engine)
    if applied:
        for name in applied:
            click.echo(f"applied  {name}")
    else:
        click.echo("database is up to date: nothing to apply")
    if ensure_reader_login(engine, settings_from(ctx)) is None:
        click.echo("the read-only login fnd_ui has no password set: this user may not alter "
                   "roles (an administrator sets it)", err=True)  # fmt: skip


@db_group.command("status")
@click.pass_context
def db_status(ctx: click.Context) -> None:
    """List migrations: applied, pending, or modified since applied."""
    from fnd_core.io import migrations

    for state in migrations.status(engine_from(ctx)):
        click.echo(f"{state.status:<9} {state.filename}  {state.applied_at or ''}".rstrip())


@db_group.command("url")
@click.pass_context
def db_url(ctx: click.Context) -> None:
    """Print the database URL (starts the embedded server if that is the one in use)."""
    from fnd_core.io.db import database_url

    click.echo(database_url(settings_from(ctx)))


@db_group.command("psql")
@click.pass_context
def db_psql(ctx: click.Context) -> None:
    """Print a psql command connected to fnd's database."""
    from fnd_core.io.db import database_url, psql_command

    click.echo(psql_command(database_url(settings_from(ctx))))


@db_group.command("stop")
@click.pass_context
def db_stop(ctx: click.Context) -> None:
    """Stop the embedded PostgreSQL (data kept under FND_HOME); no-op for an external one."""
    from fnd_core.stack.processes import stop_embedded

    settings = settings_from(ctx)
    if settings.database_url:
        click.echo("FND_DATABASE_URL is set: fnd does not manage that server")
    elif stop_embedded(settings):
        click.echo(f"stopped the embedded PostgreSQL in {settings.embedded_pgdata}")
    else:
        click.echo("the embedded PostgreSQL is not running")
