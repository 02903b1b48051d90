"""What every fnd DAG shares: common DAG arguments, asset URIs, the failure callback and
alerts, and the settings and database engine a task uses.

Imports here are light (no torch, pandas or GX): DAG files import this module at parse time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum

from fnd_core import contracts

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from fnd_core.settings import Settings

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")


def on_task_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` of every fnd task: the failure in fnd terms (observe.notify).

    Says which file, rule or model version failed; logged in the task's log, and sent
    through the notifier named by ``FND_ALERT_NOTIFIER`` when one is set.
    """
    import os

    from fnd_core.observe import notify

    notify.on_task_failure(
        context,
        engine_factory=fnd_engine,
        notifier=os.environ.get("FND_ALERT_NOTIFIER") or None,
        notifier_kwargs=os.environ.get("FND_ALERT_NOTIFIER_KWARGS"),
    )


def fnd_alert(context: Mapping[str, Any], title: str, lines: list[str]) -> None:
    """Log an alert and send it through ``FND_ALERT_NOTIFIER`` when one is set."""
    import logging
    import os

    from fnd_core.observe import notify

    alert = notify.Alert(title=title, lines=tuple(lines))
    logging.getLogger("fnd").warning("%s", alert.text)
    notify.send(
        alert,
        context,
        os.environ.get("FND_ALERT_NOTIFIER") or None,
        os.environ.get("FND_ALERT_NOTIFIER_KWARGS"),
    )


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "fnd",
    "retries": 1,
    # The wait before a retry is Airflow's own [core] default_task_retry_delay: `fnd up` and the
    # compose file set 30 s (Airflow's default is 300 s); tests of live stacks set a few seconds.
    # A task that hangs (a wedged mount, a stuck remote read) is failed and retried, not kept
    # forever; training, the longest step, sets its own (TRAIN_TIMEOUT).
    "execution_timeout": timedelta(hours=1),
    "on_failure_callback": on_task_failure,
}
COMMON_DAG_KWARGS: dict[str, Any] = {
    "start_date": START_DATE,
    "catchup": False,
    "default_args": DEFAULT_ARGS,
    "max_consecutive_failed_dag_runs": 5,
}

TRAIN_TIMEOUT = timedelta(hours=6)

# Asset URIs: the contract between the DAGs (ingest -> score, retrain -> score, drift -> retrain).
POSTS_ASSET_URI = contracts.POSTS_ASSET
DRIFT_ASSET_URI = contracts.DRIFT_ASSET
PREDICTIONS_ASSET_URI = contracts.PREDICTIONS_ASSET


def fnd_settings() -> Settings:
    """fnd's settings from the worker's FND_* environment (cheap; no I/O).

    Also points fnd's ``gs://`` access at the Airflow connection ``FND_GCP_CONN_ID``
    (:mod:`fnd_airflow.gcp`; the connection is only read when a task first touches ``gs://``).
    """
    from fnd_airflow import gcp
    from fnd_core.settings import Settings

    settings = Settings.from_env()
    gcp.install(settings)
    return settings


def fnd_database_url() -> str:
    """The fnd database: Airflow connection ``fnd_db`` if defined, else fnd's own settings.

    Called inside tasks only (never at parse time), so no connection look-up while parsing.
    """
    from fnd_airflow.connections import database_url

    return database_url(fnd_settings())


def fnd_engine() -> Engine:
    """A SQLAlchemy engine on the fnd database, for use inside a task."""
    from fnd_core.io.db import make_engine

    return make_engine(fnd_database_url())
