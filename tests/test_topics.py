"""Topics: the gate's fold unit. Given, discovered, corrected; and the estimate's interval."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from fnd_core.model.splits.topics import DOMINANT_SHARE, TIME_WINDOW_DAYS, plan_topics
from fnd_core.pipeline import evaluation

DAY = 86400.0


def _events(n_events: int, stories_per_event: int, posts_per_story: int, *, seed: int = 0):
    """Posts of ``n_events`` events: each event its own caption direction and its own week."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_events, 32))
    text, image, created, event, story = [], [], [], [], []
    for e in range(n_events):
        for s in range(stories_per_event):
            picture = rng.normal(size=16)
            for _ in range(posts_per_story):
                text.append(centres[e] + 0.15 * rng.normal(size=32))
                image.append(picture + 0.05 * rng.normal(size=16))
                created.append(e * 30 * DAY + rng.uniform(0, 3 * DAY))
                event.append(e)
                story.append(e * stories_per_event + s)
    return np.array(text), np.array(image), created, np.array(event), np.array(story)


def test_given_topics_are_the_units_and_a_story_never_straddles_two():
    stories = np.array([0, 0, 1, 2, 3, 3])
    y = np.array([1, 1, 1, 0, 0, 0])
    hints = ["a", "b", "b", "c", "d", "d"]  # story 0 sits in a and b: they become one topic
    plan = plan_topics(stories, y, hints, [None] * 6, None, None)
    assert plan.source == "field"
    assert plan.topics[0] == plan.topics[1] == plan.topics[2]
    assert len({plan.topics[0], plan.topics[3], plan.topics[4]}) == 3
    assert plan.n_topics == 3


@pytest.mark.parametrize("with_time", [True, False])
def test_topics_are_discovered_from_captions_pictures_and_time(with_time):
    text, image, created, event, story = _events(6, 5, 4)
    y = (event % 2).astype(int)
    plan = plan_topics(story, y, [None] * len(y), created if with_time else [None] * len(y),
                       text, image)  # fmt: skip
    assert plan.source == "discovered"
    assert adjusted_rand_score(event, plan.topics) == pytest.approx(1.0)


def test_posts_far_apart_in_time_are_never_one_topic():
    text, image, created, event, story = _events(1, 4, 3)
    created = np.array(created)
    late = story >= 2
    created[late] += (TIME_WINDOW_DAYS + 5) * DAY  # the same words, a month later
    y = np.array([0, 1] * (len(story) // 2))
    plan = plan_topics(story, y, [None] * len(y), list(created), text, image)
    assert set(plan.topics[late]).isdisjoint(plan.topics[~late])


def _dominant_case():
    # topic "big": 6 real stories (of 7 real) and 2 fake; topics "f1".."f3": fake only
    stories = np.arange(12)
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1])
    hints = ["big"] * 8 + ["small", "f1", "f2", "f3"]
    return stories, y, hints


def test_a_topic_holding_most_of_a_class_is_kept_in_training_and_not_scored():
    stories, y, hints = _dominant_case()
    plan = plan_topics(stories, y, hints, [None] * 12, None, None)
    big = plan.topics == plan.topics[0]
    assert plan.train_only is not None and np.array_equal(plan.train_only, big)
    (split,) = plan.split
    assert split["kept_in_training"] and split["class"] == "real"
    assert split["share_of_class_stories"] > DOMINANT_SHARE
    cv = evaluation.CVPlan.make(y, plan.units, n_folds=5, repeats=2, train_only=plan.train_only)
    assert cv.n_folds == 4  # four scored topics
    for folds in cv.repeats:
        held = np.concatenate(folds)
        assert sorted(held) == list(np.flatnonzero(~big))  # "big" is never held out
    p = np.where(y == 1, 0.9, 0.2)
    summary = evaluation.summarise(y, [p, p], cv, "balanced_accuracy", 0.5, stories).to_json()
    assert summary["n"] == 4 and summary["estimate"] == 1.0


def test_each_class_support_is_recorded_and_a_class_scored_on_one_topic_warned(caplog):
    stories, y, hints = _dominant_case()
    with caplog.at_level(logging.WARNING, logger="fnd_core.model.splits.topics"):
        plan = plan_topics(stories, y, hints, [None] * 12, None, None)
    assert plan.summary()["support"] == {
        "real": {"stories": 7, "topics": 2, "scored_stories": 1, "scored_topics": 1},
        "fake": {"stories": 5, "topics": 4, "scored_stories": 3, "scored_topics": 3},
    }  # "big" (6 real stories) is kept in training: only "small" scores the real side
    assert "real side rests on 1 topic(s) (1 real stories scored)" in caplog.text
    assert "fake side" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fnd_core.model.splits.topics"):
        split = plan_topics(stories, y, hints, [None] * 12, None, None, mode="stories")
    assert split.support["real"]["scored_stories"] == 7 and "rests on" not in caplog.text


def test_or_split_into_its_stories():
    stories, y, hints = _dominant_case()
    plan = plan_topics(stories, y, hints, [None] * 12, None, None, mode="stories")
    assert plan.n_topics == 5 and plan.train_only is None
    big = plan.topics == plan.topics[0]
    assert len(set(plan.units[big])) == 8  # each of its stories is a unit
    assert all(len(set(plan.units[plan.topics == t])) == 1 for t in set(plan.topics[~big]))
    (split,) = plan.split
    assert split["stories"] == 8 and "real" in split["reason"]
    assert split["only_topic_of_class"] is False


def test_a_class_held_by_one_topic_is_split_and_said_to_be_within_topic():
    stories = np.arange(6)
    y = np.array([0, 0, 0, 1, 1, 1])
    plan = plan_topics(stories, y, ["a", "a", "a", "b", "c", "d"], [None] * 6, None, None)
    (split,) = plan.split
    assert split["class"] == "real" and split["only_topic_of_class"] is True
    assert "cannot be estimated" in split["reason"]
    assert plan.n_units == 6


def test_fewer_units_than_folds_gives_fewer_folds_and_one_unit_is_refused():
    y = np.array([0, 0, 1, 1, 1, 0])
    units = np.array([0, 0, 1, 1, 2, 2])
    plan = evaluation.CVPlan.make(y, units, n_folds=5, repeats=2)
    assert plan.n_folds == 3 and len(plan.repeats) == 2
    for folds in plan.repeats:
        for rows in folds:
            assert len(set(units[rows])) == 1  # whole units
    with pytest.raises(evaluation.TooFewTopicsError, match="at least two"):
        evaluation.CVPlan.make(y, np.zeros(6, dtype=int), n_folds=5, repeats=1)


def test_the_interval_resamples_topics_of_each_class_and_holds_the_estimate():
    units = np.repeat(np.arange(20), 10)
    y = (units % 2).astype(int)
    # real topics: 9 of 10 right; fake topics: 5 of 10 right (whole topics right or wrong)
    right = np.where(y == 0, units < 18, units % 4 == 1)
    p = np.where(right, y, 1 - y).astype(float) * 0.8 + 0.1
    plan = evaluation.CVPlan(
        n_folds=2, repeats=[[np.arange(100), np.arange(100, 200)]], units=units
    )
    summary = evaluation.summarise(y, [p], plan, "balanced_accuracy", 0.5, units).to_json()
    low, high = summary["interval"]
    assert low < summary["estimate"] < high
    assert summary["interval_width"] == pytest.approx(high - low)
    assert summary["split_policy"] == "topic_disjoint" and summary["n_units"] == 20
    # every topic right: no spread at all
    perfect = np.where(y == 1, 0.9, 0.1)
    assert evaluation.topic_interval(y, [perfect], units, 0.5) == (1.0, 1.0)
