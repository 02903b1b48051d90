"""What a training run hands back: scores per split, the decision threshold and the reports.

The end of :func:`~fnd_core.model.training.train`, kept apart from the loops: the pipeline
reads these records (:class:`TrainResult`, :class:`SplitScores`) to register a candidate, and
:mod:`fnd_core.model.plots` draws them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fnd_core.model import metrics
from fnd_core.model.config import ModelConfig
from fnd_core.model.examples import PostExample

if TYPE_CHECKING:
    import torch

    from fnd_core.model.char_ngrams import CharNgramModel, NgramConfig
    from fnd_core.model.feature_encoding import EncodedFeatures
    from fnd_core.model.network import FakeNewsModel


@dataclass
class SplitScores:
    """Labels and predicted P(fake) of one split, kept for plots and the gate."""

    post_ids: list[str]
    y_true: np.ndarray
    p_fake: np.ndarray


@dataclass
class TrainResult:
    """What :func:`~fnd_core.model.training.train` hands back. ``metrics`` is JSON-ready
    (``model_versions.metrics``)."""

    model: FakeNewsModel | CharNgramModel  # the candidate pipeline also ships char n-grams
    config: ModelConfig | NgramConfig
    threshold: float
    metrics: dict[str, Any]  # reports per split (None: empty), cv, kind, calibration, ...
    history: list[dict[str, Any]]
    scores: dict[str, SplitScores]
    finetuned: bool
    device: str
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def head_samples_per_s(self) -> float:
        rates = [h["samples_per_s"] for h in self.history if h["phase"] == "head"]
        return float(np.median(rates)) if rates else 0.0


def score_splits(
    model: FakeNewsModel,
    splits: dict[str, list[PostExample]],
    features: dict[str, EncodedFeatures],
) -> dict[str, SplitScores]:
    """The trained head's P(fake) for every post of every split."""
    from fnd_core.model.features import head_proba

    return {
        name: SplitScores(
            post_ids=[ex.post_id for ex in rows],
            y_true=np.array([ex.label for ex in rows], dtype=int),
            p_fake=head_proba(model, features[name]),
        )
        for name, rows in splits.items()
    }


def decision_threshold(policy: str, val: SplitScores, val_weights: torch.Tensor) -> float:
    """0.5 (``balanced``), or the best weighted balanced accuracy on the val split (``val``)."""
    if policy == "val":
        return metrics.choose_threshold(val.y_true, val.p_fake, weights=val_weights.numpy())
    return 0.5


def split_reports(scores: dict[str, SplitScores], threshold: float) -> dict[str, dict | None]:
    """Classification report per split at ``threshold``; None for an empty split."""
    return {
        name: metrics.classification_report(s.y_true, s.p_fake, threshold)
        if len(s.y_true)
        else None
        for name, s in scores.items()
    }
