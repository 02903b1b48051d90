"""Celery workers for the local stack: Airflow's CeleryExecutor without containers.

``fnd up --executor celery --workers N`` runs the same four Airflow components plus N Celery
workers on the default queue and, when ``FND_TRAIN_QUEUE`` names another queue (``gpu``),
``--train-workers`` more that serve only that queue. The broker is ``FND_CELERY_BROKER_URL``
(the machine's Redis by default); results go to a table in Airflow's own Postgres database.

Each worker reports its own name (``worker-1``, ``train-worker-1``) as the task instance's
hostname, through Airflow's ``[core] hostname_callable`` set to :func:`worker_hostname`, so
the UI shows which worker ran which shard. On real machines ``FND_WORKER_NAME`` is unset and
the machine's FQDN is used, as Airflow does by default.

A worker killed mid-task (the machine lost) is noticed by the scheduler when the task stops
heartbeating (``[scheduler] task_instance_heartbeat_timeout``); the task is then retried
on a worker that is alive, and fnd's steps are idempotent, so the retry finishes the work
without duplicates.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

DEFAULT_QUEUE = "default"
WORKER_NAME_ENV = "FND_WORKER_NAME"
HEARTBEAT_TIMEOUT_S = 120  # Airflow's 300 s leaves a dead worker's task hanging for 5 minutes


class BrokerUnreachableError(RuntimeError):
    """The Celery broker does not answer: no worker could take a task."""


def worker_hostname() -> str:
    """The task instance's hostname: this worker's name when it has one, else the FQDN."""
    return os.environ.get(WORKER_NAME_ENV) or socket.getfqdn()


def check_broker(url: str, timeout_s: float = 5.0) -> None:
    """Raise :class:`BrokerUnreachableError` (naming the URL, password hidden) if it is down."""
    from kombu import Connection

    from fnd_core.settings import mask_secrets

    try:
        with Connection(url, connect_timeout=timeout_s) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 — whatever the transport raises, say so plainly
        raise BrokerUnreachableError(
            f"the Celery broker at {mask_secrets(url)} does not answer "
            f"({type(exc).__name__}: {exc}). Start it (Redis: `redis-server`), or set "
            "FND_CELERY_BROKER_URL to one that runs, or use `fnd up --executor local`"
        ) from exc


def celery_env(airflow_db_url: str, broker_url: str, *, concurrency: int) -> dict[str, str]:
    """Airflow settings for the CeleryExecutor (every component and worker gets them)."""
    from fnd_core.io.db import sqlalchemy_url

    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sqlalchemy_url(airflow_db_url),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
    }


@dataclass(frozen=True)
class Worker:
    """One Celery worker process: its name (its hostname in the UI) and the queue it serves."""

    name: str
    queue: str

    def argv(self, python: str) -> list[str]:
        # --skip-serve-logs: workers share this machine's log folder, which the UI reads
        # directly; N log servers would also fight over port 8793.
        return [python, "-m", "airflow", "celery", "worker", "--queues", self.queue,
                "--celery-hostname", f"{self.name}@%h", "--skip-serve-logs"]  # fmt: skip


def plan_workers(n_workers: int, train_queue: str, n_train_workers: int) -> list[Worker]:
    """N default-queue workers, and train-queue workers when training has its own queue."""
    if n_workers < 1:
        raise ValueError(f"--workers must be at least 1, got {n_workers}")
    workers = [Worker(f"worker-{i}", DEFAULT_QUEUE) for i in range(1, n_workers + 1)]
    if train_queue != DEFAULT_QUEUE:
        workers += [Worker(f"train-worker-{i}", train_queue) for i in range(1, n_train_workers + 1)]
    return workers
