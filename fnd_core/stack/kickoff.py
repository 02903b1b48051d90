"""The kick-off after ``fnd up``: ingest now and train if there is no champion yet.

A new user then sees the whole flow within minutes — ingest, the asset-triggered scoring run,
retraining, the gate, promotion and the rescoring it triggers — instead of waiting for the
schedules. Everything goes through the REST API, as a user clicking Trigger in the UI would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from fnd_core.contracts import INGEST_DAG, PIPELINE_DAGS, RESCORING_TASK, RETRAIN_DAG, SCORE_DAG
from fnd_core.pipeline import registry
from fnd_core.stack.airflow_rest import AirflowApiError, AirflowClient, wait_for_dags, wait_for_run

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

RUN_TIMEOUT_S = 3600


def kickoff(
    client: AirflowClient, engine: Engine, echo: Callable[[str], None], started: float
) -> dict[str, Any]:
    """Ingest, then retrain when there is no champion, then wait for the rescoring run.

    Never raises (it runs beside the supervisor): problems are reported through ``echo``.
    Returns what happened, for logs and tests.
    """

    def say(msg: str) -> None:
        echo(f"[kick-off +{time.monotonic() - started:4.0f}s] {msg}")

    try:
        return _kickoff(client, engine, say)
    except Exception as exc:  # noqa: BLE001 - report, never take the stack down
        say(f"stopped: {exc}")
        return {"error": str(exc)}


def _kickoff(client: AirflowClient, engine: Engine, say: Callable[[str], None]) -> dict[str, Any]:
    wait_for_dags(client, PIPELINE_DAGS)
    ingest = _run(INGEST_DAG, client, say)
    if ingest["state"] != "success":
        return {"ingest": ingest["state"]}
    say(f"{_count(engine, 'fnd.posts')} posts in fnd.posts")

    for active in client.dag_runs(RETRAIN_DAG, states=["queued", "running"]):
        say(f"waiting for fnd_retrain run {active['dag_run_id']} already under way ...")
        wait_for_run(client, RETRAIN_DAG, active["dag_run_id"], timeout_s=RUN_TIMEOUT_S)
    champion = registry.current_champion(engine)
    if champion is not None:
        say(f"champion {champion.version} serves; fnd_score scores new posts as they arrive")
        return {"ingest": "success", "champion": champion.version}

    retrain = _run(RETRAIN_DAG, client, say)
    champion = registry.current_champion(engine)
    if retrain["state"] != "success" or champion is None:
        say("no champion yet: see the fnd_retrain run's gate task in the UI")
        return {"ingest": "success", "retrain": retrain["state"]}
    score_run_id = client.xcom(RETRAIN_DAG, retrain["dag_run_id"], RESCORING_TASK, "trigger_run_id")
    say(f"champion {champion.version} promoted; fnd_score run {score_run_id} scores every post ...")
    score = wait_for_run(client, SCORE_DAG, score_run_id, timeout_s=RUN_TIMEOUT_S)
    n_scored = _count(engine, "fnd.latest_predictions")
    say(f"fnd_score {score['state']}: {n_scored} posts have a verdict in fnd.latest_predictions")
    return {"ingest": "success", "retrain": "success", "score": score["state"], "n": n_scored}


def _run(dag_id: str, client: AirflowClient, say: Callable[[str], None]) -> dict[str, Any]:
    """Trigger ``dag_id`` with its form defaults and wait for the run to finish."""
    run = client.trigger(dag_id, client.form_conf(dag_id))
    say(f"triggered {dag_id} ({run['dag_run_id']}) ...")
    done = wait_for_run(client, dag_id, run["dag_run_id"], timeout_s=RUN_TIMEOUT_S)
    failed = ""
    if done["state"] != "success":
        try:
            states = client.task_states(dag_id, run["dag_run_id"])
            failed = " — failed: " + ", ".join(t for t, s in states.items() if s == "failed")
        except AirflowApiError:
            pass
    say(f"{dag_id} {done['state']}{failed}")
    return done


def _count(engine: Engine, relation: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"select count(*) from {relation}")).scalar_one()
