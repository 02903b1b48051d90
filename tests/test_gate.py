"""The accuracy gate: every rule, both directions, the baselines and the audited override."""

from __future__ import annotations

import pytest

from fnd_core.pipeline.gate import GateDecision, GatePolicy, Scorecard, decide

POLICY = GatePolicy(min_accuracy=0.7, tolerance=0.01, min_class_recall=0.5, baseline_margin=0.02)


def card(estimate: float, r_real: float = 0.9, r_fake: float = 0.9) -> Scorecard:
    return Scorecard(estimate=estimate, recall_real=r_real, recall_fake=r_fake, n=200)


PRIOR = {"prior": card(0.5, 0.0, 1.0)}


def test_first_model_above_floor_and_baselines_is_promoted():
    d = decide(card(0.81), POLICY, baselines={**PRIOR, "text_lr": card(0.70)})
    assert d.promote
    assert "all checks passed" in d.reason
    assert (d.metric, d.estimate) == ("balanced_accuracy", 0.81)
    assert [c["name"] for c in d.checks] == [
        "balanced_accuracy_floor", "recall_real_floor", "recall_fake_floor",
        "beats_prior", "beats_text_lr",
    ]  # fmt: skip


def test_below_floor_is_rejected_with_reason():
    d = decide(card(0.55), POLICY)
    assert not d.promote
    assert "balanced_accuracy_floor 0.5500 below (needs >= 0.7000)" in d.reason


def test_not_beating_the_text_baseline_by_the_margin_is_rejected():
    d = decide(card(0.80), POLICY, baselines={**PRIOR, "text_lr": card(0.79)})
    assert not d.promote
    assert d.reason == "failed: beats_text_lr 0.8000 below (needs >= 0.8100)"


def test_worse_than_champion_recipe_beyond_tolerance_is_rejected():
    d = decide(card(0.80), POLICY, champion=card(0.83))
    assert not d.promote
    assert "not_worse_than_champion 0.8000 below (needs >= 0.8200)" in d.reason


def test_within_tolerance_of_champion_is_promoted():
    assert decide(card(0.825), POLICY, champion=card(0.83)).promote


def test_collapsed_class_recall_is_rejected_even_with_a_good_estimate():
    d = decide(card(0.85, r_real=1.0, r_fake=0.2), POLICY)
    assert not d.promote
    assert "recall_fake_floor" in d.reason
    assert "recall_real_floor" not in d.reason


def test_force_promote_is_audited_and_round_trips():
    d = decide(card(0.5), POLICY, champion=card(0.9), forced_by="alice")
    assert d.promote
    assert d.forced_by == "alice"
    assert d.reason.startswith("forced by alice despite: ")
    again = GateDecision.from_json(d.to_json())
    assert again == d


@pytest.mark.parametrize(
    ("field", "value"),
    [("min_accuracy", 1.5), ("baseline_margin", -0.1), ("metric", "accuracy")],
)
def test_policy_validates(field, value):
    with pytest.raises(ValueError, match=field):
        GatePolicy(**{field: value})


def test_the_gate_reads_the_nested_figure_and_compares_the_champion_like_with_like():
    # the choice made inside the folds says 0.66: under the floor, though the winner's own
    # estimate (0.80) clears it and is what is compared with the champion's recipe
    d = decide(card(0.66), POLICY, champion=card(0.80), same_folds=card(0.80))
    assert not d.promote and d.estimate == 0.66
    assert [c["name"] for c in d.checks if not c["passed"]] == ["balanced_accuracy_floor"]


def test_a_new_recipe_must_beat_the_champions_recipe_by_the_margin():
    policy = GatePolicy(min_accuracy=0.7, new_recipe_margin=0.005)
    tie = decide(card(0.80), policy, champion=card(0.80), new_recipe=True)
    assert not tie.promote  # the same recipe would pass: within tolerance
    assert "new_recipe_beats_champion_recipe 0.8000 below (needs >= 0.8050)" in tie.reason
    assert decide(card(0.806), policy, champion=card(0.80), new_recipe=True).promote
    # the paired fold-wise standard error is the margin when it is the larger
    noisy = decide(card(0.806), policy, champion=card(0.80), new_recipe=True, paired_se=0.02)
    assert not noisy.promote and "needs >= 0.8200" in noisy.reason
    # a champion at the ceiling can still be matched
    assert decide(card(1.0), policy, champion=card(1.0), new_recipe=True).promote
    assert decide(card(0.80), policy, champion=card(0.80)).promote  # its own recipe: tolerance
