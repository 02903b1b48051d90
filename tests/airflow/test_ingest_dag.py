"""fnd_ingest under dag.test(): a demo batch lands, gets validated and loaded into Postgres."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from fnd_core.demo import generate_batch

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def _dag(dagbag_dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    from tests.airflow.conftest import DAGS_DIR

    bag = DagBag(dag_folder=str(DAGS_DIR / f"{dagbag_dag_id}.py"))
    assert bag.import_errors == {}
    return bag.dags[dagbag_dag_id]


def _states(run) -> dict[str, str]:
    return {
        ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): ti.state
        for ti in run.get_task_instances()
    }


def test_ingest_dag_loads_demo_batch(airflow_db, fnd_env, clean_db):
    landing = fnd_env / "landing"
    generate_batch(landing, 40, seed=3)
    generate_batch(landing, 30, seed=4, fmt="csv")

    run = _dag("fnd_ingest").test()

    assert run.state == "success", _states(run)
    assert _states(run)["announce_posts"] == "success"
    with clean_db.connect() as conn:
        n_posts = conn.execute(sa.text("select count(*) from fnd.posts")).scalar()
        batches = conn.execute(
            sa.text(
                "select format, status, n_received, n_accepted from fnd.ingest_batches "
                "order by format"
            )
        ).all()
        n_validations = conn.execute(sa.text("select count(*) from fnd.validation_runs")).scalar()
    assert n_posts == 70
    assert [tuple(b) for b in batches] == [("csv", "loaded", 30, 30), ("jsonl", "loaded", 40, 40)]
    assert n_validations == 2
    assert (
        sorted(p.name for p in (landing / "archive").iterdir())
        == ["batch1-demo_s3.jsonl", "batch2-demo_s4.csv"]
        or len(list((landing / "archive").iterdir())) == 2
    )


def test_ingest_dag_with_nothing_new_skips_the_asset(airflow_db, fnd_env, clean_db):
    run = _dag("fnd_ingest").test()
    assert run.state == "success", _states(run)
    assert _states(run)["announce_posts"] == "skipped"
