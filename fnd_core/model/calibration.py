"""Calibrated verdicts, and the fake share of incoming posts estimated from them.

Every candidate is trained with both classes weighing the same, so 0.5 is its balanced-prior
decision; but its probabilities on posts of *new* topics are over- or under-confident. A
one-parameter Platt scaling (a temperature: ``p' = sigmoid(slope * logit(p))``, slope > 0),
fitted on the gate's out-of-fold predictions with class-balanced weights, makes ``p_fake`` a
probability under a balanced prior. The intercept is held at 0 on purpose: it keeps the
decision at 0.5 exactly the one the gate's estimate measured (a fitted intercept would move
every verdict by a threshold nobody estimated). An out-of-fold ranking worse than chance (ROC
AUC < 0.5) is refused: no monotone map can fix it, and the refusal is recorded.

With calibrated balanced posteriors, the fake share of a batch of new posts follows from the
EM of Saerens, Latinne & Decaestecker (2002), assuming label shift only (each class looks as
it did in training): it measures the mix, not whether the verdicts are right.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

EPS = 1e-6
SHARE_FLOOR = 0.02  # accuracy_threshold's bounds on an estimated fake share


@dataclass(frozen=True)
class Calibration:
    """``p' = sigmoid(slope * logit(p))``; ``refused`` says why none was fitted (slope 1)."""

    slope: float = 1.0
    method: str = "platt_slope"
    n: int = 0
    refused: str | None = None

    def apply(self, p: np.ndarray) -> np.ndarray:
        z = _logit(np.asarray(p, dtype=np.float64))
        return 1.0 / (1.0 + np.exp(-np.clip(self.slope * z, -50.0, 50.0)))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Calibration:
        if not data:
            return cls()
        slope = float(data.get("slope", 1.0))
        if not np.isfinite(slope) or slope <= 0:
            raise ValueError(f"a calibration slope must be a positive number, got {slope!r}")
        return cls(slope=slope, method=str(data.get("method", "platt_slope")),
                   n=int(data.get("n", 0)), refused=data.get("refused"))  # fmt: skip


def fit_calibration(y: np.ndarray, p: np.ndarray) -> Calibration:
    """The slope that minimises class-balanced log loss of ``p`` (out-of-fold) against ``y``."""
    from scipy.optimize import minimize_scalar
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return Calibration(n=len(y), refused="one class only: nothing to calibrate against")
    auc = float(roc_auc_score(y, p))
    if auc < 0.5:
        return Calibration(
            n=len(y),
            refused=f"out-of-fold ROC AUC {auc:.3f} is worse than chance: the ranking is "
            "inverted on held-out topics, and no calibration can repair that",
        )
    z = _logit(p)
    w = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))

    def loss(log_slope: float) -> float:
        q = 1.0 / (1.0 + np.exp(-np.clip(np.exp(log_slope) * z, -50.0, 50.0)))
        q = np.clip(q, EPS, 1 - EPS)
        return float(-(w * (y * np.log(q) + (1 - y) * np.log(1 - q))).sum())

    best = minimize_scalar(loss, bounds=(np.log(1e-3), np.log(1e3)), method="bounded")
    return Calibration(slope=round(float(np.exp(best.x)), 6), n=len(y))


def estimate_fake_share(
    q: np.ndarray, *, start: float = 0.5, max_iter: int = 200, tol: float = 1e-6
) -> tuple[float, int]:
    """The fake share of the posts behind balanced-prior posteriors ``q`` (Saerens EM).

    Returns (share, iterations). Each step re-weighs every posterior to the current prior
    estimate and takes their mean as the next estimate.
    """
    q = np.clip(np.asarray(q, dtype=np.float64), EPS, 1 - EPS)
    if q.size == 0:
        raise ValueError("estimating a fake share needs at least one scored post")
    prior = start
    for i in range(1, max_iter + 1):
        fake = prior / 0.5 * q
        real = (1 - prior) / 0.5 * (1 - q)
        new = float(np.mean(fake / (fake + real)))
        if abs(new - prior) < tol:
            return new, i
        prior = new
    return prior, max_iter


def accuracy_threshold(balanced_threshold: float, fake_share: float) -> float:
    """The threshold on balanced-prior ``p_fake`` that maximises accuracy when a share
    ``fake_share`` of the posts is fake: Bayes' rule moves the decision's log-odds by the
    prior's (``t = 1 - fake_share`` for a balanced threshold of 0.5). The share is held in
    [SHARE_FLOOR, 1 - SHARE_FLOOR], so no estimate can make a verdict unanimous by fiat."""
    share = min(max(float(fake_share), SHARE_FLOOR), 1.0 - SHARE_FLOOR)
    z = float(_logit(np.array(balanced_threshold))) - float(_logit(np.array(share)))
    return 1.0 / (1.0 + float(np.exp(-z)))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))
