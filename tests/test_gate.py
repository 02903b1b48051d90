"""The accuracy gate: every rule, both directions, and the audited override."""

from __future__ import annotations

import pytest

from fnd_core.gate import GatePolicy, Scorecard, decide

POLICY = GatePolicy(min_accuracy=0.8, tolerance=0.01, min_class_recall=0.5)


def card(acc: float, r_real: float = 0.9, r_fake: float = 0.9) -> Scorecard:
    return Scorecard(accuracy=acc, recall_real=r_real, recall_fake=r_fake, n_test=200)


def test_first_model_above_floor_is_promoted():
    d = decide(card(0.91), None, POLICY)
    assert d.promote
    assert "all checks passed" in d.reason


def test_below_floor_is_rejected_with_reason():
    d = decide(card(0.55), None, POLICY)
    assert not d.promote
    assert "accuracy_floor 0.5500 below (needs >= 0.8000)" in d.reason


def test_worse_than_champion_beyond_tolerance_is_rejected():
    d = decide(card(0.90), card(0.93), POLICY)
    assert not d.promote
    assert "not_worse_than_champion" in d.reason


def test_within_tolerance_of_champion_is_promoted():
    assert decide(card(0.925), card(0.93), POLICY).promote


def test_collapsed_class_recall_is_rejected_even_with_good_accuracy():
    d = decide(card(0.85, r_real=1.0, r_fake=0.2), None, POLICY)
    assert not d.promote
    assert "recall_fake_floor" in d.reason


def test_force_promote_is_audited():
    d = decide(card(0.5), card(0.9), POLICY, forced_by="alice")
    assert d.promote
    assert d.forced_by == "alice"
    assert d.reason.startswith("forced by alice despite: ")
    assert d.to_json()["forced_by"] == "alice"


def test_policy_validates_bounds():
    with pytest.raises(ValueError, match="min_accuracy"):
        GatePolicy(min_accuracy=1.5)
