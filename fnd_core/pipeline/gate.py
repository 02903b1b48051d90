"""The accuracy gate: may a candidate replace the champion? A pure, unit-tested comparison.

The gate decides on a *cross-validated estimate* of the gate metric (balanced accuracy by
default) over grouped folds: every fold's posts share no picture and no caption with the
posts its model trained on, so the estimate speaks of new stories, not reposts; and each story
counts once in it (:func:`fnd_core.pipeline.evaluation.summarise`). Everything
the candidate is compared with was measured on the same folds in the same run: the prior
(majority) classifier, a cheap text baseline, and the champion's recipe retrained per fold
(the champion itself has trained on most of today's snapshot, so scoring it there would leak).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fnd_core.settings import GATE_METRICS as GATE_METRIC_NAMES
from fnd_core.settings import default


@dataclass(frozen=True)
class GatePolicy:
    """Thresholds, from settings (FND_GATE_*) or the retrain DAG's Params."""

    min_accuracy: float = default("gate_min_accuracy")  # floor on the gate metric
    tolerance: float = default("gate_tolerance")
    min_class_recall: float = default("gate_min_class_recall")
    baseline_margin: float = default("gate_baseline_margin")
    metric: str = default("gate_metric")
    new_recipe_margin: float = default("gate_new_recipe_margin")

    def __post_init__(self) -> None:
        names = ("min_accuracy", "tolerance", "min_class_recall", "baseline_margin",
                 "new_recipe_margin")  # fmt: skip
        for name in names:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"GatePolicy.{name} must be within [0, 1], got {value}")
        if self.metric not in GATE_METRIC_NAMES:
            raise ValueError(
                f"GatePolicy.metric must be one of {', '.join(GATE_METRIC_NAMES)}, "
                f"got {self.metric!r}"
            )


@dataclass(frozen=True)
class Scorecard:
    """One recipe's cross-validated figures on the snapshot's grouped folds."""

    estimate: float  # the gate metric, pooled out-of-fold, mean over repeats
    recall_real: float
    recall_fake: float
    n: int
    fold_std: float = 0.0

    @classmethod
    def from_summary(cls, summary: dict[str, Any], metric: str) -> Scorecard:
        """From :func:`fnd_core.pipeline.evaluation.summarise`'s JSON, for the gate ``metric``."""
        return cls(
            estimate=summary["estimates"][metric],
            recall_real=summary["recall_real"] or 0.0,
            recall_fake=summary["recall_fake"] or 0.0,
            n=summary["n"],
            fold_std=summary.get("fold_std", 0.0),
        )

    @classmethod
    def nested(cls, nested: dict[str, Any], naive: Scorecard) -> Scorecard:
        """The figures of the choice made inside the folds
        (:mod:`fnd_core.pipeline.nested_selection`, or a sweep's), over the naive card."""
        return cls(
            estimate=nested["estimate"],
            recall_real=nested.get("recall_real") or 0.0,
            recall_fake=nested.get("recall_fake") or 0.0,
            n=naive.n,
            fold_std=naive.fold_std,
        )


@dataclass(frozen=True)
class GateDecision:
    decision: str  # "promote" or "reject"
    reason: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    forced_by: str | None = None
    metric: str = "balanced_accuracy"
    estimate: float | None = None

    @property
    def promote(self) -> bool:
        return self.decision == "promote"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GateDecision:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def decide(
    candidate: Scorecard,
    policy: GatePolicy,
    *,
    baselines: dict[str, Scorecard] | None = None,
    champion: Scorecard | None = None,
    forced_by: str | None = None,
    same_folds: Scorecard | None = None,
    new_recipe: bool = False,
    paired_se: float | None = None,
) -> GateDecision:
    """Promote only if every check passes; ``forced_by`` overrides a failure, on the record.

    ``candidate``: the figures the gate reads: the nested ones when the recipe was chosen
    among several, since the winner's own estimate is optimistic by the choice.
    ``same_folds``: the winner's own estimate on the folds the champion's recipe was estimated
    on (default ``candidate``): what is compared with the champion, like with like.

    Checks: estimate >= floor; estimate >= each baseline's + margin (``prior``, ``text_lr``);
    each class's recall >= floor (a model that calls everything "real" fails here); against
    the champion's recipe on the same folds: the same recipe on new data may be up to
    ``tolerance`` worse; a ``new_recipe`` must beat it by ``new_recipe_margin``, or by the
    paired fold-wise standard error ``paired_se`` when larger.
    """
    m = policy.metric
    checks = [
        _check(f"{m}_floor", candidate.estimate, policy.min_accuracy),
        _check("recall_real_floor", candidate.recall_real, policy.min_class_recall),
        _check("recall_fake_floor", candidate.recall_fake, policy.min_class_recall),
    ]
    for name, card in sorted((baselines or {}).items()):
        bar = min(1.0, card.estimate + policy.baseline_margin)
        checks.append(_check(f"beats_{name}", candidate.estimate, bar))
    if champion is not None:
        mine = (same_folds or candidate).estimate
        if new_recipe:
            margin = max(policy.new_recipe_margin, paired_se or 0.0)
            bar = min(1.0, champion.estimate + margin)
            checks.append(_check("new_recipe_beats_champion_recipe", mine, bar))
        else:
            bar = champion.estimate - policy.tolerance
            checks.append(_check("not_worse_than_champion", mine, bar))
    failed = [c for c in checks if not c["passed"]]

    def decision(verdict: str, reason: str, forced_by: str | None = None) -> GateDecision:
        return GateDecision(
            verdict, reason, checks, forced_by=forced_by, metric=m, estimate=candidate.estimate
        )

    if not failed:
        reason = "all checks passed: " + "; ".join(c["text"] for c in checks)
        return decision("promote", reason)
    failures = "; ".join(c["text"] for c in failed)
    if forced_by:
        return decision("promote", f"forced by {forced_by} despite: {failures}", forced_by)
    return decision("reject", f"failed: {failures}")


def _check(name: str, value: float, bound: float) -> dict[str, Any]:
    passed = value >= bound
    verb = "ok" if passed else "below"
    text = f"{name} {value:.4f} {verb} (needs >= {bound:.4f})"
    return {
        "name": name,
        "value": round(value, 6),
        "bound": round(bound, 6),
        "passed": passed,
        "text": text,
    }
