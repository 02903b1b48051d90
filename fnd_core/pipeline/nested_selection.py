"""The winner's estimate with the choice inside the folds: nested cross-validation over topics.

Retraining estimates every candidate kind on the same topic-disjoint folds and ships the one
:func:`~fnd_core.pipeline.candidates.choose` picks. The winner's own estimate is then
optimistic: of several noisy estimates, the highest is chosen partly for its noise (the
winner's curse). Nested cross-validation measures the whole procedure instead: each outer fold
(the plan's first repeat) re-runs the choice on its training topics alone (inner topic folds,
every kind), and its held-out topics are scored by the kind chosen there. The outer
predictions already exist (each kind's out-of-fold scores on those very folds), so only the
inner choices cost fits: kinds x inner folds per outer fold.

Recorded beside the winner's estimate (``metrics["selection"]["nested"]``), with the naive
figure and their difference (the optimism); the gate reads the winner's estimate as before.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fnd_core.pipeline.candidates import FoldData
    from fnd_core.pipeline.evaluation import CVPlan, CVSummary, Recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NestedEstimate:
    """The choice's own figures: what shipping "the kind ``choose`` picks" scores on new topics."""

    summary: CVSummary  # of the outer predictions, each fold scored by the kind chosen there
    chosen: list[str]  # the kind chosen in each outer fold
    naive: float  # the winner's estimate, choice outside the folds
    seconds: float

    def to_json(self) -> dict[str, Any]:
        figures = self.summary.to_json()
        keep = ("metric", "counted_by", "estimate", "interval", "interval_width",
                "recall_real", "recall_fake", "stories", "topics")  # fmt: skip
        return {k: figures[k] for k in keep if k in figures} | {
            "chosen": self.chosen,
            "naive": self.naive,
            "optimism": round(self.naive - self.summary.estimate, 6),
            "n_outer_folds": len(self.chosen),
            "seconds": self.seconds,
        }


def nested_estimate(
    data: FoldData,
    plan: CVPlan,
    recipe: Recipe,
    oofs: dict[str, list[np.ndarray]],
    *,
    winner: str,
    naive: float,
    metric: str,
) -> NestedEstimate | None:
    """The nested estimate of choosing among ``oofs``' kinds (their out-of-fold P(fake) per
    repeat on ``plan``); None, logged, when an outer fold's training part has too few topics
    to choose in."""
    from fnd_core.pipeline.evaluation import DEFAULT_THRESHOLD, TooFewTopicsError, summarise

    started = time.perf_counter()
    kinds = list(oofs)
    outer = dataclasses.replace(plan, repeats=[plan.repeats[0]])
    tests = outer.repeats[0]
    if len(kinds) == 1:
        chosen = [winner] * len(tests)
    else:
        try:
            chosen = _inner_choices(data, plan, recipe, kinds, metric)
        except TooFewTopicsError as exc:
            log.warning("no nested estimate: an outer fold leaves too few topics (%s)", exc)
            return None
    p = np.zeros(len(data.y))
    for k, (test, pick) in enumerate(zip(tests, chosen, strict=True)):
        p[test] = oofs[pick][0][test]
        log.info("nested choice: outer fold %d of %d chose %s", k + 1, len(tests), pick)
    summary = summarise(data.y, [p], outer, metric, DEFAULT_THRESHOLD, data.stories)
    out = NestedEstimate(summary, chosen, naive, round(time.perf_counter() - started, 1))
    log.info(
        "nested choice: %s %.3f against %.3f naive (chosen per outer fold: %s) in %.1f s",
        metric, summary.estimate, naive, dict(Counter(chosen)), out.seconds,
    )  # fmt: skip
    return out


def _inner_choices(
    data: FoldData, plan: CVPlan, recipe: Recipe, kinds: list[str], metric: str
) -> list[str]:
    """The kind ``choose`` picks on the topic folds of everything but each outer fold's test
    topics (the plan's first repeat). Each kind is estimated on every outer fold's inner folds
    at once (:func:`candidates.cross_validate_parts`: fusion's heads of all of them are one
    stack).

    Raises:
        TooFewTopicsError: an outer fold's training part has under two topics.
    """
    from fnd_core.pipeline import candidates

    parts = inner_parts(data, plan, recipe)
    summaries = {
        kind: candidates.cross_validate_parts(kind, data, parts, recipe, metric=metric)
        for kind in kinds
    }
    return [
        str(candidates.choose({kind: summaries[kind][k][0] for kind in kinds})["winner"])
        for k in range(len(parts))
    ]


def inner_parts(data: FoldData, plan: CVPlan, recipe: Recipe) -> list[tuple[np.ndarray, CVPlan]]:
    """Each outer fold's training rows (the plan's first repeat) with their own topic folds:
    where the nested choice is made.

    Raises:
        TooFewTopicsError: an outer fold's training part has under two topics.
    """
    from fnd_core.pipeline.evaluation import CVPlan

    if plan.units is None:
        raise ValueError("a nested estimate needs the plan's fold units")
    parts = []
    for test in plan.repeats[0]:
        train = np.setdiff1d(np.arange(len(data.y)), test)
        inner = CVPlan.make(
            data.y[train], plan.units[train], n_folds=plan.n_folds, repeats=1,
            seed=recipe.seed, topic_of=None if plan.topic_of is None else plan.topic_of[train],
            train_only=None if plan.scored is None else ~plan.scored[train],
        )  # fmt: skip
        parts.append((train, inner))
    return parts
