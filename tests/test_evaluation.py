"""Grouped cross-validation tells the truth where a random post split flatters.

A snapshot where the label belongs to the *picture* (each picture reposted many times, its
posts all fake or all real, captions saying nothing) can be learnt by memorising pictures: a
random post split rewards that, grouped folds must not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fnd_core.model import ModelConfig, PostExample, metrics
from fnd_core.model.features.encoding import encode_examples
from fnd_core.model.features.inference import head_proba
from fnd_core.model.network import build_model
from fnd_core.model.splits.grouping import PostKeys, leak_groups
from fnd_core.model.train.recipe import TrainOptions
from fnd_core.pipeline import candidates, evaluation

TINY = ModelConfig.for_preset("tiny", image_size=32)
RECIPE = evaluation.Recipe(epochs=40, options=TrainOptions(batch_size=32, lr=3e-3, patience=40))
WORDS = ["storm", "city", "water", "people", "street", "night", "photo", "wow", "look", "today"]


@pytest.fixture(scope="module")
def reposted(tmp_path_factory):
    """48 pictures x 8 reposts; a picture's posts share its (random) label."""
    folder = tmp_path_factory.mktemp("reposts")
    rng = np.random.default_rng(0)
    posts = []
    for picture in range(48):
        path = folder / f"{picture}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        sha = f"{picture:064x}"
        label = picture % 2
        for k in range(8):
            text = " ".join(rng.choice(WORDS, 3))
            posts.append(PostExample(f"p{picture}-{k}", text, str(path), sha, label))
    torch.manual_seed(0)
    base = build_model(TINY, pretrained=False)
    base.set_encoders_trainable(False)
    features = encode_examples(base, posts)
    groups = leak_groups([PostKeys(p.image_sha256, p.text) for p in posts])
    return base, features, evaluation.labels_of(posts), groups, [p.text for p in posts]


def test_a_random_post_split_rewards_memorised_pictures(reposted):
    base, features, y, groups, _ = reposted
    rng = np.random.default_rng(1)
    test = rng.choice(len(y), len(y) // 4, replace=False)
    train = np.setdiff1d(np.arange(len(y)), test)
    model = candidates.fresh_head(base, TINY, 0)
    # an honest recipe, but the held-out posts are reposts of pictures it trained on
    singletons = np.arange(len(y))  # what a post-level split assumes
    candidates.fit_on(model, features, y, singletons, train, RECIPE, n_folds=5)
    model.eval()
    p = head_proba(model, features.subset(test))
    assert metrics.balanced_accuracy(y[test], metrics.predict_labels(p, 0.5)) >= 0.8


def test_grouped_cross_validation_sees_through_it(reposted):
    base, features, y, groups, texts = reposted
    assert len(np.unique(groups)) == 48
    plan = evaluation.CVPlan.make(y, groups, n_folds=4, repeats=1)
    data = candidates.FoldData(y, groups, texts, features, base, TINY)
    assert data.available() == list(candidates.KINDS)
    estimates = {}
    for kind in [*candidates.KINDS, candidates.PRIOR]:
        cv, oof = candidates.cross_validate(kind, data, plan, RECIPE, metric="balanced_accuracy")
        assert len(cv.fold_values) == 4 and len(oof[0]) == len(y)
        assert cv.kind == kind and cv.split_policy == "topic_disjoint"
        estimates[kind] = cv.estimate
    assert estimates["prior"] == 0.5
    # chance is 0.5: nothing about a new picture was learnt, and captions are random words
    assert max(estimates.values()) <= 0.7, estimates


def test_the_estimate_counts_posts_and_keeps_each_story_once_beside_it():
    """One real picture reposted 8 times, called fake: by post it weighs 8, by story 1."""
    # groups: A (real, 8 posts, wrong), B and C (real, 1 post each, right),
    #         D (fake, 2 posts, right), E (fake, 1 post, right)
    groups = np.array([0] * 8 + [1, 2] + [3, 3, 4])
    y = np.array([0] * 10 + [1, 1, 1])
    p = np.array([0.9] * 8 + [0.1, 0.2] + [0.8, 0.7, 0.6])
    plan = evaluation.CVPlan(n_folds=2, repeats=[[np.arange(8), np.arange(8, 13)]])
    summary = evaluation.summarise(y, [p], plan, "balanced_accuracy", 0.5, groups).to_json(
        report=True
    )
    assert summary["counted_by"] == "posts"
    assert summary["estimate"] == pytest.approx((0.2 + 1) / 2, abs=1e-6)
    assert (summary["recall_real"], summary["recall_fake"]) == pytest.approx((0.2, 1.0))
    by_story = summary["stories"]
    assert by_story["estimates"]["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert by_story["recall_real"] == pytest.approx(2 / 3)
    assert summary["report"]["balanced_accuracy"] == pytest.approx(0.6)
    assert summary["fold_values"] == pytest.approx([0.0, 1.0])  # fold 1: all wrong, fold 2: right
    assert summary["n_stories"] == 5
    sizes = np.array([8, 1, 1, 2, 1])
    assert summary["effective_stories_by_post"] == pytest.approx(13**2 / np.sum(sizes**2), abs=0.05)
    macro = by_story["estimates"]["macro_f1"]
    # by story: real 2 right of 3 stories, fake 2 of 2, one real story called fake
    assert macro == pytest.approx(
        (2 * (2 / 3) / (2 / 3 + 1) + 2 * (2 / 3) / (2 / 3 + 1)) / 2, abs=1e-6
    )


def test_a_fold_of_one_class_scores_its_recall_quietly():
    """A fold of fake-only topics: balanced accuracy is the fake recall, and scikit-learn's
    warnings (once per such fold and epoch in a cross-validation) stay out of the logs."""
    import warnings

    from fnd_core.model.metrics import balanced_accuracy

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert balanced_accuracy([1, 1, 1, 1], [1, 0, 1, 1]) == 0.75
        assert balanced_accuracy([1, 1], [1, 1]) == 1.0
