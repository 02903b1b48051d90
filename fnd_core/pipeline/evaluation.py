"""Topic-disjoint cross-validation of the candidates, and the figures the gate reads.

What the gate decides on. Every fold holds out whole *topics* (news events; given by the
landing rows or discovered, :mod:`fnd_core.model.splits.topics`), so a fold's figure says how a
model does on events it has never seen, not on reposts of stories it trained on, nor on more posts
of an event it knows. With frozen encoders a fold only refits a head on cached features.

Measured on the MediaEval dev tweets: folds that kept stories whole but let events straddle
recorded 0.875 for a model that then got 0.357 on two new events; leave-one-event-out gave it
0.511. The README's "Verdicts on new events" holds the figures of the topic-disjoint estimate.

The estimate is pooled out-of-fold balanced accuracy counted by post (the figure a user's
hold-out measures; each story counting once is recorded beside it), mean over repeats, with a
90 % interval from a class-stratified bootstrap over the fold units (:func:`topic_interval`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from fnd_core.model import metrics
from fnd_core.model.splits.grouping import group_weights, grouped_folds

if TYPE_CHECKING:
    from fnd_core.model.examples import PostExample
    from fnd_core.model.train.recipe import TrainOptions

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5  # class-balanced training: 0.5 is the balanced-prior decision
COUNTED_BY = "posts"  # what the estimate counts; the other counting is kept beside it
INTERVAL_LEVEL = 0.90
BOOTSTRAP_DRAWS = 1000


class TooFewTopicsError(ValueError):
    """Fewer than two fold units: no estimate about new topics can be made."""


def macro_f1(
    y_true: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray | None = None
) -> float:
    from sklearn.metrics import f1_score

    return float(
        f1_score(y_true, y_pred, average="macro", zero_division=0, sample_weight=sample_weight)
    )


GATE_METRICS: dict[str, Callable[..., float]] = {
    "balanced_accuracy": metrics.balanced_accuracy,
    "macro_f1": macro_f1,
}


@dataclass(frozen=True)
class Recipe:
    """How a head is trained: what a fold, the final model and the champion comparison share."""

    epochs: int
    options: TrainOptions
    seed: int = 0


@dataclass(frozen=True)
class CVPlan:
    """The folds of one snapshot: ``repeats`` x ``n_folds`` test index arrays, and the fold
    unit of every post (whole topics; see :mod:`fnd_core.model.splits.topics`)."""

    n_folds: int
    repeats: list[list[np.ndarray]]
    units: np.ndarray | None = None
    topics: dict[str, Any] = field(default_factory=dict)  # TopicPlan.summary()
    topic_of: np.ndarray | None = None  # topic per post (before the largest-class correction)
    scored: np.ndarray | None = None  # posts some fold holds out (None: every post)

    @classmethod
    def make(
        cls,
        labels: np.ndarray,
        units: np.ndarray,
        *,
        n_folds: int,
        repeats: int,
        seed: int = 0,
        topics: dict[str, Any] | None = None,
        topic_of: np.ndarray | None = None,
        train_only: np.ndarray | None = None,
    ) -> CVPlan:
        """Folds of whole ``units``; fewer units than ``n_folds``: as many folds as units.
        Posts marked ``train_only`` are in every fold's training part and never held out.

        Raises:
            TooFewTopicsError: under two units (nothing can be held out and trained on).
        """
        units = np.asarray(units)
        scored = np.ones(len(units), dtype=bool) if train_only is None else ~train_only
        rows = np.flatnonzero(scored)
        n_units = int(np.unique(units[rows]).size)
        if n_units < 2:
            raise TooFewTopicsError(
                f"the {len(labels)} labelled posts form {n_units} topic(s): an estimate about new "
                "topics needs at least two; land posts of more events (or give them an `event` "
                "field) before retraining"
            )
        k = min(n_folds, n_units)
        if k < n_folds:
            log.warning("%d fold units only: %d folds instead of %d", n_units, k, n_folds)
        labels = np.asarray(labels)
        runs = [
            [rows[f] for f in grouped_folds(labels[rows], units[rows], n_folds=k, seed=seed + r)]
            for r in range(repeats)
        ]
        return cls(
            n_folds=k, repeats=runs, units=units, topics=dict(topics or {}), topic_of=topic_of,
            scored=None if train_only is None else scored,
        )  # fmt: skip


def story_weights(groups: np.ndarray) -> np.ndarray:
    """Per-post weights under which each leak group (a story and its reposts) counts once."""
    return group_weights(groups, np.zeros(len(groups), dtype=int), balance_classes=False)


@dataclass(frozen=True)
class Counting:
    """The pooled out-of-fold figures under one way of counting posts (mean over repeats)."""

    estimates: dict[str, float]  # every gate metric
    recall_real: float
    recall_fake: float

    def to_json(self) -> dict[str, Any]:
        return {"estimates": self.estimates, "recall_real": self.recall_real,
                "recall_fake": self.recall_fake}  # fmt: skip


@dataclass(frozen=True)
class CVSummary:
    """One candidate kind's cross-validated figures: what choosing a kind and the gate read.

    The registry stores :meth:`to_json` (its keys are what the SQL views and the UI read);
    ``counted_by`` names the counting the estimate uses, ``others`` holds the rest.
    """

    metric: str
    counted_by: str
    main: Counting
    others: dict[str, Counting]
    interval: tuple[float, float]
    pooled_per_repeat: list[float]
    fold_values: list[float]
    n: int
    n_stories: int
    n_units: int
    topic_plan: dict[str, Any]
    effective_stories_by_post: float
    n_folds: int
    n_repeats: int
    split_policy: str
    threshold: float
    report: dict[str, Any] | None = None  # the classification report of the first repeat
    kind: str | None = None
    seconds: float | None = None

    @property
    def estimate(self) -> float:
        return self.main.estimates[self.metric]

    def to_json(self, *, report: bool = False) -> dict[str, Any]:
        """The record's JSON, as the registry keeps it (the report only when asked)."""
        low, high = self.interval
        out: dict[str, Any] = {
            "metric": self.metric,
            "counted_by": self.counted_by,
            "estimate": self.estimate,
            "interval": [low, high],
            "interval_level": INTERVAL_LEVEL,
            "interval_width": round(high - low, 6),
            "estimates": self.main.estimates,
            "pooled_per_repeat": self.pooled_per_repeat,
            "fold_mean": round(float(np.mean(self.fold_values)), 6),
            "fold_std": round(float(np.std(self.fold_values)), 6),
            "fold_values": self.fold_values,
            "recall_real": self.main.recall_real,
            "recall_fake": self.main.recall_fake,
            **{unit: counting.to_json() for unit, counting in self.others.items()},
            "n": self.n,
            "n_stories": self.n_stories,
            "n_units": self.n_units,
            "topic_plan": self.topic_plan,
            "effective_stories_by_post": self.effective_stories_by_post,
            "n_folds": self.n_folds,
            "n_repeats": self.n_repeats,
            "split_policy": self.split_policy,
            "threshold": self.threshold,
        }
        if self.kind is not None:
            out["kind"] = self.kind
        if self.seconds is not None:
            out["seconds"] = self.seconds
        if report:
            out["report"] = self.report
        return out

    def brief(self) -> str:
        return brief(self.to_json())


def summarise(
    y: np.ndarray,
    oof: list[np.ndarray],
    plan: CVPlan,
    metric: str,
    threshold: float,
    groups: np.ndarray,
) -> CVSummary:
    """The estimate, its interval and spread, and the pooled out-of-fold figures.

    ``oof[r]``: the out-of-fold P(fake) of every post in repeat ``r``. The estimate the gate
    uses is the mean over repeats of the pooled out-of-fold metric (steadier than the mean of
    folds when few topics hold one class), counted as :data:`COUNTED_BY` says; the other
    countings are kept beside it: ``posts``, ``stories`` (every post weighs 1 / the posts of its
    story) and ``topics`` (each topic once within its class; with topic folds only).
    """
    if plan.scored is not None:  # posts always trained on have no out-of-fold figure
        y, oof, plan, groups = _scored_only(y, oof, plan, groups)
    weights = _countings(y, groups, plan)
    values: dict[str, dict[str, list[float]]] = {u: {n: [] for n in GATE_METRICS} for u in weights}
    recalls: dict[str, list[list[float]]] = {u: [] for u in weights}
    fold_values = []
    main_w = weights[COUNTED_BY]
    for p, folds in zip(oof, plan.repeats, strict=True):
        pred = metrics.predict_labels(p, threshold)
        for unit, w in weights.items():
            for name, score in GATE_METRICS.items():
                values[unit][name].append(score(y, pred, w))
            recall = metrics.per_class_recall(y, pred, w)
            recalls[unit].append([recall["real"] or 0.0, recall["fake"] or 0.0])
        fold_values += [
            GATE_METRICS[metric](y[rows], pred[rows], None if main_w is None else main_w[rows])
            for rows in folds
        ]

    def counting(unit: str) -> Counting:
        recall = np.mean(recalls[unit], axis=0)
        return Counting(
            estimates={name: round(float(np.mean(v)), 6) for name, v in values[unit].items()},
            recall_real=round(float(recall[0]), 6),
            recall_fake=round(float(recall[1]), 6),
        )

    units = plan.units if plan.units is not None else groups
    low, high = topic_interval(y, oof, units, threshold, main_w)
    return CVSummary(
        metric=metric,
        counted_by=COUNTED_BY,
        main=counting(COUNTED_BY),
        others={unit: counting(unit) for unit in weights if unit != COUNTED_BY},
        interval=(low, high),
        pooled_per_repeat=[round(v, 6) for v in values[COUNTED_BY][metric]],
        fold_values=[round(v, 6) for v in fold_values],
        n=int(len(y)),
        n_stories=int(np.unique(groups).size),
        n_units=int(np.unique(units).size),
        topic_plan=plan.topics,
        effective_stories_by_post=round(effective_stories(groups), 1),
        n_folds=plan.n_folds,
        n_repeats=len(plan.repeats),
        split_policy="topic_disjoint" if plan.units is not None else "story_disjoint",
        threshold=threshold,
        report=metrics.classification_report(y, oof[0], threshold),
    )


def _countings(y: np.ndarray, groups: np.ndarray, plan: CVPlan) -> dict[str, np.ndarray | None]:
    """Per-post weights of each way of counting: posts, stories, and topics (with topic folds)."""
    weights: dict[str, np.ndarray | None] = {"posts": None, "stories": story_weights(groups)}
    if plan.topic_of is not None:
        weights["topics"] = topic_weights(plan.topic_of, y)
    return weights


def _scored_only(
    y: np.ndarray, oof: list[np.ndarray], plan: CVPlan, groups: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray], CVPlan, np.ndarray]:
    """The posts some fold held out, with the plan's indices renumbered to them."""
    if plan.scored is None:
        raise ValueError("_scored_only needs a plan that scores only some posts")
    keep = np.flatnonzero(plan.scored)
    position = np.full(len(y), -1)
    position[keep] = np.arange(len(keep))
    plan = replace(
        plan,
        repeats=[[position[rows] for rows in folds] for folds in plan.repeats],
        units=None if plan.units is None else plan.units[keep],
        topic_of=None if plan.topic_of is None else plan.topic_of[keep],
        scored=None,
    )
    return y[keep], [p[keep] for p in oof], plan, groups[keep]


def topic_weights(topics: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-post weights under which each topic counts once within each class."""
    cells = np.unique(np.asarray(topics).astype(np.int64) * 2 + np.asarray(y), return_inverse=True)[
        1
    ]
    return 1.0 / np.bincount(cells)[cells]


def topic_interval(
    y: np.ndarray,
    oof: list[np.ndarray],
    units: np.ndarray,
    threshold: float,
    weights: np.ndarray | None = None,
    *,
    draws: int = BOOTSTRAP_DRAWS,
    level: float = INTERVAL_LEVEL,
    seed: int = 0,
) -> tuple[float, float]:
    """A ``level`` interval of pooled balanced accuracy: a bootstrap over fold units
    (:func:`bootstrap_balanced_accuracy`)."""
    ba = bootstrap_balanced_accuracy(y, oof, units, threshold, weights, draws=draws, seed=seed)
    if ba is None:
        return (float("nan"), float("nan"))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(ba, [tail, 100 - tail])
    return round(float(low), 6), round(float(high), 6)


def bootstrap_balanced_accuracy(
    y: np.ndarray,
    oof: list[np.ndarray],
    units: np.ndarray,
    threshold: float,
    weights: np.ndarray | None = None,
    *,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
) -> np.ndarray | None:
    """Pooled balanced accuracy over ``draws`` bootstrap resamples of the fold units; None
    when a class is missing.

    Class-stratified: the units holding real posts are resampled to give the real recall, the
    units holding fake posts (separately) the fake recall, so every draw has both classes. The
    out-of-fold predictions are averaged over repeats first (each repeat is the same model
    class on other folds, not new evidence). The resamples depend only on ``y``, ``units`` and
    ``seed``: two models' draws with the same ones are paired.
    """
    y = np.asarray(y, dtype=int)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    correct = np.mean([metrics.predict_labels(p, threshold) == y for p in oof], axis=0)
    rng = np.random.default_rng(seed)
    recall_draws = []
    for label in (0, 1):
        rows = y == label
        if not rows.any():
            return None
        ids, unit_of = np.unique(units[rows], return_inverse=True)
        hit = np.bincount(unit_of, weights=(w * correct)[rows], minlength=len(ids))
        total = np.bincount(unit_of, weights=w[rows], minlength=len(ids))
        picks = rng.integers(0, len(ids), size=(draws, len(ids)))
        recall_draws.append(hit[picks].sum(axis=1) / np.maximum(total[picks].sum(axis=1), 1e-12))
    return (recall_draws[0] + recall_draws[1]) / 2


def effective_stories(groups: np.ndarray) -> float:
    """How many equal stories a post-counted figure rests on: n² / Σ (posts per group)²."""
    _, sizes = np.unique(groups, return_counts=True)
    return float(sizes.sum() ** 2 / np.sum(sizes.astype(float) ** 2))


def brief(summary: Mapping[str, Any] | None) -> str:
    """``0.803 [0.71, 0.86] (5x3 topic folds; by story 0.78)`` for logs and reasons, from a
    :meth:`CVSummary.to_json` (the registry's record)."""
    if not summary:
        return "n/a"
    other = "stories" if summary.get("counted_by") == "posts" else "posts"
    other_value = (summary.get(other) or {}).get("estimates", {}).get(summary["metric"])
    low, high = summary.get("interval") or (None, None)
    interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    folds = "topic" if summary.get("split_policy") == "topic_disjoint" else "grouped"
    return (
        f"{summary['estimate']:.3f}{interval} ({summary['n_folds']}x{summary['n_repeats']} "
        f"{folds} folds"
        + (
            f"; by {other.removesuffix('s').replace('storie', 'story')} {other_value:.3f})"
            if other_value is not None
            else ")"
        )
    )


def labels_of(examples: Sequence[PostExample]) -> np.ndarray:
    """The labels as an int array; an unlabelled post among them is an error."""
    from fnd_core.model.train import recipe

    return np.array(recipe.labels_of(examples), dtype=int)
