"""The whole system on one machine: Postgres, Airflow 3's four components, a demo, a kick-off.

``fnd up`` (and ``make run``) call :func:`run_stack`. Airflow is driven as subprocesses, never
imported, so fnd_core stays free of it. Each component runs in its own process group, with its
output in ``$AIRFLOW_HOME/logs/components/<name>.log``; Ctrl-C (SIGINT) or SIGTERM stops every
group (SIGTERM, then SIGKILL after a grace period), and the embedded PostgreSQL too when this
run started it. Data stays under FND_HOME, so the next ``fnd up`` resumes.

Why not ``airflow standalone``: it writes no per-component logs, stops its children with a plain
``terminate()`` (task processes can outlive it), and finds ``airflow`` on PATH rather than in
this virtualenv; the four commands it runs are easy to run directly.

This module starts, supervises and stops the processes; what they are given (databases,
credentials, environment, the first run's demo batch) is prepared by
:mod:`fnd_core.stack.local_setup`.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fnd_core.settings import Settings
from fnd_core.stack.local_setup import REPO, Stack, StackOptions, prepare, seed_demo
from fnd_core.stack.processes import (
    Component,
    first_dead,
    log_tail,
    start_in_group,
    stop_components,
    stop_postgres,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from fnd_core.stack.airflow_rest import AirflowClient

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
START_TIMEOUT_S = 300.0


# -- the components -----------------------------------------------------------------------
def start_components(stack: Stack, names: tuple[str, ...] = COMPONENTS) -> list[Component]:
    """Start each Airflow component in its own process group, output to its log."""
    return [
        start_in_group(
            name,
            [sys.executable, "-m", "airflow", name],
            env=stack.env,
            log=stack.log_dir / f"{name}.log",
            cwd=REPO,
        )
        for name in names
    ]


def start_workers(stack: Stack, settings: Settings, options: StackOptions) -> list[Component]:
    """Celery workers, each in its own process group, named, with its own log."""
    from fnd_core.stack.workers import WORKER_NAME_ENV, plan_workers

    workers = plan_workers(options.workers, settings.train_queue, options.train_workers)
    return [
        start_in_group(
            w.name,
            w.argv(sys.executable),
            env={**stack.env, WORKER_NAME_ENV: w.name},
            log=stack.log_dir / f"{w.name}.log",
            cwd=REPO,
        )
        for w in workers
    ]


# -- the whole run ---------------------------------------------------------------------
def run_stack(
    settings: Settings, options: StackOptions, echo: Callable[[str], None] = print
) -> int:
    """Prepare, start, wait until healthy, kick off, supervise until a signal; 0 on a clean stop."""
    from fnd_core.io.db import make_engine, psql_command
    from fnd_core.stack.airflow_rest import AirflowClient

    started = time.monotonic()
    stop = threading.Event()
    pgdata = settings.embedded_pgdata.resolve()
    # The embedded server is stopped at the end only if this run started it.
    owns_db = not settings.database_url and not (pgdata / "postmaster.pid").exists()
    components: list[Component] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stack = prepare(settings, options, echo)
        engine = make_engine(stack.fnd_url)
        demo = seed_demo(engine, settings, options.demo_posts, options.demo_seed)
        if demo:
            echo(f"first run: demo batch of {options.demo_posts} posts landed in {demo}")
        for sig in previous:
            signal.signal(sig, lambda *_: stop.set())
        if options.executor == "celery":
            from fnd_core.stack.workers import check_broker

            check_broker(settings.celery_broker_url)
        core = start_components(stack)
        workers = start_workers(stack, settings, options) if options.executor == "celery" else []
        components = core + workers  # what is stopped at the end
        echo(f"started {', '.join(c.name for c in components)}; logs in {stack.log_dir}")
        client = AirflowClient(options.url, stack.username, stack.password)
        if not _wait_healthy(client, components, stop, echo):
            return 0 if stop.is_set() else 1
        echo(_banner(options, stack, psql_command(stack.fnd_url), time.monotonic() - started))
        if options.kickoff:
            _start_kickoff(client, engine, stop, echo, started)
        return _supervise(core, workers, stop, echo)
    finally:
        stop.set()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
        if components:
            echo("stopping Airflow ...")
            stop_components(components)
        if owns_db and stop_postgres(pgdata):
            echo("stopped the embedded PostgreSQL (data kept)")
        if components:
            echo(f"stopped. Data kept in {settings.home}; run `make run` again to resume.")
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _start_kickoff(
    client: AirflowClient,
    engine: Engine,
    stop: threading.Event,
    echo: Callable[[str], None],
    started: float,
) -> None:
    """Trigger the first DAG runs in a background thread (:mod:`fnd_core.stack.kickoff`)."""
    from fnd_core.stack.kickoff import kickoff

    def say(msg: str) -> None:
        if not stop.is_set():  # once stopping, its broken connections are expected
            echo(msg)

    threading.Thread(
        target=kickoff, args=(client, engine, say, started), daemon=True, name="kickoff"
    ).start()


def _supervise(
    core: list[Component],
    workers: list[Component],
    stop: threading.Event,
    echo: Callable[[str], None],
) -> int:
    """Watch the components until a signal (0) or until one that cannot be lost dies (1)."""
    while not stop.wait(1.0):
        if dead := first_dead(core):
            echo(f"{dead.name} exited ({dead.process.returncode}); its log ends with:")
            echo(log_tail(dead.log))
            return 1
        if not _supervise_workers(workers, echo):
            return 1
    return 0


def _supervise_workers(workers: list[Component], echo: Callable[[str], None]) -> bool:
    """Drop workers that died (their tasks are retried on the others); False when none is left.

    A Celery worker is replaceable, as a lost machine is: the stack keeps running on the
    workers that are alive, and the scheduler retries the dead one's tasks once they stop
    heartbeating.
    """
    dead = [w for w in workers if w.process.poll() is not None]
    for worker in dead:
        workers.remove(worker)
        others = ", ".join(w.name for w in workers) or "no worker: none is left"
        echo(f"{worker.name} exited ({worker.process.returncode}); its running tasks will be "
             f"retried on {others}")  # fmt: skip
    return bool(workers) or not dead


def _wait_healthy(
    client: AirflowClient,
    components: list[Component],
    stop: threading.Event,
    echo: Callable[[str], None],
) -> bool:
    """Wait until the API reports every component healthy; False if one dies or on a signal."""
    from fnd_core.stack.airflow_rest import AirflowApiError, is_healthy

    deadline = time.monotonic() + START_TIMEOUT_S
    while not stop.wait(1.0):
        if dead := first_dead(components):
            echo(f"{dead.name} exited ({dead.process.returncode}) while starting; log tail:")
            echo(log_tail(dead.log))
            return False
        try:
            if is_healthy(client.health()):
                return True
        except AirflowApiError:
            pass
        if time.monotonic() > deadline:
            echo(
                f"Airflow not healthy after {START_TIMEOUT_S:.0f} s; see {components[0].log.parent}"
            )
            return False
    return False


def _banner(options: StackOptions, stack: Stack, psql: str, elapsed: float) -> str:
    return "\n".join(
        [
            "",
            f"fnd is up ({elapsed:.0f} s). Airflow {options.url}",
            f"  login     {stack.username} / {stack.password}"
            f"   (in {stack.env['AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE']})",
            f"  database  {psql}",
            "            select * from fnd.latest_predictions where label = 'fake';",
            f"  logs      {stack.log_dir}",
            "  stop      Ctrl-C (data is kept; `make run` resumes)",
            "",
        ]
    )
