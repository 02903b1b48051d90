"""The three DAGs under dag.test(), end to end against Postgres: ingest → retrain → score."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from fnd_core.stack.demo import generate_batch
from tests.airflow.conftest import DAGS_DIR

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR / f"{dag_id}.py"))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def task_states(run) -> dict[str, str]:
    return {
        ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): ti.state
        for ti in run.get_task_instances()
    }


def scalar(engine, sql: str):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


def test_ingest_loads_every_file_and_announces_posts(airflow_db, fnd_env, clean_db):
    landing = fnd_env / "landing"
    generate_batch(landing, 40, seed=3)
    generate_batch(landing, 30, seed=4, fmt="csv")

    run = load_dag("fnd_ingest").test()

    assert run.state == "success", task_states(run)
    assert task_states(run)["announce_posts"] == "success"
    assert task_states(run)["check_batch_drift"] == "success"  # no champion: nothing compared
    assert scalar(clean_db, "select count(*) from fnd.drift_reports") == 0
    assert scalar(clean_db, "select count(*) from fnd.posts") == 70
    assert scalar(clean_db, "select count(*) from fnd.validation_runs") == 2
    assert scalar(clean_db, "select count(*) from fnd.ingest_batches where status = 'loaded'") == 2
    assert len(list((landing / "archive").iterdir())) == 2


def test_ingest_with_nothing_new_does_not_announce(airflow_db, fnd_env, clean_db):
    run = load_dag("fnd_ingest").test()
    assert run.state == "success", task_states(run)
    assert task_states(run)["announce_posts"] == "skipped"


def test_score_without_champion_skips(airflow_db, fnd_env, clean_db):
    run = load_dag("fnd_score").test()
    assert task_states(run)["plan_shards"] == "skipped"
    assert scalar(clean_db, "select count(*) from fnd.predictions") == 0


def test_ingest_retrain_score_end_to_end(airflow_db, fnd_env, clean_db, monkeypatch):
    generate_batch(fnd_env / "landing", 240, seed=5)
    assert load_dag("fnd_ingest").test().state == "success"

    retrain = load_dag("fnd_retrain").test(
        run_conf={"preset": "tiny", "epochs": 3, "force_promote": True, "min_accuracy": 0.6}
    )
    states = task_states(retrain)
    assert retrain.state == "success", states
    assert states["promote"] == "success" and states["reject"] == "skipped", states
    with clean_db.connect() as conn:
        status, forced_by, gate = conn.execute(
            sa.text("select status, forced_by, gate from fnd.model_versions")
        ).one()
    assert status == "champion"
    assert forced_by  # the audit trail names who forced it
    assert gate["decision"] == "promote"
    assert gate["policy"]["min_accuracy"] == 0.6 and gate["floor_set_by"]  # audited like a force
    candidate = gate["evaluation"]["candidate"]  # every post predicted out of fold, or in a
    assert candidate["n"] + candidate["topic_plan"]["n_train_only"] == 240  # topic kept in training
    assert gate["evaluation"]["leak"]["groups_straddling_folds"] == 0

    # Any move of the estimated fake share flags this run: the alert path runs for certain.
    monkeypatch.setenv("FND_PRIOR_MIN_POSTS", "1")
    monkeypatch.setenv("FND_DRIFT_PRIOR_TOLERANCE", "0")
    score = load_dag("fnd_score").test(run_conf={"shards": 3})
    assert score.state == "success", task_states(score)
    n_posts = scalar(clean_db, "select count(*) from fnd.posts")
    assert scalar(clean_db, "select count(*) from fnd.latest_predictions") == n_posts == 240
    # The run's posts were compared with the training snapshot: one report, stored, flagged
    # (the fake share moved), alerted on, and retraining requested once.
    with clean_db.connect() as conn:
        flagged, reasons = conn.execute(sa.text(
            "select flagged, reasons from fnd.drift_summary where kind = 'scoring_run'"
        )).one()  # fmt: skip
    assert flagged and any("estimated fake share" in r for r in reasons), reasons
    states = task_states(score)
    assert states["check_drift"] == "success"
    assert states["drift_alert"] == "success" and states["request_retrain"] == "success", states
    with clean_db.connect() as conn:
        requested = conn.execute(sa.text(
            "select count(*) from fnd.drift_reports where retrain_requested"
        )).scalar_one()  # fmt: skip
    assert requested == 1

    again = load_dag("fnd_score").test()
    assert again.state == "success"
    assert scalar(clean_db, "select count(*) from fnd.predictions") == n_posts

    # A batch landed once there is a champion is compared with its training snapshot at ingest.
    generate_batch(fnd_env / "landing", 60, seed=6)
    landed = load_dag("fnd_ingest").test()
    assert task_states(landed)["check_batch_drift"] == "success", task_states(landed)
    assert scalar(clean_db, "select count(*) from fnd.drift_summary where kind = 'batch' "
                            "and n_posts = 60 and text_auc is not null") == 1  # fmt: skip


def test_a_run_that_set_files_aside_ends_red_while_good_posts_load(airflow_db, fnd_env, clean_db):
    """A looping link and a file no parser can read: each one's task fails at once (no retry),
    the good file's posts load and are announced, and the last task fails the run."""
    import os

    landing = fnd_env / "landing"
    generate_batch(landing, 20, seed=8)
    (landing / "loop.jsonl").symlink_to("loop.jsonl")
    (landing / "caf\udce9.csv").write_bytes(b"no,header\n")  # a name that is not UTF-8

    run = load_dag("fnd_ingest").test()

    states = task_states(run)
    assert run.state == "failed", states
    mapped = sorted(v for k, v in states.items() if k.startswith("ingest_file["))
    assert mapped == ["failed", "failed", "success"], states
    tries = {ti.task_id: ti.try_number for ti in run.get_task_instances() if ti.state == "failed"}
    assert tries["ingest_file"] == 1  # set aside: never retried
    assert states["announce_posts"] == "success" and states["check_batch_drift"] == "success"
    assert states["check_nothing_set_aside"] == "failed"
    assert scalar(clean_db, "select count(*) from fnd.posts") == 20
    failed = scalar(clean_db, "select count(*) from fnd.ingest_batches where status = 'failed'")
    assert failed == 2
    assert sorted(os.listdir(landing)) == ["archive", "failed", "images"]


def test_label_files_land_through_ingest_and_a_realized_drop_requests_retraining(
    airflow_db, fnd_env, clean_db, monkeypatch
):
    """Labels in landing/labels/ for verdicts a champion gave: loaded by the same mapped task,
    not announced as posts; the realized balanced accuracy (0.75 over 4 + 4 labels) falls below
    the gate's 0.95, so the run alerts and updates fnd://drift."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    from tests.labelled_verdicts import P_FAKE, TRUTH, add_verdicts, add_version

    monkeypatch.setenv("FND_REALIZED_MIN_LABELS_PER_CLASS", "2")
    generate_batch(fnd_env / "landing", 10, seed=5, unlabelled_share=1.0)
    assert load_dag("fnd_ingest").test().state == "success"
    add_version(clean_db, gate_by_post=0.95)
    add_verdicts(clean_db, P_FAKE)
    labels = fnd_env / "landing" / "labels"
    labels.mkdir()
    (labels / "afp.csv").write_text(
        "post_id,label,source\n" + "".join(f"{k},{v},afp\n" for k, v in TRUTH.items())
    )

    run = load_dag("fnd_ingest").test()

    states = task_states(run)
    assert run.state == "success", states
    assert states["ingest_file[0]"] == "success" and states["announce_posts"] == "skipped"
    assert states["check_realized_performance"] == "success"
    assert states["request_retrain_on_labels"] == "success", states
    assert scalar(clean_db, "select count(*) from fnd.labels where source = 'afp'") == 8
    assert scalar(clean_db, "select count(*) from fnd.performance_alerts") == 1
    assert list((labels / "archive").iterdir())
    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id).all()
        assert [e.asset.uri.rstrip("/") for e in events] == ["fnd://drift"]  # as normalised
