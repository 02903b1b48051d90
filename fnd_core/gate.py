"""The accuracy gate: may a candidate replace the champion? A pure, unit-tested comparison.

The champion's figures must come from the *same* test posts as the candidate's (the trainer
re-scores the champion on today's test split), otherwise the comparison means nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class GatePolicy:
    """Thresholds, from settings (FND_GATE_*) or the retrain DAG's Params."""

    min_accuracy: float = 0.8
    tolerance: float = 0.01
    min_class_recall: float = 0.5

    def __post_init__(self) -> None:
        for name in ("min_accuracy", "tolerance", "min_class_recall"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"GatePolicy.{name} must be within [0, 1], got {value}")


@dataclass(frozen=True)
class Scorecard:
    """What the gate looks at: test accuracy and each class's recall on the same posts."""

    accuracy: float
    recall_real: float
    recall_fake: float
    n_test: int


@dataclass(frozen=True)
class GateDecision:
    decision: str  # "promote" or "reject"
    reason: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    forced_by: str | None = None

    @property
    def promote(self) -> bool:
        return self.decision == "promote"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    candidate: Scorecard,
    champion: Scorecard | None,
    policy: GatePolicy,
    *,
    forced_by: str | None = None,
) -> GateDecision:
    """Promote only if every check passes; ``forced_by`` overrides a failure, on the record.

    Checks: accuracy >= floor; accuracy >= champion's accuracy on the same posts - tolerance;
    recall of each class >= floor (a model that calls everything "real" fails here).
    """
    checks = [
        _check("accuracy_floor", candidate.accuracy, ">=", policy.min_accuracy),
        _check("recall_real_floor", candidate.recall_real, ">=", policy.min_class_recall),
        _check("recall_fake_floor", candidate.recall_fake, ">=", policy.min_class_recall),
    ]
    if champion is not None:
        bar = champion.accuracy - policy.tolerance
        checks.append(_check("not_worse_than_champion", candidate.accuracy, ">=", bar))
    failed = [c for c in checks if not c["passed"]]
    if not failed:
        reason = "all checks passed: " + "; ".join(c["text"] for c in checks)
        return GateDecision("promote", reason, checks)
    failures = "; ".join(c["text"] for c in failed)
    if forced_by:
        return GateDecision(
            "promote", f"forced by {forced_by} despite: {failures}", checks, forced_by
        )
    return GateDecision("reject", f"failed: {failures}", checks)


def _check(name: str, value: float, op: str, bound: float) -> dict[str, Any]:
    passed = value >= bound
    verb = "ok" if passed else "below"
    text = f"{name} {value:.4f} {verb} (needs {op} {bound:.4f})"
    return {
        "name": name,
        "value": round(value, 6),
        "bound": round(bound, 6),
        "passed": passed,
        "text": text,
    }
