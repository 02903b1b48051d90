"""fnd_sweep under dag.test() against Postgres: candidates as mapped tasks, the winner gated."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from fnd_core.pipeline import training_lease
from fnd_core.settings import Settings
from tests.airflow.test_pipeline_dags import load_dag, task_states
from tests.helpers import ingest_demo

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

GRID = {
    "version": 1,
    "method": "grid",
    "parameters": {"kind": {"values": ["fusion", "linear"]}, "hidden": {"values": [16, 32]}},
}


@pytest.fixture
def sweep_env(fnd_env, monkeypatch, clean_db, db_url):
    for name, value in {"FND_MODEL_PRESET": "tiny", "FND_TRAIN_EPOCHS": "3",
                        "FND_CV_REPEATS": "1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    ingest_demo(clean_db, Settings(home=fnd_env, database_url=db_url), 200, seed=3)
    return fnd_env


def test_a_sweep_maps_its_candidates_and_gates_the_winner(airflow_db, sweep_env, clean_db):
    run = load_dag("fnd_sweep").test(run_conf={"space": GRID, "budget": 8, "force_promote": True})
    states = task_states(run)
    assert run.state == "success", states
    # three candidates: a linear head has no hidden layer, so hidden 16 and 32 are one
    mapped = {k: v for k, v in states.items() if k.startswith("evaluate_candidate[")}
    assert mapped == {f"evaluate_candidate[{i}]": "success" for i in range(3)}, states
    assert states["select"] == states["train_winner"] == states["promote"] == "success"
    with clean_db.connect() as conn:
        done = conn.execute(sa.text(
            "select count(*) from fnd.sweep_candidates where status = 'done'"
        )).scalar_one()  # fmt: skip
        sweep_version, winner = conn.execute(
            sa.text("select version, winner from fnd.sweeps")
        ).one()
        status, gate = conn.execute(sa.text(
            "select status, gate from fnd.model_versions where version = :v"
        ), {"v": sweep_version}).one()  # fmt: skip
    assert done == 3 and winner in (0, 1, 2)
    assert status == "champion" and gate["evaluation"]["selection"]["sweep"]["winner"] == winner
    # the run held the training lease from before its snapshot and gave it back at its end
    assert states["claim_training_lease"] == states["release_training_lease"] == "success"
    assert training_lease.current(clean_db) is None


def test_a_bad_space_from_the_form_fails_before_any_fitting(airflow_db, sweep_env, clean_db):
    bad = {**GRID, "parameters": {"hidden": {"values": [16, "import os"]}}}
    run = load_dag("fnd_sweep").test(run_conf={"space": bad, "budget": 4})
    states = task_states(run)
    assert states["start"] == "failed", states
    assert states["select"] in ("upstream_failed", "skipped"), states  # nothing to select
    assert not any(k.startswith("evaluate_candidate[") and v == "success"
                   for k, v in states.items())  # fmt: skip
    with clean_db.connect() as conn:
        assert conn.execute(sa.text("select count(*) from fnd.sweeps")).scalar_one() == 0


def test_a_run_waits_for_another_runs_training_lease_then_fails_without_training(
    airflow_db, sweep_env, clean_db, monkeypatch
):
    from datetime import timedelta

    monkeypatch.setenv("FND_TRAINING_LEASE_WAIT_HOURS", "0.001")  # 3.6 s of waiting
    training_lease.claim(clean_db, "fnd_sweep/manual__other", timedelta(hours=1))
    run = load_dag("fnd_retrain").test()
    states = task_states(run)
    assert run.state == "failed", states
    assert states["claim_training_lease"] == "failed", states
    assert states["snapshot"] == "upstream_failed", states
    assert states.get("release_training_lease") != "success", states  # not its lease to give
    assert training_lease.current(clean_db).holder == "fnd_sweep/manual__other"
    with clean_db.connect() as conn:
        assert conn.execute(sa.text("select count(*) from fnd.model_versions")).scalar_one() == 0
