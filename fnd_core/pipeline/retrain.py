"""Retraining, step by step, as the ``fnd_retrain`` DAG and ``fnd train`` run it.

snapshot → validate the snapshot (GX ``training_set``) → train a candidate → evaluate it and
the champion on the *same* test posts → gate → promote or reject. Each step takes and returns
small JSON (ids, timestamps, numbers), so each can be its own Airflow task on any worker.

A snapshot is "the labelled posts ingested up to ``as_of``": later steps re-read exactly
those posts from Postgres instead of passing data between tasks.

Every step is reachable from here (the DAG and the CLI call ``retrain.<step>``); the first
ones live beside it: the snapshot in :mod:`fnd_core.pipeline.training_snapshot`, the
candidate's cross-validation and training in :mod:`fnd_core.pipeline.candidate_training`.
This module holds the end of the recipe: the evidence, the gate and the registry's decision.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fnd_core.pipeline import registry, training_lease
from fnd_core.pipeline.candidate_training import (
    DEFAULT_EPOCHS,
    candidate_version,
    train_candidate,
    train_options,
)
from fnd_core.pipeline.gate import GateDecision, GatePolicy, Scorecard, decide
from fnd_core.pipeline.training_snapshot import (
    SnapshotInvalidError,
    load_examples,
    snapshot,
    validate_snapshot,
)
from fnd_core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "DEFAULT_EPOCHS",
    "NO_LABELLED_POSTS",
    "SnapshotInvalidError",
    "candidate_version",
    "evaluate",
    "gate",
    "load_examples",
    "policy_from",
    "record_decision",
    "run",
    "snapshot",
    "train_candidate",
    "train_options",
    "validate_snapshot",
]

log = logging.getLogger(__name__)

NO_LABELLED_POSTS = "no labelled posts yet: nothing to train on"


def evaluate(engine: Engine, settings: Settings, version: str) -> dict[str, Any]:
    """The evidence the gate decides on: the candidate's cross-validated figures, the
    baselines' and the champion recipe's on the same folds; the candidate's artifact is
    loaded (sha256 verified) so a model that cannot be served is never promoted, and a
    champion that cannot be loaded is recorded rather than blocking retraining."""
    from fnd_core.model.artifacts import load_model

    candidate = registry.get_version(engine, version)
    load_model(*candidate.artifact())
    m = candidate.metrics
    if "cv" not in m:
        raise ValueError(f"{version} has no cross-validated figures: it predates grouped folds")
    champion = m.get("champion_recipe") or {}
    current = registry.current_champion(engine)
    champion_state = None
    if current is not None:
        try:
            load_model(*current.artifact())
            champion_state = "loadable"
        except Exception as exc:  # noqa: BLE001 — any failure means it cannot serve
            champion_state = f"cannot be loaded: {exc}"
            log.warning("champion %s %s", current.version, champion_state)
    result = {
        "version": version,
        "metric": m["cv"]["metric"],
        "candidate": m["cv"],
        "baselines": m.get("baselines") or {},
        "champion": champion.get("cv")
        and {
            "version": champion.get("version"),
            **champion["cv"],
            "same_recipe": champion.get("same_recipe"),
            "paired_se": champion.get("paired_se"),
        },
        "champion_note": champion.get("note"),
        "champion_state": champion_state,
        "leak": m.get("leak"),
        "kind": m.get("kind", "fusion"),
        "selection": m.get("selection"),
        "topics": m.get("topics"),
    }
    log.info("evaluation of %s: %s", version, {k: result[k] for k in ("metric", "kind", "leak")})
    return result


def gate(
    evaluation: dict[str, Any], policy: GatePolicy, *, forced_by: str | None = None
) -> GateDecision:
    """Apply the gate to an evaluation (pure decision) for the policy's metric.

    The gate reads the nested estimate where there is one (the choice among kinds, or a
    sweep's among recipes, made inside the folds); the champion's recipe is compared with the
    winner's own estimate on the same folds. A champion recorded before recipes were compared
    (no ``same_recipe``) keeps the tolerance rule."""
    metric = policy.metric
    champion = evaluation.get("champion") or {}
    naive = Scorecard.from_summary(evaluation["candidate"], metric)
    nested = (evaluation.get("selection") or {}).get("nested")
    card = naive
    if isinstance(nested, dict) and nested.get("metric") == metric:
        card = Scorecard.nested(nested, naive)
    decision = decide(
        card,
        policy,
        baselines={
            name: Scorecard.from_summary(summary, metric)
            for name, summary in (evaluation.get("baselines") or {}).items()
        },
        champion=Scorecard.from_summary(champion, metric) if champion else None,
        forced_by=forced_by,
        same_folds=naive,
        new_recipe=champion.get("same_recipe") is False,
        paired_se=champion.get("paired_se"),
    )
    log.info("gate for %s: %s", evaluation["version"], decision.reason)
    return decision


def record_decision(
    engine: Engine,
    evaluation: dict[str, Any],
    decision: GateDecision,
    policy: GatePolicy,
    *,
    floor_set_by: str | None = None,
) -> dict[str, Any]:
    """Promote or reject in the registry, keeping the decision, thresholds and comparison.

    Idempotent: a retry after the version was already decided returns the recorded outcome.
    ``floor_set_by``: who changed the floor for this run (a trigger-form override), audited.
    """
    version = evaluation["version"]
    current = registry.get_version(engine, version)
    if current.status != "candidate" and current.gate:
        return {
            "version": version,
            "decision": current.gate.get("decision"),
            "reason": current.gate.get("reason"),
            "already_recorded": True,
        }
    payload = {
        **decision.to_json(),
        "policy": policy.__dict__,
        "floor_set_by": floor_set_by,
        "evaluation": evaluation,
        "decided_at": datetime.now(UTC).isoformat(),
    }
    if decision.promote:
        retired = registry.promote(engine, version, payload)
        return {
            "version": version,
            "decision": "promote",
            "retired": retired,
            "reason": decision.reason,
        }
    registry.reject(engine, version, payload)
    return {"version": version, "decision": "reject", "reason": decision.reason}


def policy_from(settings: Settings, *, min_accuracy: float | None = None) -> GatePolicy:
    """The gate policy of the settings, with an optional floor override (a DAG Param)."""
    return GatePolicy(
        min_accuracy=settings.gate_min_accuracy if min_accuracy is None else min_accuracy,
        tolerance=settings.gate_tolerance,
        min_class_recall=settings.gate_min_class_recall,
        baseline_margin=settings.gate_baseline_margin,
        metric=settings.gate_metric,
        new_recipe_margin=settings.gate_new_recipe_margin,
    )


def run(
    engine: Engine,
    settings: Settings,
    *,
    min_accuracy: float | None = None,
    forced_by: str | None = None,
    floor_set_by: str | None = None,
    run_id: str = "cli",
    **train_kwargs: Any,
) -> dict[str, Any]:
    """The whole recipe in one process (``fnd train``, tests, benchmarks): snapshot →
    validate → train → evaluate → gate → promote or reject. The ``fnd_retrain`` DAG runs the
    same steps as tasks. No labelled posts: ``{"skipped": reason}``, nothing trained.

    Holds the training lease throughout: another retraining or sweep running raises
    :class:`~fnd_core.pipeline.training_lease.LeaseHeldError` before anything is read."""
    holder = training_lease.cli_holder("train")
    with training_lease.held(engine, holder, settings.training_lease_ttl):
        snap = snapshot(engine, settings.train_max_posts)
        if snap["n_labelled"] == 0:
            return {"skipped": NO_LABELLED_POSTS}
        validate_snapshot(engine, settings, snap, run_id=run_id)
        candidate = train_candidate(engine, settings, snap, run_id=run_id, **train_kwargs)
        evaluation = evaluate(engine, settings, candidate["version"])
        policy = policy_from(settings, min_accuracy=min_accuracy)
        decision = gate(evaluation, policy, forced_by=forced_by)
        outcome = record_decision(engine, evaluation, decision, policy, floor_set_by=floor_set_by)
        return {"candidate": candidate, "evaluation": evaluation, **outcome}
