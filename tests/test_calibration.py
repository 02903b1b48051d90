"""Calibrated P(fake) and the fake share estimated from it."""

from __future__ import annotations

import numpy as np
import pytest

from fnd_core.model.calibration import (
    Calibration,
    accuracy_threshold,
    estimate_fake_share,
    fit_calibration,
)


def _posteriors(n_fake: int, n_real: int, *, spread: float = 2.0, seed: int = 0):
    """Balanced-prior posteriors of a model whose logit is +-spread plus unit noise."""
    rng = np.random.default_rng(seed)
    z = np.concatenate([rng.normal(spread, 1.0, n_fake), rng.normal(-spread, 1.0, n_real)])
    y = np.concatenate([np.ones(n_fake, int), np.zeros(n_real, int)])
    return y, 1 / (1 + np.exp(-z)), z


def test_an_overconfident_model_is_softened_and_its_decisions_stay_put():
    y, _, z = _posteriors(400, 400)
    overconfident = 1 / (1 + np.exp(-8 * z))  # the true log odds are 2 * spread * z = 4z
    calibration = fit_calibration(y, overconfident)
    assert calibration.slope == pytest.approx(0.5, abs=0.08)
    calibrated = calibration.apply(overconfident)
    assert np.array_equal(calibrated >= 0.5, overconfident >= 0.5)
    assert Calibration.from_dict(calibration.to_dict()) == calibration


def test_an_inverted_ranking_is_refused_not_calibrated():
    y, p, _ = _posteriors(200, 200)
    calibration = fit_calibration(y, 1 - p)
    assert calibration.slope == 1.0
    assert "worse than chance" in calibration.refused
    assert np.allclose(calibration.apply(p), p)


def test_a_stored_calibration_is_checked():
    with pytest.raises(ValueError, match="positive"):
        Calibration.from_dict({"slope": -1.0})
    assert Calibration.from_dict(None) == Calibration()


@pytest.mark.parametrize("share", [0.1, 0.25, 0.5, 0.8])
def test_the_fake_share_of_a_shifted_batch_is_recovered(share):
    n = 4000
    _, _, z = _posteriors(int(n * share), n - int(n * share), seed=3)
    balanced = 1 / (1 + np.exp(-4 * z))  # calibrated: the classes' true log-likelihood ratio
    estimate, iterations = estimate_fake_share(balanced)
    assert estimate == pytest.approx(share, abs=0.03)
    assert 1 <= iterations < 200


@pytest.mark.parametrize(("share", "expected"), [(0.5, 0.5), (0.25, 0.75), (0.8, 0.2)])
def test_the_accuracy_threshold_is_bayes_rule_under_the_estimated_share(share, expected):
    assert accuracy_threshold(0.5, share) == pytest.approx(expected)


def test_the_accuracy_threshold_beats_the_balanced_one_on_a_shifted_batch():
    """Mostly real posts (20 % fake): the moved threshold wins accuracy, the balanced one
    balanced accuracy; each objective gets what it asks for."""
    y, _, z = _posteriors(400, 1600, spread=1.0, seed=5)
    q = 1 / (1 + np.exp(-2 * z))  # calibrated balanced posteriors
    share, _ = estimate_fake_share(q)
    moved = accuracy_threshold(0.5, share)
    assert moved > 0.6

    def accuracy(t):
        return float(np.mean((q >= t) == y))

    def balanced(t):
        pred = q >= t
        return (pred[y == 1].mean() + (~pred[y == 0]).mean()) / 2

    assert accuracy(moved) > accuracy(0.5) + 0.03
    assert balanced(0.5) > balanced(moved)


def test_an_extreme_share_never_makes_the_verdict_unanimous():
    assert accuracy_threshold(0.5, 0.0) == pytest.approx(0.98)
    assert accuracy_threshold(0.5, 1.0) == pytest.approx(0.02)
