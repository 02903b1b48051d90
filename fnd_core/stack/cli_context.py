"""The settings and the database engine a ``fnd`` command works with, kept on click's context.

Split from :mod:`fnd_core.stack.cli` so the command modules (``cli_*.py``) share them without
importing the root group, which imports them. Settings are read from the environment once per
invocation, however many commands and helpers ask for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fnd_core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def settings_from(ctx: click.Context) -> Settings:
    """The settings from ``FND_*`` variables, read on first use; gs:// access configured."""
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        from fnd_core.io import gcp

        obj["settings"] = Settings.from_env()
        # gs:// access from the CLI: Application Default Credentials (fnd_core.io.gcp)
        gcp.configure(endpoint=obj["settings"].gcs_endpoint)
    return obj["settings"]


def engine_from(ctx: click.Context) -> Engine:
    """An engine on fnd's database, per :func:`settings_from`."""
    from fnd_core.io.db import engine_from_settings

    return engine_from_settings(settings_from(ctx))
