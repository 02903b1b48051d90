"""A pytest plugin: the real stack (`fnd up`) on free ports, shared by the live and browser tests.

Loaded with ``pytest_plugins = ["tests.airflow.live_stack"]`` from each test module that needs
it, so the session fixture is registered once and the stack starts once per session. It runs
``fnd up`` as a subprocess against two fresh databases on the test server (fnd's and Airflow's
metadata), with the tiny preset, no demo batch and no kick-off: the tests drive it themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fnd_core.contracts import PIPELINE_DAGS as DAG_IDS
from fnd_core.io.db import make_engine
from fnd_core.stack.airflow_rest import AirflowClient, wait_for_dags, wait_for_run
from fnd_core.stack.processes import alive, descendants

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 300


@dataclass(frozen=True)
class LiveStack:
    """A running stack: its API client, fnd's database, FND_HOME and the `fnd up` output."""

    url: str
    client: AirflowClient
    fnd_url: str
    home: Path
    log: Path
    pid: int  # of `fnd up`; the components and workers are its descendants

    def engine(self):
        return make_engine(self.fnd_url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Eight cheap candidates (two kinds x class weights x topic weights) for live sweeps
SWEEP_SPACE = {"version": 1, "method": "grid", "parameters": {
    "kind": {"values": ["linear", "text_linear"]}, "class_weights": {"values": [True, False]},
    "topic_weights": {"values": [False, True]}}}  # fmt: skip


def stack_env(home: Path, fnd_url: str) -> dict[str, str]:
    """A clean environment: none of the test session's AIRFLOW_* / FND_* variables leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FND_"))}
    env.update(
        {
            "FND_HOME": str(home),
            "FND_DATABASE_URL": fnd_url,
            "FND_MODEL_PRESET": "tiny",
            "FND_NESTED_SELECTION": "0",  # see tests/conftest.py
            "FND_GATE_MIN_ACCURACY": "0",  # a tiny model on a few posts: gate relaxed
            "FND_NUM_WORKERS": "0",
            "FND_SCORE_SHARDS": "2",
            # A run waiting for another's training lease looks every 30 s, for at most 15 min.
            "FND_TRAINING_LEASE_WAIT_HOURS": "0.25",
            # A retried task (a killed worker's shard) waits 3 s, not `fnd up`'s 30.
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "3",
        }
    )
    return env


@contextlib.contextmanager
def running_stack(
    create_database, home: Path, args: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> Iterator[LiveStack]:
    """`fnd up ARGS` on a free port until the block ends; stopped with SIGINT, checked for
    a clean exit and for orphan processes."""
    fnd_url, airflow_url = create_database(), create_database()
    port = free_port()
    log = home / "fnd-up.log"
    command = [
        sys.executable, "-m", "fnd_core.stack.cli", "up", "--port", str(port), "--demo-posts", "0",
        "--no-kickoff", "--airflow-db-url", airflow_url, *args,
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env={**stack_env(home, fnd_url), **(env or {})},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        client = _wait_started(process, home, port, log)
        yield LiveStack(f"http://localhost:{port}", client, fnd_url, home, log, process.pid)
    finally:
        leftovers = _stop(process)
    assert process.returncode == 0, f"fnd up exited {process.returncode}:\n{_tail(log)}"
    assert not leftovers, f"processes left after stopping the stack: {leftovers}"


@pytest.fixture(scope="session")
def live_stack(create_database, tmp_path_factory) -> Iterator[LiveStack]:
    """`fnd up` (LocalExecutor) running until the end of the session."""
    with running_stack(create_database, tmp_path_factory.mktemp("live-stack")) as stack:
        yield stack


def _wait_started(process: subprocess.Popen, home: Path, port: int, log: Path) -> AirflowClient:
    """Wait for `fnd up` to report the stack up and for the DAGs to be parsed."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while "fnd is up" not in log.read_text(errors="replace"):
        if process.poll() is not None:
            pytest.fail(f"fnd up exited {process.returncode} while starting:\n{_tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"fnd up not ready after {START_TIMEOUT_S}s:\n{_tail(log)}")
        time.sleep(1)
    passwords = json.loads((home / "airflow" / "simple_auth_manager_passwords.json").read_text())
    client = AirflowClient(f"http://localhost:{port}", "admin", passwords["admin"])
    wait_for_dags(client, DAG_IDS, timeout_s=max(10, deadline - time.monotonic()))
    return client


def _stop(process: subprocess.Popen) -> list[int]:
    """SIGINT as Ctrl-C would; returns any descendant still alive afterwards (then killed)."""
    tree = descendants(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    leftovers = sorted(pid for pid in tree if alive(pid))
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    return leftovers


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests on the live stack last: it then starts late and stops with the session.

    The browser test goes after the flow test, so it has a retraining run to look at; the
    modules with a stack of their own (Celery, drift) go before them all, one after the
    other, so two stacks never share the 2 cores.
    """
    own_stacks = ("celery_stack", "drift_stack")
    live = [item for item in items if "live_stack" in getattr(item, "fixturenames", ())]
    own = [item for item in items
           if set(own_stacks) & set(getattr(item, "fixturenames", ()))]  # fmt: skip
    live.sort(key=lambda item: "test_browser" in item.nodeid)
    # Each own-stack module runs (and stops its stack) before the session's stack starts.
    items[:] = [item for item in items if item not in live + own] + own + live


def wait_idle(client: AirflowClient, dag_ids=DAG_IDS, timeout_s: float = 300) -> None:
    """Wait until no run of these DAGs is queued or running (e.g. the runs made at creation)."""
    for dag_id in dag_ids:
        for run in client.dag_runs(dag_id, states=["queued", "running"]):
            wait_for_run(client, dag_id, run["dag_run_id"], timeout_s=timeout_s)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
