"""
### fnd_retrain — nightly retraining behind an accuracy gate

0. **claim_training_lease** (setup): wait until no other retraining or sweep runs (at most
   `FND_TRAINING_LEASE_WAIT_HOURS`); **release_training_lease** (teardown) gives it back
   however the run ends;
1. **snapshot**: the labelled posts ingested up to now (later steps re-read exactly those);
   no labelled posts yet → the run is skipped, not failed;
2. **validate_snapshot**: Great Expectations suite `training_set` (rows, balance, leak groups);
3. **train** (queue `FND_TRAIN_QUEUE`, e.g. a GPU worker; with `FND_TRAIN_BACKEND=vertex`,
   **train_on_vertex**: the same training as a Vertex AI CustomJob running `fnd train` in
   fnd's image, artifact written to the `gs://` model store): posts sharing a picture or a caption
   form leak groups; grouped, stratified k-fold cross-validation estimates the gate metric
   (balanced accuracy by default) for the candidate, a prior and a text baseline, and the
   champion's recipe, all on the same folds; the artifact is then trained on every post;
4. **evaluate**: assembles that evidence; the candidate's artifact is loaded (sha256 checked);
5. **gate**: promote only if the estimate reaches the floor, beats both baselines by the margin,
   is not worse than the champion's recipe beyond the tolerance, and no class recall
   collapses. **route** follows the decision; **promote** / **reject** record it as decided;
6. on promotion, **fnd_score** is triggered to score everything with the new champion.

**Params**: `epochs` (default `FND_TRAIN_EPOCHS`), `preset` (default `FND_MODEL_PRESET`),
`min_accuracy` (floor on the gate metric; empty = `FND_GATE_MIN_ACCURACY`; a value set here is
recorded with your user name),
`force_promote` (promote past a failed gate; your user name is recorded in `forced_by`).
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
    TRAIN_TIMEOUT,
    fnd_database_url,
    fnd_engine,
    fnd_settings,
)
from fnd_airflow.gate_tasks import gate_candidate
from fnd_airflow.training_tasks import (
    claim_training_lease,
    gate_params,
    hold_training_lease,
    release_training_lease,
    snapshot_tasks,
)
from fnd_core import contracts
from fnd_core.model.presets import PRESET_NAMES

SETTINGS = fnd_settings()  # read once at parse time: the schedule, the form's defaults, the queue
TRAIN_BACKEND = SETTINGS.train_backend
if TRAIN_BACKEND not in ("local", "vertex"):
    raise ValueError(f"FND_TRAIN_BACKEND={TRAIN_BACKEND!r}: use local or vertex")


def retrain_schedule():
    """Nightly (FND_RETRAIN_CRON); also on a flagged drift report (asset fnd://drift) when
    FND_DRIFT_TRIGGERS_RETRAIN is set."""
    settings = SETTINGS
    if not settings.drift_triggers_retrain:
        return settings.retrain_cron
    return AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(settings.retrain_cron, timezone="UTC"),
        assets=Asset(DRIFT_ASSET_URI),
    )


@dag(
    dag_id=contracts.RETRAIN_DAG,
    schedule=retrain_schedule(),
    doc_md=__doc__,
    tags=["fnd", "training"],
    max_active_runs=1,
    params={
        "epochs": Param(
            SETTINGS.train_epochs,
            type="integer",
            minimum=1,
            maximum=500,
            title="Epochs",
            description="Most epochs; early stopping may end sooner. Default: FND_TRAIN_EPOCHS.",
        ),
        "preset": Param(
            SETTINGS.model_preset,
            type="string",
            enum=list(PRESET_NAMES),
            title="Backbone preset",
            description="Default: FND_MODEL_PRESET.",
        ),
        **gate_params("the cross-validated gate metric"),
    },
    **COMMON_DAG_KWARGS,
)
def fnd_retrain():
    @task(queue=SETTINGS.train_queue, execution_timeout=TRAIN_TIMEOUT)
    def train(snap: dict, _validated: dict) -> dict:
        from fnd_core.pipeline import retrain

        hold_training_lease()
        context = get_current_context()
        params = context["params"]
        return retrain.train_candidate(
            fnd_engine(),
            fnd_settings(),
            snap,
            preset=params.get("preset"),
            epochs=params["epochs"],
            run_id=context["run_id"],
        )

    @task(execution_timeout=TRAIN_TIMEOUT)
    def train_on_vertex(snap: dict, _validated: dict) -> dict:
        """Train as a Vertex AI CustomJob (fnd_airflow.gcp); the candidate it registered."""
        from fnd_airflow.gcp import train_on_vertex as run_job

        hold_training_lease()
        context = get_current_context()
        params = context["params"]
        return run_job(
            fnd_settings(),
            fnd_engine(),
            snap,
            run_id=context["run_id"],
            epochs=params["epochs"],
            preset=params.get("preset"),
            database_url=fnd_database_url(),
        )

    lease = claim_training_lease()
    snap, validated = snapshot_tasks()
    lease >> snap
    trainer = train_on_vertex if TRAIN_BACKEND == "vertex" else train
    candidate = trainer(snap, validated)
    release_training_lease(lease, gate_candidate(candidate, reason="new champion from fnd_retrain"))


fnd_retrain()
