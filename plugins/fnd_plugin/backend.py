"""What the pages read from: fnd's settings and an engine on fnd's database.

On the API server the database is the Airflow connection ``fnd_db`` (as for the DAGs' tasks),
else ``FND_DATABASE_URL`` / the embedded server of fnd's settings. Files (Data Docs, model
plots, images) are found through the same ``FND_*`` settings the workers use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fnd_core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

FND_DB_CONN_ID = "fnd_db"


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
    """The API server's backend: settings from ``FND_*``, the database from ``fnd_db``."""
    settings = Settings.from_env()

    def make() -> Engine:
        from fnd_core.db import make_reader_engine

        return make_reader_engine(fnd_database_url(settings))  # pages read, never write

    return Backend(settings, make)


def fnd_database_url(settings: Settings) -> str:
    """The Airflow connection ``fnd_db`` as a URL if defined, else fnd's own database URL."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(FND_DB_CONN_ID)
    except AirflowNotFoundException:
        from fnd_core.db import database_url

        return database_url(settings)
    return connection_url(conn)


def connection_url(conn: Any) -> str:
    """A SQLAlchemy URL from an Airflow Postgres connection (the mapping the DAGs use too)."""
    from fnd_core.db import url_from_airflow_connection

    return url_from_airflow_connection(conn)
