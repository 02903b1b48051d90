"""The choice among kinds, estimated with the choice inside the folds (nested over topics)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from fnd_core.model import ModelConfig
from fnd_core.model.features.encoding import EncodedFeatures
from fnd_core.model.metrics import balanced_accuracy
from fnd_core.model.network import build_model
from fnd_core.model.train.recipe import TrainOptions
from fnd_core.pipeline import candidates, nested_selection
from fnd_core.pipeline.evaluation import CVPlan, Recipe

TINY = ModelConfig.for_preset("tiny", image_size=32)
RECIPE = Recipe(epochs=2, options=TrainOptions(batch_size=16), seed=1)


def fold_data(n_topics: int, per_topic: int = 12) -> tuple[candidates.FoldData, np.ndarray]:
    """Posts of ``n_topics`` topics: text features carry the label, noisily; each topic has a
    wording of its own (what the char n-gram kind can learn and then fail on new topics)."""
    n, rng = n_topics * per_topic, np.random.default_rng(7)
    torch.manual_seed(0)
    base = build_model(TINY, pretrained=False)
    topics = np.arange(n) // per_topic
    y = (rng.random(n) < 0.5).astype(int)
    text = rng.normal(size=(n, base.text_dim))
    text[:, 0] += 1.5 * (2 * y - 1)
    image = rng.normal(size=(n, base.image_dim))
    texts = [
        f"topic{t} {'alert' if c else 'photo'} {i}"
        for i, (t, c) in enumerate(zip(topics, y, strict=True))
    ]
    features = EncodedFeatures(
        image=torch.tensor(image, dtype=torch.float32), text=torch.tensor(text, dtype=torch.float32)
    )
    stories = np.arange(n)  # every post its own story: the row ids, to check what a fit saw
    return candidates.FoldData(y, stories, texts, features, base, TINY, topics), topics


def test_each_outer_fold_is_scored_by_the_kind_chosen_without_it(monkeypatch):
    data, topics = fold_data(8)
    plan = CVPlan.make(data.y, topics, n_folds=4, repeats=2, seed=1, topic_of=topics)
    kinds = ["linear", "char_ngram"]
    cvs, oofs = {}, {}
    for kind in kinds:
        cvs[kind], oofs[kind] = candidates.cross_validate(
            kind, data, plan, RECIPE, metric="balanced_accuracy"
        )
    seen: list[np.ndarray] = []
    real = candidates.fit

    def spy(kind, data, rows, recipe, **kwargs):
        seen.append(rows)  # the posts this fit reads
        return real(kind, data, rows, recipe, **kwargs)

    monkeypatch.setattr(candidates, "fit", spy)
    winner = candidates.choose(cvs)["winner"]
    nested = nested_selection.nested_estimate(
        data, plan, RECIPE, oofs, winner=winner, naive=cvs[winner].estimate,
        metric="balanced_accuracy",
    )  # fmt: skip
    assert nested is not None
    outer = plan.repeats[0]
    assert len(nested.chosen) == 4 and set(nested.chosen) <= set(kinds)
    # every kind, every inner fold of every outer fold; no choice read the posts it is then
    # scored on: a fit for outer fold k trains on none of k's test posts
    inner_folds = [4, 4, 4, 4]  # 6 topics to train on each time: 4 inner folds
    assert len(seen) == len(kinds) * sum(inner_folds)
    for i, rows in enumerate(seen):
        k = (i % sum(inner_folds)) // 4
        assert not set(rows) & set(outer[k])
    p = np.zeros(len(data.y))
    for pick, test in zip(nested.chosen, outer, strict=True):
        p[test] = oofs[pick][0][test]
    assert nested.summary.estimate == pytest.approx(balanced_accuracy(data.y, p >= 0.5), abs=1e-6)
    record = nested.to_json()
    assert record["naive"] == cvs[winner].estimate and record["n_outer_folds"] == 4
    assert record["optimism"] == pytest.approx(record["naive"] - record["estimate"], abs=1e-6)
    low, high = record["interval"]
    assert low <= record["estimate"] <= high and "stories" in record


def test_one_kind_is_no_choice_and_costs_no_refit(monkeypatch):
    data, topics = fold_data(6)
    plan = CVPlan.make(data.y, topics, n_folds=3, repeats=2, seed=2, topic_of=topics)
    cv, oof = candidates.cross_validate("linear", data, plan, RECIPE, metric="balanced_accuracy")

    def refit(*args, **kwargs):
        raise AssertionError("one kind: nothing to choose, nothing to refit")

    monkeypatch.setattr(candidates, "fit", refit)
    nested = nested_selection.nested_estimate(
        data, plan, RECIPE, {"linear": oof}, winner="linear", naive=cv.estimate,
        metric="balanced_accuracy",
    )  # fmt: skip
    assert nested is not None and nested.chosen == ["linear"] * 3
    assert nested.summary.estimate == pytest.approx(cv.pooled_per_repeat[0], abs=1e-6)


def test_an_outer_fold_with_too_few_topics_to_choose_in_gives_no_figure(caplog):
    data, topics = fold_data(2)
    plan = CVPlan.make(data.y, topics, n_folds=2, repeats=1, topic_of=topics)
    oofs = {
        kind: candidates.cross_validate(kind, data, plan, RECIPE, metric="balanced_accuracy")[1]
        for kind in ("linear", "char_ngram")
    }
    with caplog.at_level(logging.WARNING, logger=nested_selection.__name__):
        nested = nested_selection.nested_estimate(
            data, plan, RECIPE, oofs, winner="linear", naive=0.5, metric="balanced_accuracy"
        )
    assert nested is None
    assert "too few topics" in caplog.text


def test_parts_are_cross_validated_as_each_part_alone():
    """``cross_validate_parts`` on rows of the data is ``cross_validate`` on their subset."""
    data, topics = fold_data(8)
    rows = np.flatnonzero(topics != 3)
    part = data.subset(rows)
    plan = CVPlan.make(part.y, topics[rows], n_folds=3, repeats=2, seed=2, topic_of=topics[rows])
    for kind in ("linear", "char_ngram"):
        alone, _ = candidates.cross_validate(kind, part, plan, RECIPE, metric="balanced_accuracy")
        ((as_part, _),) = candidates.cross_validate_parts(
            kind, data, [(rows, plan)], RECIPE, metric="balanced_accuracy"
        )
        assert as_part.to_json(report=True) | {"seconds": 0} == alone.to_json(report=True) | {
            "seconds": 0
        }
