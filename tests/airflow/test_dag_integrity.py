"""DAG integrity and policy: import cleanly, parse fast, no heavy imports, sane defaults."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fnd_core import contracts
from tests.airflow.conftest import DAGS_DIR

pytestmark = pytest.mark.airflow

DAG_FILES = sorted(DAGS_DIR.glob("fnd_*.py"))
HEAVY = ("torch", "transformers", "great_expectations", "pandas", "sklearn", "PIL")

# Runs in a fresh interpreter. The first parse pays Airflow's own lazy imports, as the
# DAG processor does once; the second parse is what every later re-parse costs, so that is
# the one timed. Heavy modules are listed after the first parse.
PROBE = """
import json, runpy, sys, time
runpy.run_path({path!r})
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
t0 = time.perf_counter()
runpy.run_path({path!r})
elapsed = time.perf_counter() - t0
print(json.dumps({{"seconds": elapsed, "heavy": heavy}}))
"""


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_expected_dags_present(dagbag):
    assert set(dagbag.dag_ids) == {
        "fnd_ingest",
        "fnd_score",
        "fnd_retrain",
        "fnd_landing_watch",
        "fnd_sweep",
    }
    assert set(contracts.ALL_DAGS) == set(dagbag.dag_ids)


def test_the_names_other_code_uses_exist_in_the_dags(dagbag):
    """Tasks and assets named in fnd_core.contracts (notifier, kick-off, UI) are the DAGs' own."""
    tasks = {(dag_id, t) for dag_id, dag in dagbag.dags.items() for t in dag.task_ids}
    assert {
        (contracts.INGEST_DAG, contracts.INGEST_FILE_TASK),
        (contracts.SCORE_DAG, contracts.SCORE_SHARD_TASK),
        (contracts.RETRAIN_DAG, contracts.VALIDATE_SNAPSHOT_TASK),
        (contracts.RETRAIN_DAG, contracts.RESCORING_TASK),
        (contracts.SWEEP_DAG, contracts.VALIDATE_SNAPSHOT_TASK),
        (contracts.SWEEP_DAG, contracts.SWEEP_CANDIDATE_TASK),
        (contracts.SWEEP_DAG, contracts.RESCORING_TASK),
    } <= tasks
    for dag_id in (contracts.RETRAIN_DAG, contracts.SWEEP_DAG):
        assert {
            (dag_id, contracts.CLAIM_LEASE_TASK),
            (dag_id, contracts.RELEASE_LEASE_TASK),
        } <= tasks
    outlets = {
        outlet.uri.rstrip("/")  # Airflow normalises "fnd://posts" to "fnd://posts/"
        for dag in dagbag.dags.values()
        for task in dag.tasks
        for outlet in task.outlets
    }
    assert {contracts.POSTS_ASSET, contracts.PREDICTIONS_ASSET, contracts.DRIFT_ASSET} <= outlets
    rescoring = dagbag.dags[contracts.RETRAIN_DAG].get_task(contracts.RESCORING_TASK)
    assert rescoring.trigger_dag_id == contracts.SCORE_DAG


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_fast_without_heavy_imports(path):
    code = PROBE.format(path=str(path), heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], f"{path.name} imports {result['heavy']} at parse time"
    assert result["seconds"] < 1.0, f"{path.name} took {result['seconds']:.2f}s to parse"


def test_dag_policy(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.catchup is False, dag_id
        assert "fnd" in dag.tags, dag_id
        assert dag.doc_md, f"{dag_id} has no doc_md"
        assert dag.max_consecutive_failed_dag_runs > 0, dag_id
        for t in dag.tasks:
            assert t.owner == "fnd", f"{dag_id}.{t.task_id}"


@pytest.mark.parametrize("enabled", [False, True])
def test_retraining_runs_on_flagged_drift_only_when_enabled(airflow_db, monkeypatch, enabled):
    """With FND_DRIFT_TRIGGERS_RETRAIN, fnd_retrain also runs on the fnd://drift asset, which
    fnd_score's request_retrain task updates only when a run is flagged (drift_alert only
    notifies)."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("FND_DRIFT_TRIGGERS_RETRAIN", str(enabled).lower())
    bag = DagBag(dag_folder=str(DAGS_DIR / "fnd_retrain.py"))
    retrain = bag.dags["fnd_retrain"]
    assert ("fnd://drift" in str(getattr(retrain.timetable, "asset_condition", ""))) is enabled
    assert [a.uri.rstrip("/") for a in bag_outlets(DAGS_DIR, "fnd_score", "request_retrain")] == [
        "fnd://drift"
    ]
    assert bag_outlets(DAGS_DIR, "fnd_score", "drift_alert") == []


def bag_outlets(folder, dag_id: str, task_id: str) -> list:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(folder / f"{dag_id}.py")).dags[dag_id]
    return list(dag.get_task(task_id).outlets)


@pytest.mark.parametrize("name", ["fnd_landing_watch.py", "fnd_retrain.py"])
def test_google_cloud_shapes_parse_fast_without_heavy_imports(name, monkeypatch):
    """With a gs:// landing zone (the GCS sensor is imported) and the Vertex AI backend."""
    monkeypatch.setenv("FND_LANDING_DIR", "gs://bucket/landing")
    monkeypatch.setenv("FND_TRAIN_BACKEND", "vertex")
    test_dag_file_parses_fast_without_heavy_imports(DAGS_DIR / name)


def test_unknown_training_backend_is_an_import_error(airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("FND_TRAIN_BACKEND", "sagemaker")
    bag = DagBag(dag_folder=str(DAGS_DIR / "fnd_retrain.py"))
    [error] = bag.import_errors.values()
    assert "FND_TRAIN_BACKEND='sagemaker': use local or vertex" in error


def test_retrain_form_offers_the_presets_and_defaults_from_settings(dagbag):
    """The trigger form's lists come from fnd_core (no literal "null" among the presets)."""
    from fnd_core.settings import Settings

    params = dagbag.dags[contracts.RETRAIN_DAG].params
    preset = params.get_param("preset")
    assert preset.schema["enum"] == ["offline", "seed", "tiny"]
    assert preset.value == Settings.from_env().model_preset
    assert params.get_param("epochs").value == Settings.from_env().train_epochs


def test_sweep_form_defaults_to_the_shipped_space_and_caps_the_budget(airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from fnd_core.pipeline.sweep_space import DEFAULT_SPACE, load_space

    monkeypatch.setenv("FND_SWEEP_MAX_CANDIDATES", "12")
    monkeypatch.setenv("FND_SWEEP_CRON", "0 3 * * 6")
    dag = DagBag(dag_folder=str(DAGS_DIR / "fnd_sweep.py")).dags[contracts.SWEEP_DAG]
    params = dag.params
    assert load_space(params["space"]).sha256 == load_space(DEFAULT_SPACE).sha256
    assert params.get_param("budget").schema["maximum"] == 12
    assert params["budget"] == 8
    assert dag.get_task(contracts.SWEEP_CANDIDATE_TASK).queue == "default"
    assert dag.timetable.expression == "0 3 * * 6"


@pytest.mark.parametrize("dag_id", [contracts.RETRAIN_DAG, contracts.SWEEP_DAG])
def test_every_task_of_a_training_dag_runs_inside_the_training_lease(dagbag, dag_id):
    """Claimed before anything else (a sensor that waits without holding a worker slot), given
    back after everything else, whichever way the gate went (a teardown)."""
    dag = dagbag.dags[dag_id]
    claim = dag.get_task(contracts.CLAIM_LEASE_TASK)
    release = dag.get_task(contracts.RELEASE_LEASE_TASK)
    assert claim.is_setup and release.is_teardown and claim.mode == "reschedule"
    inside = set(dag.task_ids) - {claim.task_id, release.task_id}
    assert inside <= claim.get_flat_relative_ids(upstream=False)
    assert inside <= release.get_flat_relative_ids(upstream=True)
