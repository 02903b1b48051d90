"""Classification metrics as small named functions, and one dict of all of them per split.

Label 1 is "fake" (the positive class), 0 is "real". Every function takes plain sequences or
numpy arrays, so the gate, the trainer and the tests share one definition of each number.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn import metrics as skm

CLASS_NAMES = ("real", "fake")
ArrayLike = Sequence[float] | np.ndarray


def predict_labels(p_fake: ArrayLike, threshold: float) -> np.ndarray:
    """1 (fake) where P(fake) >= threshold, else 0."""
    return (np.asarray(p_fake, dtype=float) >= threshold).astype(int)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    return float(skm.accuracy_score(y_true, y_pred))


def precision(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Of the posts called fake, the share that are fake (0 when none is called fake)."""
    return float(skm.precision_score(y_true, y_pred, zero_division=0))


def recall(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Of the fake posts, the share called fake."""
    return float(skm.recall_score(y_true, y_pred, zero_division=0))


def f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    return float(skm.f1_score(y_true, y_pred, zero_division=0))


def roc_auc(y_true: ArrayLike, p_fake: ArrayLike) -> float | None:
    """Area under the ROC curve; ``None`` when only one class is present (undefined)."""
    if len(np.unique(np.asarray(y_true))) < 2:
        return None
    return float(skm.roc_auc_score(y_true, p_fake))


def confusion(y_true: ArrayLike, y_pred: ArrayLike) -> list[list[int]]:
    """[[real→real, real→fake], [fake→real, fake→fake]] (rows truth, columns prediction)."""
    return skm.confusion_matrix(y_true, y_pred, labels=[0, 1]).tolist()


def per_class_recall(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> dict[str, float | None]:
    """Recall of each class by name (``None`` for a class absent from ``y_true``).

    ``sample_weight``: per-post weights (e.g. each leak group counting once).
    """
    matrix = skm.confusion_matrix(y_true, y_pred, labels=[0, 1], sample_weight=sample_weight)
    out: dict[str, float | None] = {}
    for label, name in enumerate(CLASS_NAMES):
        support = matrix[label].sum()
        out[name] = float(matrix[label, label] / support) if support else None
    return out


def balanced_accuracy(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> float:
    """Mean of the two class recalls: 0.5 for a constant guess whatever the class mix.

    ``sample_weight``: per-post weights (e.g. each leak group counting once). Posts of one
    class only (a fold of fake-only topics): that class's recall, without scikit-learn's
    warning, which a cross-validation would otherwise print for every such fold and epoch.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", "A single label was found")
        return float(skm.balanced_accuracy_score(y_true, y_pred, sample_weight=sample_weight))


def choose_threshold(
    y_true: ArrayLike, p_fake: ArrayLike, *, weights: ArrayLike | None = None
) -> float:
    """The threshold with the best balanced accuracy on these (validation) labels.

    ``weights``: per-post weights (e.g. each leak group counting once), so one picture
    reposted 300 times in the validation split does not set the threshold on its own.

    Balanced accuracy, so a skewed validation set cannot push the model into calling
    everything the majority class. Candidates are 0.5 and the midpoints between adjacent
    distinct probabilities (one ROC sweep, O(n log n)); ties go to the one closest to 0.5.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(p_fake, dtype=float)
    if len(y) == 0 or len(np.unique(y)) < 2:
        return 0.5
    w = None if weights is None else np.asarray(weights, dtype=float)
    fpr, tpr, thresholds = skm.roc_curve(y, p, sample_weight=w, drop_intermediate=False)
    # thresholds[0] is +inf (nothing called fake); thresholds[k] calls p >= thresholds[k] fake.
    cuts = thresholds[1:]
    below = np.append(cuts[1:], cuts[-1] - 1.0)  # next lower distinct value
    candidates = np.append((cuts + np.maximum(below, 0.0)) / 2, 0.5)
    at_half = float(skm.balanced_accuracy_score(y, predict_labels(p, 0.5), sample_weight=w))
    scores = np.append((tpr[1:] + 1.0 - fpr[1:]) / 2, at_half)
    ties = candidates[scores >= scores.max() - 1e-12]
    return float(ties[np.argmin(np.abs(ties - 0.5))])


def classification_report(y_true: ArrayLike, p_fake: ArrayLike, threshold: float) -> dict:
    """All metrics of one split as a JSON-ready dict (what ``model_versions.metrics`` holds)."""
    y = np.asarray(y_true, dtype=int)
    if len(y) == 0:
        raise ValueError("classification_report needs at least one labelled example")
    y_pred = predict_labels(p_fake, threshold)
    return {
        "n": int(len(y)),
        "n_fake": int(y.sum()),
        "threshold": float(threshold),
        "accuracy": accuracy(y, y_pred),
        "balanced_accuracy": balanced_accuracy(y, y_pred),
        "precision": precision(y, y_pred),
        "recall": recall(y, y_pred),
        "f1": f1(y, y_pred),
        "roc_auc": roc_auc(y, p_fake),
        "confusion_matrix": confusion(y, y_pred),
        "recall_per_class": per_class_recall(y, y_pred),
    }


SCORE_BINS = 10  # equal-width p_fake bins of the reference score histogram


def score_histogram(p_fake: ArrayLike, *, bins: int = SCORE_BINS) -> dict[str, list[float]]:
    """The share of scores in equal-width bins of [0, 1], as a GX ``partition_object``.

    Laplace-smoothed (half a post added to every bin): a bin the reference never reached must
    not make any later score in it an infinite divergence, only an unlikely one.
    """
    counts, edges = np.histogram(np.clip(np.asarray(p_fake, dtype=float), 0, 1), bins, (0, 1))
    weights = (counts + 0.5) / (counts.sum() + 0.5 * bins)
    return {"bins": [round(float(e), 6) for e in edges], "weights": weights.tolist()}


def logit_quantiles(p_fake: ArrayLike, n: int = 101) -> list[float]:
    """``n`` evenly spaced quantiles of ``logit(p_fake)``: where a recipe's scores lie on posts
    it did not train on, in the units a perturbation of its inputs moves them in (the int8
    verdict check asks how many of these a given shift would push across the threshold)."""
    from scipy.special import logit

    p = np.clip(np.asarray(p_fake, dtype=np.float64), 1e-6, 1 - 1e-6)
    if p.size == 0:
        return []
    z = logit(p)
    return [round(float(q), 4) for q in np.quantile(z, np.linspace(0, 1, n))]
