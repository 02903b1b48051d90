"""A worst-topic objective: training weight moved toward the (topic, class) cells a model
fits worst, so that no topic's posts are sacrificed to the topics that dominate a class.

Group distributionally robust optimisation (GroupDRO; Sagawa et al., ICLR 2020) minimises the
largest group loss by exponentiated-gradient ascent on the groups' weights ``q``: after each
step ``q_g <- q_g * exp(eta * loss_g)``, normalised. fnd's heads are fitted whole (L-BFGS for
the linear kinds, early-stopped epochs for fusion), so the ascent runs over whole fits: fit
with every cell weighing ``q_g``, measure each cell's mean log loss, move ``q``, fit again.
The first fit is the topic x class balanced one (``q`` uniform).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

ETA = 2.0  # step of the ascent on log losses (~0.1-0.7 per cell): a few rounds move q far
EPS = 1e-6

M = TypeVar("M")  # whatever ``fit`` returns


@dataclass(frozen=True)
class WorstTopicFit(Generic[M]):
    """The last fit's model, and the cells' final weights and losses (for the log)."""

    model: M
    q: np.ndarray
    losses: np.ndarray


def cells_of(topics: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One id per (topic, class) cell present."""
    keys = np.char.add(np.asarray(topics).astype(str), np.char.add("\x1f", y.astype(str)))
    return np.unique(keys, return_inverse=True)[1]


def cell_weights(cells: np.ndarray, base: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-post weights: within a cell, proportional to ``base`` (stories counted once);
    each cell's total is ``q_g`` times the number of posts (the scale of unit weights)."""
    totals = np.bincount(cells, weights=base, minlength=len(q))
    return base / np.maximum(totals[cells], EPS) * q[cells] * len(cells)


def fit_worst_topic(
    fit: Callable[[np.ndarray], M],
    proba: Callable[[M], np.ndarray],
    y: np.ndarray,
    topics: np.ndarray,
    base: np.ndarray,
    *,
    rounds: int,
    eta: float = ETA,
) -> WorstTopicFit[M]:
    """``rounds`` fits, each with the cells weighted by ``q``; ``q`` moved by the cells'
    losses between fits. ``fit(weights)`` returns a model, ``proba(model)`` its P(fake) of the
    same posts."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    cells = cells_of(topics, y)
    q = np.full(cells.max() + 1, 1.0 / (cells.max() + 1))
    losses = np.zeros_like(q)
    model = fit(cell_weights(cells, base, q))
    for _ in range(rounds - 1):
        p = np.clip(proba(model), EPS, 1 - EPS)
        log_loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        losses = np.bincount(cells, weights=base * log_loss, minlength=len(q)) / np.maximum(
            np.bincount(cells, weights=base, minlength=len(q)), EPS
        )
        q = q * np.exp(eta * losses)
        q /= q.sum()
        model = fit(cell_weights(cells, base, q))
    return WorstTopicFit(model, q, losses)
