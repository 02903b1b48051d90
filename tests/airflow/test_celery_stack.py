"""Airflow's CeleryExecutor, live: `fnd up --executor celery --workers 2` on this machine.

Two Celery workers on the default queue and two on the `gpu` queue (FND_TRAIN_QUEUE), the
broker a Redis database of its own, results in Airflow's Postgres. Shown: the shards of one
`fnd_score` run land on both workers, the training task only on the train queue's workers, a
model search's eight candidates spread over both train workers and end in a recorded gate
decision, and a worker SIGKILLed in the middle of a shard costs nothing: the scheduler sees
the shard stop heartbeating, retries it on the worker that is left, and every post is scored
once.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from fnd_core.stack.airflow_rest import wait_for_run
from fnd_core.stack.demo import generate_batch
from fnd_core.stack.processes import descendants
from tests.airflow.live_stack import SWEEP_SPACE

pytest_plugins = ["tests.airflow.live_stack"]
pytestmark = [pytest.mark.airflow, pytest.mark.slow]

BROKER = "redis://127.0.0.1:6379/11"  # a database of its own, emptied first
N_POSTS = 400
TRAIN_WORKERS = {"train-worker-1", "train-worker-2"}


@pytest.fixture(scope="module")
def celery_stack(create_database, tmp_path_factory):
    import redis

    from tests.airflow.live_stack import running_stack, wait_idle

    try:
        redis.Redis.from_url(BROKER, socket_connect_timeout=3).flushdb()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"no Redis at {BROKER} for the Celery broker: {exc}")
    env = {
        "FND_CELERY_BROKER_URL": BROKER,
        "FND_TRAIN_QUEUE": "gpu",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        # Where tasks run is shown, not which model wins: one candidate kind, one fold draw.
        "FND_CANDIDATE_KINDS": "fusion",
        "FND_CV_REPEATS": "1",
        "FND_MODEL_PRESET": "tiny",  # what the sweep's candidates encode with
    }
    args = ("--executor", "celery", "--workers", "2", "--train-workers", "2")
    with running_stack(create_database, tmp_path_factory.mktemp("celery"), args, env) as stack:
        wait_idle(stack.client)
        yield stack


def scalar(engine, sql: str):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar_one()


def hostnames(client, dag_id: str, run_id: str, task_id: str) -> dict[int, str]:
    return {ti["map_index"]: ti["hostname"] for ti in client.task_instances(dag_id, run_id)
            if ti["task_id"] == task_id}  # fmt: skip


def test_shards_spread_over_workers_and_training_runs_on_its_queue(celery_stack):
    from tests.airflow.live_stack import wait_idle

    client, engine = celery_stack.client, celery_stack.engine()
    generate_batch(Path(celery_stack.home) / "landing", N_POSTS, seed=31)
    ingest = client.trigger("fnd_ingest", client.form_conf("fnd_ingest"))
    assert wait_for_run(client, "fnd_ingest", ingest["dag_run_id"], timeout_s=300)["state"] == (
        "success")  # fmt: skip

    conf = client.form_conf("fnd_retrain", epochs=2, preset="tiny", force_promote=True,
                            min_accuracy=1.0)  # fmt: skip
    retrain = client.trigger("fnd_retrain", conf)
    done = wait_for_run(client, "fnd_retrain", retrain["dag_run_id"], timeout_s=600)
    assert done["state"] == "success", client.task_states("fnd_retrain", retrain["dag_run_id"])
    [trained_on] = hostnames(client, "fnd_retrain", retrain["dag_run_id"], "train").values()
    assert trained_on in TRAIN_WORKERS
    others = set(hostnames(client, "fnd_retrain", retrain["dag_run_id"], "snapshot").values())
    assert others <= {"worker-1", "worker-2"}  # the rest stays on the default queue
    wait_idle(client)  # the rescoring it triggered

    score = client.trigger("fnd_score", client.form_conf("fnd_score", shards=4, rescore_all=True))
    done = wait_for_run(client, "fnd_score", score["dag_run_id"], timeout_s=600)
    assert done["state"] == "success", client.task_states("fnd_score", score["dag_run_id"])
    ran_on = hostnames(client, "fnd_score", score["dag_run_id"], "score_shard")
    assert len(ran_on) == 4 and set(ran_on.values()) == {"worker-1", "worker-2"}, ran_on
    assert scalar(engine, "select count(*) from fnd.latest_predictions") == N_POSTS


def test_a_sweeps_candidates_spread_over_the_train_workers(celery_stack):
    from tests.airflow.live_stack import wait_idle

    client, engine = celery_stack.client, celery_stack.engine()
    wait_idle(client)
    conf = client.form_conf("fnd_sweep", space=SWEEP_SPACE, budget=8, min_accuracy=1.0)
    run = client.trigger("fnd_sweep", conf)
    done = wait_for_run(client, "fnd_sweep", run["dag_run_id"], timeout_s=600)
    assert done["state"] == "success", client.task_states("fnd_sweep", run["dag_run_id"])
    ran_on = hostnames(client, "fnd_sweep", run["dag_run_id"], "evaluate_candidate")
    assert sorted(ran_on) == list(range(8)) and set(ran_on.values()) == TRAIN_WORKERS, ran_on
    with engine.connect() as conn:
        version, winner = conn.execute(sa.text("select version, winner from fnd.sweeps")).one()
        status, gate = conn.execute(sa.text(
            "select status, gate ->> 'decision' from fnd.model_versions where version = :v"
        ), {"v": version}).one()  # fmt: skip
        n_done = conn.execute(sa.text(
            "select count(*) from fnd.sweep_candidates where status = 'done'"
        )).scalar_one()  # fmt: skip
    assert n_done == 8 and winner in range(8)
    assert (status, gate) == ("rejected", "reject")  # a floor of 1.0: a recorded rejection


def _kill_worker(stack_pid: int, name: str) -> int:
    """SIGKILL a worker's whole process group (the worker, its pool, its tasks): a lost machine.

    The worker is found by its Celery node name in its process title (``[celeryd:
    worker-1@host:MainProcess]``); `fnd up` started it as the leader of its own group.
    """
    for pid in descendants(stack_pid):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"{name}@" in title and "MainProcess" in title:
            group = os.getpgid(pid)
            os.killpg(group, signal.SIGKILL)
            return group
    raise AssertionError(f"no process of {name} among the stack's")


def test_a_worker_killed_mid_shard_is_retried_elsewhere(celery_stack):
    client, engine = celery_stack.client, celery_stack.engine()
    assert scalar(engine, "select count(*) from fnd.posts") == N_POSTS  # from the test above
    score = client.trigger("fnd_score", client.form_conf("fnd_score", shards=4, rescore_all=True))
    run_id, deadline = score["dag_run_id"], time.monotonic() + 300
    while True:  # a shard running on some worker: kill that worker
        running = [ti for ti in client.task_instances("fnd_score", run_id)
                   if ti["task_id"] == "score_shard" and ti["state"] == "running"
                   and ti["hostname"]]  # fmt: skip
        if running:
            victim, shard = running[0]["hostname"], running[0]["map_index"]
            break
        assert time.monotonic() < deadline, client.task_states("fnd_score", run_id)
        time.sleep(0.2)
    _kill_worker(celery_stack.pid, victim)

    done = wait_for_run(client, "fnd_score", run_id, timeout_s=900)
    assert done["state"] == "success", client.task_states("fnd_score", run_id)
    [retried] = [ti for ti in client.task_instances("fnd_score", run_id)
                 if ti["task_id"] == "score_shard" and ti["map_index"] == shard]  # fmt: skip
    assert retried["try_number"] >= 2 and retried["hostname"] not in (victim, None), retried
    n_posts = scalar(engine, "select count(*) from fnd.posts")
    version = scalar(engine, "select version from fnd.model_versions where status = 'champion'")
    with engine.connect() as conn:
        per_post = conn.execute(sa.text(
            "select count(*), count(distinct post_id) from fnd.predictions where model_version = :v"
        ), {"v": version}).one()  # fmt: skip
    assert tuple(per_post) == (n_posts, n_posts)  # no gap, no duplicate
    assert scalar(engine, "select count(*) from fnd.scoring_errors") == 0
    assert f"{victim} exited" in celery_stack.log.read_text()  # the stack said so, and went on
