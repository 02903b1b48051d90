"""fnd's database as Airflow connections name it: one lookup for tasks and for the pages.

Tasks read ``fnd_db`` through the Task SDK; the API server (the plugin's pages) reads
``fnd_db_read`` (the login ``fnd_ui``, which holds only ``fnd_reader``) through the secrets
backends, then ``fnd_db``. With neither, fnd's own settings name the database
(``FND_DATABASE_URL`` or the embedded server). Looked up only when called, never at parse time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from fnd_core.contracts import DB_CONN_ID, DB_READ_CONN_ID
from fnd_core.settings import Settings

log = logging.getLogger(__name__)


def task_connection(conn_id: str) -> Any | None:
    """The connection as a running task sees it (Task SDK), or None when undefined."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def server_connection(conn_id: str) -> Any | None:
    """The connection as the API server sees it (secrets backends, then the metadata DB)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        return Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None


def database_url(
    settings: Settings,
    conn_ids: Sequence[str] = (DB_CONN_ID,),
    lookup: Callable[[str], Any | None] = task_connection,
) -> str:
    """The URL of the first of ``conn_ids`` that is defined, else fnd's own settings' URL.

    Falling back from the read-only ``fnd_db_read`` is said in a warning: through ``fnd_db``
    the pages read as role ``fnd_reader``, which ``RESET ROLE`` can undo.
    """
    from fnd_core.io.db import database_url as settings_url
    from fnd_core.io.db import url_from_airflow_connection

    for conn_id in conn_ids:
        conn = lookup(conn_id)
        if conn is None:
            continue
        if conn_ids[0] == DB_READ_CONN_ID and conn_id != DB_READ_CONN_ID:
            log.warning(
                "fnd: no Airflow connection %s (the read-only login fnd_ui): reading through "
                "%s as role fnd_reader, which RESET ROLE can undo; see docs/security.md",
                DB_READ_CONN_ID, conn_id,
            )  # fmt: skip
        return url_from_airflow_connection(conn)
    return settings_url(settings)


def reader_url(settings: Settings) -> str:
    """The pages' database URL: ``fnd_db_read``, else ``fnd_db``, else fnd's own."""
    return database_url(settings, (DB_READ_CONN_ID, DB_CONN_ID), server_connection)
