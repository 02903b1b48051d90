"""What the pages read from: fnd's settings and an engine on fnd's database.

On the API server the database is the Airflow connection ``fnd_db_read`` (the login
``fnd_ui``, which holds only ``fnd_reader``: what ``fnd up`` and compose define) if there is
one, else ``fnd_db`` (as for the DAGs' tasks; a warning says that ``RESET ROLE`` could undo
the reader role there), else ``FND_DATABASE_URL`` / the embedded server of fnd's settings;
either way every connection reads as the role ``fnd_reader`` in read-only transactions. Files
(Data Docs, model plots, images) are found through the same ``FND_*`` settings the workers use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fnd_core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


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
    """``gs://`` reads use the Airflow connection ``FND_GCP_CONN_ID``, as the tasks' do
    (:mod:`fnd_airflow.gcp`, one definition). No I/O here: the connection is read on the first
    ``gs://`` access."""
    from fnd_airflow import gcp

    gcp.install(settings)


def fnd_database_url(settings: Settings) -> str:
    """The pages' database URL: the Airflow connection ``fnd_db_read`` (a login holding only
    ``fnd_reader``) if defined, else ``fnd_db`` (the tasks' one), else fnd's own URL."""
    from fnd_airflow.connections import reader_url

    return reader_url(settings)
