"""What the pages read from: fnd's settings and an engine on fnd's database.

On the API server the database is the Airflow connection ``fnd_db_read`` (the login
``fnd_ui``, which holds only ``fnd_reader``: what ``fnd up`` and compose define) if there is
one, else ``fnd_db`` (as for the DAGs' tasks; a warning says that ``RESET ROLE`` could undo
the reader role there), else ``FND_DATABASE_URL`` / the embedded server of fnd's settings;
either way every connection reads as the role ``fnd_reader`` in read-only transactions. Files
(Data Docs, model plots, images) are found through the same ``FND_*`` settings the workers use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fnd_core.contracts import DB_CONN_ID, DB_READ_CONN_ID
from fnd_core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

FND_DB_CONN_ID = DB_CONN_ID
FND_DB_READ_CONN_ID = DB_READ_CONN_ID


@dataclass
class Backend:
    """fnd's settings, and an engine made on first use (pages may load before the database)."""

    settings: Settings
    engine_factory: Callable[[], Engine]
    _engine: Engine | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self.engine_factory()
        return self._engine

    @classmethod
    def for_engine(cls, engine: Engine, settings: Settings) -> Backend:
        """A backend on an existing engine (tests, scripts)."""
        return cls(settings, lambda: engine)


def backend_from_airflow() -> Backend:
    """The API server's backend: settings from ``FND_*``, the database from ``fnd_db``, and
    ``gs://`` reads (images, plots, published Data Docs) with the tasks' Airflow connection."""
    settings = Settings.from_env()
    install_gcp_credentials(settings)

    def make() -> Engine:
        from fnd_core.io.db import make_reader_engine

        return make_reader_engine(fnd_database_url(settings))  # pages read, never write

    return Backend(settings, make)


def install_gcp_credentials(settings: Settings) -> None:
    """``gs://`` reads use the Airflow connection ``FND_GCP_CONN_ID``, as the tasks' do.

    The glue lives with the DAGs (``dags/fnd_support/gcp.py``, one definition); the API server
    puts only the plugins folder on ``sys.path``, so the DAGs folder is appended (last: it
    shadows nothing). No I/O here: the connection is read on the first ``gs://`` access.
    """
    import sys

    from airflow.configuration import conf

    dags_folder = conf.get("core", "dags_folder")
    if dags_folder not in sys.path:
        sys.path.append(dags_folder)
    try:
        from fnd_support import gcp
    except ImportError as exc:  # fnd's DAGs are not in this API server's DAGs folder
        logging.getLogger(__name__).warning(
            "fnd plugin: no fnd_support in %s (%s): gs:// reads use application default "
            "credentials, not the Airflow connection %s",
            dags_folder,
            exc,
            settings.gcp_conn_id,
        )
        return
    gcp.install(settings)


def fnd_database_url(settings: Settings) -> str:
    """The pages' database URL: the Airflow connection ``fnd_db_read`` (a login holding only
    ``fnd_reader``) if defined, else ``fnd_db`` (the tasks' one), else fnd's own URL."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    for conn_id in (FND_DB_READ_CONN_ID, FND_DB_CONN_ID):
        try:
            url = connection_url(Connection.get_connection_from_secrets(conn_id))
        except AirflowNotFoundException:
            continue
        if conn_id != FND_DB_READ_CONN_ID:
            logging.getLogger(__name__).warning(
                "fnd plugin: no Airflow connection %s (the read-only login fnd_ui): reading "
                "through %s as role fnd_reader, which RESET ROLE can undo; see docs/security.md",
                FND_DB_READ_CONN_ID, conn_id,
            )  # fmt: skip
        return url
    from fnd_core.io.db import database_url

    return database_url(settings)


def connection_url(conn: Any) -> str:
    """A SQLAlchemy URL from an Airflow Postgres connection (the mapping the DAGs use too)."""
    from fnd_core.io.db import url_from_airflow_connection

    return url_from_airflow_connection(conn)
