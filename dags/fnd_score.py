"""
### fnd_score — the champion's verdict for every post, in Postgres

Runs when `fnd_ingest` updates the asset `fnd://posts`, when `fnd_retrain` promotes a new
champion, and on a backstop schedule (`FND_SCORE_SCHEDULE`). It selects the posts the model
has not scored yet (an indexed anti-join), splits them into shards scored by mapped tasks
(several workers at once), and writes `fnd.predictions` in bulk and idempotently: a shard that
dies midway is simply run again. Posts whose image cannot be read land in `fnd.scoring_errors`.
Updates the asset `fnd://predictions`, and the label-free estimate of each week's performance
(`fnd.performance_estimates`). Then the run's posts are compared with the champion's
training data (`fnd.drift_summary`); a flagged run alerts and updates the asset `fnd://drift`
(which starts `fnd_retrain` when `FND_DRIFT_TRIGGERS_RETRAIN` is set).

**Params**: `rescore_all` (score every post again), `model_version` (empty = the champion),
`shards` (empty = `FND_SCORE_SHARDS`), `objective` (`balanced` or `accuracy`; default
`FND_DECISION_OBJECTIVE`).

Query the results: `select * from fnd.latest_predictions where label = 'fake'`.
"""

from __future__ import annotations

from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    dag,
    get_current_context,
    task,
)

from fnd_airflow.dag_support import (
    COMMON_DAG_KWARGS,
    DRIFT_ASSET_URI,
    POSTS_ASSET_URI,
    PREDICTIONS_ASSET_URI,
    fnd_alert,
    fnd_engine,
    fnd_settings,
)
from fnd_core import contracts

POSTS = Asset(POSTS_ASSET_URI)
PREDICTIONS = Asset(PREDICTIONS_ASSET_URI)
DRIFT = Asset(DRIFT_ASSET_URI)


@dag(
    dag_id=contracts.SCORE_DAG,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(fnd_settings().score_schedule, timezone="UTC"),
        assets=POSTS,
    ),
    doc_md=__doc__,
    tags=["fnd", "scoring"],
    max_active_runs=1,
    params={
        "rescore_all": Param(
            False, type="boolean", title="Rescore all", description="Score every post again."
        ),
        "model_version": Param(
            None,
            type=["null", "string"],
            title="Model version",
            description="Score with this version from fnd.model_versions. Empty: the champion.",
        ),
        "shards": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=64,
            title="Shards",
            description="Parallel scoring tasks. Empty: FND_SCORE_SHARDS.",
        ),
        "objective": Param(
            fnd_settings().decision_objective,
            type="string",
            enum=["balanced", "accuracy"],
            title="Decision objective",
            description="balanced: threshold 0.5 on calibrated p_fake. accuracy: the threshold "
            "moved by the fake share estimated on this run's posts (stored per verdict in "
            "predictions.threshold). Default: FND_DECISION_OBJECTIVE.",
        ),
    },
    **COMMON_DAG_KWARGS,
)
def fnd_score():
    @task
    def plan_shards() -> list[dict]:
        """Count the unscored posts per shard; skip the run when there is no model yet."""
        from airflow.sdk.exceptions import AirflowSkipException

        from fnd_core.pipeline import scoring

        params = get_current_context()["params"]
        try:
            work = scoring.plan(
                fnd_engine(),
                model_version=params.get("model_version"),
                n_shards=params.get("shards") or fnd_settings().score_shards,
                rescore_all=params["rescore_all"],
            )
        except scoring.NoChampionError as exc:
            raise AirflowSkipException(str(exc)) from exc
        print(f"{work['n_todo']} post(s) to score with {work['model_version']}")
        return [s for s in work["shards"] if s["n_todo"]]

    @task(task_id=contracts.SCORE_SHARD_TASK, map_index_template="shard {{ shard_label }}")
    def score_shard(shard: dict) -> dict:
        """Score one shard page by page; safe to rerun (only unscored posts are selected)."""
        from dataclasses import replace

        from fnd_core.pipeline import scoring

        context = get_current_context()
        context["shard_label"] = f"{shard['shard']}/{shard['n_shards']}"
        objective = context["params"].get("objective") or fnd_settings().decision_objective
        settings = replace(fnd_settings(), decision_objective=objective)
        report = scoring.score_shard(
            fnd_engine(),
            settings,
            model_version=shard["model_version"],
            shard=shard["shard"],
            n_shards=shard["n_shards"],
            rescore_all=context["params"]["rescore_all"],
            run_id=context["run_id"],
        )
        return report.to_json()

    @task(outlets=[PREDICTIONS])
    def publish(reports: list[dict]) -> dict:
        """Sum up the run and update the predictions asset."""
        total = {
            "n_scored": sum(r["n_scored"] for r in reports),
            "n_errors": sum(r["n_errors"] for r in reports),
        }
        print(f"scored {total['n_scored']} post(s), {total['n_errors']} error(s)")
        return total

    @task
    def check_drift(total: dict) -> dict:
        """Compare the posts this run scored with the champion's training snapshot; store it."""
        from fnd_core.observe import drift

        engine, run_id = fnd_engine(), get_current_context()["run_id"]
        if not total["n_scored"]:
            return {"flagged": False, "skipped": "nothing scored in this run"}
        report = drift.measure(engine, fnd_settings(), kind="scoring_run", subject=run_id)
        if report is None:
            return {"flagged": False, "skipped": "no champion or no posts"}
        report_id = drift.record(engine, report, run_id)
        print(report.summary())
        return {**report.to_json(), "report_id": report_id}

    @task
    def drift_alert(report: dict) -> str:
        """Log and notify (FND_ALERT_NOTIFIER) when the run was flagged; skipped otherwise."""
        from airflow.sdk.exceptions import AirflowSkipException

        if not report.get("flagged"):
            raise AirflowSkipException("no drift flagged")
        title = f"fnd: drift in scoring run {report['subject']} ({report['n_posts']} posts)"
        fnd_alert(get_current_context(), title, report["reasons"])
        return "; ".join(report["reasons"])

    @task(outlets=[DRIFT])
    def request_retrain(report: dict) -> str:
        """Update fnd://drift (which starts fnd_retrain when FND_DRIFT_TRIGGERS_RETRAIN is
        set) for a flagged run — once per champion and per FND_DRIFT_RETRAIN_COOLDOWN_HOURS;
        skipped (no event) otherwise."""
        from airflow.sdk.exceptions import AirflowSkipException

        from fnd_core.observe import drift

        if not report.get("flagged"):
            raise AirflowSkipException("no drift flagged")
        cooldown = fnd_settings().drift_retrain_cooldown_hours
        if not drift.request_retrain(fnd_engine(), report["report_id"], cooldown_hours=cooldown):
            raise AirflowSkipException(
                f"retraining was already requested for {report['model_version']} "
                f"or in the last {cooldown:g} h"
            )
        return f"retraining requested for drift against {report['model_version']}"

    @task
    def estimate_performance(total: dict) -> list[dict]:
        """The label-free estimate of each week whose first verdicts changed
        (fnd.performance_estimates, beside fnd.realized_performance)."""
        from fnd_core.observe.performance import estimate_weeks

        if not total["n_scored"]:
            return []
        return estimate_weeks(fnd_engine())

    total = publish(score_shard.expand(shard=plan_shards()))
    estimate_performance(total)
    report = check_drift(total)
    [drift_alert(report), request_retrain(report)]


fnd_score()
