"""Leak groups, grouped folds and weights: a test post never shares a story with training."""

from __future__ import annotations

import numpy as np
import pytest

from fnd_core.model.splits.grouping import (
    PostKeys,
    group_weights,
    grouped_folds,
    leak_groups,
    leak_report,
    normalise_text,
)

A, B, C = "a" * 64, "b" * 64, "c" * 64
STORY = "Shark swimming in the streets of New Jersey after the storm"


def test_normalised_text_ignores_case_urls_mentions_retweets_and_spaces():
    assert normalise_text(f"RT @cnn: {STORY.upper()}  http://t.co/x1") == normalise_text(
        f"{STORY}\nhttps://t.co/other @someone"
    )


def test_posts_sharing_a_picture_or_a_caption_form_one_group_transitively():
    posts = [
        PostKeys(A, STORY),  # 0
        PostKeys(B, f"RT @x: {STORY} http://t.co/1"),  # 1: same caption as 0
        PostKeys(B, "something else entirely, long enough"),  # 2: same picture as 1
        PostKeys(C, "a different story about a different picture"),  # 3
    ]
    groups = leak_groups(posts)
    assert groups[0] == groups[1] == groups[2] != groups[3]


def test_short_captions_do_not_chain_unrelated_pictures():
    groups = leak_groups([PostKeys(A, "#sandy http://t.co/1"), PostKeys(B, "#Sandy http://t.co/2")])
    assert groups[0] != groups[1]


def test_a_landing_group_column_joins_groups():
    posts = [PostKeys(A, "one caption of some length here", "ev1"),
             PostKeys(B, "another caption of some length", "ev1"),
             PostKeys(C, "a third caption of some length", "ev2")]  # fmt: skip
    groups = leak_groups(posts)
    assert groups[0] == groups[1] != groups[2]


def test_grouped_folds_never_split_a_group_and_keep_both_classes():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), rng.integers(1, 30, 60))
    labels = (groups % 3 == 0).astype(int)  # a group is one class, as reposts are
    folds = grouped_folds(labels, groups, n_folds=5, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(groups)))
    assert leak_report(groups, folds)["groups_straddling_folds"] == 0
    assert all(set(labels[f]) == {0, 1} for f in folds)


def test_too_few_groups_for_the_folds_is_a_clear_error():
    with pytest.raises(ValueError, match="only 3"):
        grouped_folds([0, 1, 0, 1], np.array([0, 1, 2, 2]), n_folds=5)


def test_weights_count_each_group_once_and_balance_the_classes():
    groups = np.array([0] * 300 + [1, 2, 3])  # one picture reposted 300 times, three others
    labels = np.array([1] * 300 + [1, 0, 0])
    w = group_weights(groups, labels)
    assert w[:300].sum() == pytest.approx(w[300])  # the 300 reposts weigh as one story
    assert w[labels == 1].sum() == pytest.approx(w[labels == 0].sum())
    assert w.mean() == pytest.approx(1.0)


def test_early_stopping_split_keeps_both_classes_on_both_sides():
    from fnd_core.model.splits.grouping import early_stopping_split

    groups = np.repeat(np.arange(12), 10)
    labels = (groups < 2).astype(int)  # only two stories of one class
    val = early_stopping_split(labels, groups, n_folds=5, seed=0)
    rest = np.setdiff1d(np.arange(len(labels)), val)
    assert set(labels[val]) == set(labels[rest]) == {0, 1}
    assert not set(groups[val]) & set(groups[rest])  # whole groups
    few = early_stopping_split(labels[:30], groups[:30], n_folds=5)  # 3 groups: post split
    assert set(labels[:30][few]) == {0, 1} and 0 < len(few) < 30


def test_topic_weights_give_every_topic_class_cell_the_same_weight():
    groups = np.array([0, 0, 1, 2, 3, 4, 5])
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    topics = np.array([7, 7, 7, 8, 7, 9, 9])  # real: topic 7 (2 stories), topic 8 (1 story)
    w = group_weights(groups, labels, topics=topics)
    assert w[:3].sum() == pytest.approx(w[3])  # each real topic holds half the real weight
    assert w[0] == pytest.approx(w[1]) and w[0] + w[1] == pytest.approx(w[2])  # stories within
    assert w[4] == pytest.approx(w[5] + w[6])  # fake: topic 7 vs topic 9
    assert w[labels == 0].sum() == pytest.approx(w[labels == 1].sum())
    assert w.mean() == pytest.approx(1.0)
