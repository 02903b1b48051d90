"""
### fnd_retrain — nightly retraining behind an accuracy gate

1. **snapshot**: the labelled posts ingested up to now (later steps re-read exactly those);
2. **validate_snapshot**: Great Expectations suite `training_set` (rows, balance, splits);
3. **train**: the multimodal model on the train split, early-stopped on val (runs on the
   queue `FND_TRAIN_QUEUE`, e.g. a GPU worker); artifact + candidate row in `fnd.model_versions`;
4. **evaluate**: the candidate *and the champion* on the same held-out test posts;
5. **gate**: promote only if test accuracy ≥ the floor, not worse than the champion beyond the
   tolerance, and no class recall collapses — else reject. Every decision is recorded;
6. on promotion, **fnd_score** is triggered to score everything with the new champion.

**Params**: `epochs`, `preset` (empty = `FND_MODEL_PRESET`), `min_accuracy` (empty =
`FND_GATE_MIN_ACCURACY`), `force_promote` (promote past a failed gate; the triggering user is
recorded in `forced_by`).
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, chain, dag, get_current_context, task

from fnd_support import COMMON_DAG_KWARGS, fnd_engine, fnd_settings


@dag(
    dag_id="fnd_retrain",
    schedule=fnd_settings().retrain_cron,
    doc_md=__doc__,
    tags=["fnd", "training"],
    max_active_runs=1,
    params={
        "epochs": Param(40, type="integer", minimum=1, maximum=500, title="Epochs"),
        "preset": Param(
            None,
            type=["null", "string"],
            enum=[None, "offline", "seed", "tiny"],
            title="Backbone preset",
            description="Empty: FND_MODEL_PRESET.",
        ),
        "min_accuracy": Param(
            None,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            title="Gate: minimum test accuracy",
            description="Empty: FND_GATE_MIN_ACCURACY.",
        ),
        "force_promote": Param(
            False,
            type="boolean",
            title="Force promotion",
            description="Promote even if the gate rejects. Audited: your user name is recorded.",
        ),
    },
    **COMMON_DAG_KWARGS,
)
def fnd_retrain():
    @task
    def snapshot() -> dict:
        """Freeze the labelled posts; skip the whole run (not fail) when there are none yet."""
        from airflow.sdk.exceptions import AirflowSkipException

        from fnd_core import retrain

        snap = retrain.snapshot(fnd_engine())
        if snap["n_labelled"] == 0:
            raise AirflowSkipException("no labelled posts yet: nothing to train on")
        return snap

    @task(retries=0)
    def validate_snapshot(snap: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from fnd_core import retrain

        context = get_current_context()
        try:
            return retrain.validate_snapshot(
                fnd_engine(), fnd_settings(), snap, run_id=context["run_id"]
            )
        except retrain.SnapshotInvalidError as exc:
            raise AirflowFailException(str(exc)) from exc

    @task(queue=fnd_settings().train_queue)
    def train(snap: dict, _validated: dict) -> dict:
        from fnd_core import retrain

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

    @task
    def evaluate(candidate: dict) -> dict:
        from fnd_core import retrain

        return retrain.evaluate(fnd_engine(), fnd_settings(), candidate["version"])

    @task.branch
    def gate(evaluation: dict) -> str:
        """Branch on the gate's decision (a pure function of the evaluation and the policy)."""
        decision, _ = _decide(evaluation)
        print(f"gate: {decision.decision} — {decision.reason}")
        return "promote" if decision.promote else "reject"

    @task
    def promote(evaluation: dict) -> dict:
        return _record(evaluation)

    @task
    def reject(evaluation: dict) -> dict:
        return _record(evaluation)

    trigger_rescoring = TriggerDagRunOperator(
        task_id="trigger_rescoring",
        trigger_dag_id="fnd_score",
        conf={"reason": "new champion from fnd_retrain"},
        wait_for_completion=False,
    )

    snap = snapshot()
    candidate = train(snap, validate_snapshot(snap))
    evaluation = evaluate(candidate)
    promoted, rejected = promote(evaluation), reject(evaluation)
    chain(gate(evaluation), [promoted, rejected])
    chain(promoted, trigger_rescoring)


def _decide(evaluation: dict):
    """The gate's decision and policy for this run (Params override settings)."""
    from fnd_core import retrain

    context = get_current_context()
    params = context["params"]
    forced_by = None
    if params.get("force_promote"):
        forced_by = getattr(context["dag_run"], "triggering_user_name", None) or "unknown user"
    policy = retrain.policy_from(fnd_settings(), min_accuracy=params.get("min_accuracy"))
    return retrain.gate(evaluation, policy, forced_by=forced_by), policy


def _record(evaluation: dict) -> dict:
    """Promote or reject in the registry, with the decision and its reasons."""
    from fnd_core import retrain

    decision, policy = _decide(evaluation)
    return retrain.record_decision(fnd_engine(), evaluation, decision, policy)


fnd_retrain()
