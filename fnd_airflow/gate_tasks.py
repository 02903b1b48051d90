"""The end of every training DAG: evaluate → gate → promote or reject → rescore.

``fnd_retrain`` and ``fnd_sweep`` both end here, so a candidate is gated the same way whichever
DAG trained it. Call :func:`gate_candidate` inside a DAG definition; the task ids are the
DAG's own (no group), as the UI plugin and the kick-off name them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import chain, get_current_context, task

from fnd_airflow.dag_support import fnd_engine, fnd_settings
from fnd_core import contracts

if TYPE_CHECKING:
    from fnd_core.pipeline.gate import GatePolicy


def gate_candidate(candidate: Any, *, reason: str) -> list[Any]:
    """Wire the gate's tasks after ``candidate`` (the XComArg of a registered candidate);
    ``reason``: why the scoring run a promotion starts was started, as its conf says. Returns
    the run's last tasks (whichever way the gate went), for the lease's teardown to follow."""

    @task
    def evaluate(candidate: Any) -> dict:
        from fnd_core.pipeline import retrain

        return retrain.evaluate(fnd_engine(), fnd_settings(), candidate["version"])

    @task
    def gate(evaluation: Any) -> dict:
        """The gate's decision (a pure function of the evidence and the policy), passed on."""
        from fnd_core.pipeline import retrain

        policy, forced_by, _ = _policy()
        decision = retrain.gate(evaluation, policy, forced_by=forced_by)
        print(f"gate: {decision.decision} — {decision.reason}")
        return decision.to_json()

    @task.branch
    def route(decision: Any) -> str:
        return "promote" if decision["decision"] == "promote" else "reject"

    @task
    def promote(evaluation: Any, decision: Any) -> dict:
        return _record(evaluation, decision)

    @task
    def reject(evaluation: Any, decision: Any) -> dict:
        return _record(evaluation, decision)

    trigger_rescoring = TriggerDagRunOperator(
        task_id=contracts.RESCORING_TASK,
        trigger_dag_id=contracts.SCORE_DAG,
        conf={"reason": reason},
        wait_for_completion=False,
    )
    evaluation = evaluate(candidate)
    decision = gate(evaluation)
    promoted, rejected = promote(evaluation, decision), reject(evaluation, decision)
    chain(route(decision), [promoted, rejected])
    chain(promoted, trigger_rescoring)
    return [rejected, trigger_rescoring]


def _policy() -> tuple[GatePolicy, str | None, str | None]:
    """This run's gate policy (Params override settings), who forced, who set the floor."""
    from fnd_core.pipeline import retrain

    context = get_current_context()
    params = context["params"]
    user = getattr(context["dag_run"], "triggering_user_name", None) or "unknown user"
    forced_by = user if params.get("force_promote") else None
    floor_set_by = user if params.get("min_accuracy") is not None else None
    policy = retrain.policy_from(fnd_settings(), min_accuracy=params.get("min_accuracy"))
    return policy, forced_by, floor_set_by


def _record(evaluation: dict, decision: dict) -> dict:
    """Promote or reject in the registry, as the gate task decided (not decided again)."""
    from fnd_core.pipeline import retrain
    from fnd_core.pipeline.gate import GateDecision

    policy, _, floor_set_by = _policy()
    return retrain.record_decision(
        fnd_engine(),
        evaluation,
        GateDecision.from_json(decision),
        policy,
        floor_set_by=floor_set_by,
    )
