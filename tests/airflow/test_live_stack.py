"""The whole system live: `fnd up` on Postgres, driven through Airflow's REST API like a user.

ingest (triggered as the UI's Trigger button does) → the asset-triggered fnd_score run (skips:
no champion yet) → fnd_retrain (tiny preset, forced promotion) → the fnd_score run it triggers
→ every post has a verdict in fnd.latest_predictions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from fnd_core.stack.airflow_rest import wait_for_new_run, wait_for_run
from fnd_core.stack.demo import generate_batch

pytest_plugins = ["tests.airflow.live_stack"]
pytestmark = [pytest.mark.airflow, pytest.mark.slow]

N_POSTS = 120  # the training_set suite wants at least 100 labelled posts


def scalar(engine, sql: str):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


def test_ingest_retrain_score_through_the_api(live_stack):
    from tests.airflow.live_stack import wait_idle

    client, engine = live_stack.client, live_stack.engine()
    # Unpaused at creation, each DAG gets a run for its latest schedule tick: let those finish
    # so they cannot race the runs this test makes.
    wait_idle(client)
    generate_batch(Path(live_stack.home) / "landing", N_POSTS, seed=11)
    asset_runs = {r["dag_run_id"] for r in client.dag_runs("fnd_score")}

    ingest = client.trigger("fnd_ingest", client.form_conf("fnd_ingest"))
    assert ingest["conf"] == {"path": None, "fail_share": None}
    done = wait_for_run(client, "fnd_ingest", ingest["dag_run_id"], timeout_s=300)
    assert done["state"] == "success", client.task_states("fnd_ingest", ingest["dag_run_id"])
    assert done["triggering_user_name"] == "admin"
    assert scalar(engine, "select count(*) from fnd.posts") == N_POSTS

    on_asset = wait_for_new_run(client, "fnd_score", run_type="asset_triggered", known=asset_runs)
    on_asset = wait_for_run(client, "fnd_score", on_asset["dag_run_id"], timeout_s=300)
    states = client.task_states("fnd_score", on_asset["dag_run_id"])
    assert on_asset["state"] == "success", states
    assert states["plan_shards"] == "skipped", states  # no champion yet

    # A floor of 1.0 fails the gate for sure, so the promotion is a forced one, on the record.
    conf = client.form_conf(
        "fnd_retrain", epochs=3, preset="tiny", force_promote=True, min_accuracy=1.0
    )
    retrain = client.trigger("fnd_retrain", conf)
    done = wait_for_run(client, "fnd_retrain", retrain["dag_run_id"], timeout_s=600)
    states = client.task_states("fnd_retrain", retrain["dag_run_id"])
    assert done["state"] == "success", states
    assert states["promote"] == "success" and states["reject"] == "skipped", states
    with engine.connect() as conn:
        status, forced_by, floor_by = conn.execute(
            sa.text("select status, forced_by, gate ->> 'floor_set_by' from fnd.model_versions "
                    "order by created_at desc")
        ).first()  # fmt: skip
    assert (status, forced_by, floor_by) == ("champion", "admin", "admin")  # the API user

    score_run_id = client.xcom(
        "fnd_retrain", retrain["dag_run_id"], "trigger_rescoring", "trigger_run_id"
    )
    score = wait_for_run(client, "fnd_score", str(score_run_id), timeout_s=600)
    assert score["state"] == "success", client.task_states("fnd_score", str(score_run_id))
    n_posts = scalar(engine, "select count(*) from fnd.posts")
    assert scalar(engine, "select count(*) from fnd.latest_predictions") == n_posts == N_POSTS
    # The UI's pages read through fnd_db_read, which `fnd up` defines: the login fnd_ui.
    assert client.request("GET", "/fnd/api/validations")["total"] >= 1
    readers = "select count(*) from pg_stat_activity where usename = 'fnd_ui'"
    assert scalar(engine, readers) >= 1
    engine.dispose()


def test_a_sweep_of_eight_mapped_candidates_while_a_retraining_waits_for_its_lease(live_stack):
    """LocalExecutor: fnd_sweep maps eight candidates; an fnd_retrain asked for meanwhile waits
    for the training lease (its claim rescheduled) and trains only once the sweep gave it back.
    Both gates reject (a floor of 1.0), on the record."""
    from tests.airflow.live_stack import SWEEP_SPACE, wait_idle

    client, engine = live_stack.client, live_stack.engine()
    wait_idle(client)
    if scalar(engine, "select count(*) from fnd.posts") < N_POSTS:  # run on its own
        generate_batch(Path(live_stack.home) / "landing", N_POSTS, seed=12)
        ingest = client.trigger("fnd_ingest", client.form_conf("fnd_ingest"))
        wait_for_run(client, "fnd_ingest", ingest["dag_run_id"], timeout_s=300)
    sweep = client.trigger(
        "fnd_sweep", client.form_conf("fnd_sweep", space=SWEEP_SPACE, budget=8, min_accuracy=1.0)
    )
    claimed = wait_for_new_state(client, "fnd_sweep", sweep["dag_run_id"], "claim_training_lease")
    assert claimed == "success"
    retrain = client.trigger(
        "fnd_retrain", client.form_conf("fnd_retrain", epochs=3, preset="tiny", min_accuracy=1.0)
    )
    swept = wait_for_run(client, "fnd_sweep", sweep["dag_run_id"], timeout_s=900)
    sweep_tis = by_task(client, "fnd_sweep", sweep["dag_run_id"])
    assert swept["state"] == "success", client.task_states("fnd_sweep", sweep["dag_run_id"])
    assert [sweep_tis[f"evaluate_candidate[{i}]"]["state"] for i in range(8)] == ["success"] * 8
    retrained = wait_for_run(client, "fnd_retrain", retrain["dag_run_id"], timeout_s=900)
    retrain_tis = by_task(client, "fnd_retrain", retrain["dag_run_id"])
    assert retrained["state"] == "success", retrain_tis
    # one training run at a time: the retraining fitted only after the sweep released
    released = sweep_tis["release_training_lease"]
    assert released["state"] == "success"
    assert retrain_tis["train"]["start_date"] > released["end_date"], (released, retrain_tis)
    assert retrained["start_date"] < released["end_date"], retrained  # it ran, waiting, meanwhile
    with engine.connect() as conn:
        decisions = conn.execute(sa.text(
            "select gate ->> 'decision' from fnd.model_versions where training_run_id in (:a, :b)"
        ), {"a": sweep["dag_run_id"], "b": retrain["dag_run_id"]}).scalars().all()  # fmt: skip
        lease = conn.execute(sa.text("select count(*) from fnd.training_lease")).scalar_one()
    assert sorted(decisions) == ["reject", "reject"] and lease == 0
    engine.dispose()


def wait_for_new_state(client, dag_id: str, run_id: str, task_id: str, timeout_s: float = 300):
    """The task's state once it is final (success, failed, skipped...)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = client.task_states(dag_id, run_id).get(task_id)
        if state in ("success", "failed", "skipped", "upstream_failed"):
            return state
        time.sleep(2)
    raise AssertionError(f"{dag_id}.{task_id} not done after {timeout_s}s")


def by_task(client, dag_id: str, run_id: str) -> dict[str, dict]:
    """The run's task instances by ``task_id`` (``task_id[i]`` when mapped)."""
    return {ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti
            for ti in client.task_instances(dag_id, run_id)}  # fmt: skip
