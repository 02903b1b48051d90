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
