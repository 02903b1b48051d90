"""Novelty: posts of the topics a model learnt spread over 0-100; posts of a new one land high."""

from __future__ import annotations

import numpy as np
import pytest

from fnd_core.model import novelty
from fnd_core.model.artifacts import load_model, save_model
from fnd_core.model.char_ngrams import CharNgramModel

DIMS = 48


def _posts(rng: np.random.Generator, centres: np.ndarray, topic: int, n: int) -> np.ndarray:
    return centres[topic] + 0.6 * rng.normal(size=(n, DIMS))


@pytest.fixture
def learnt():
    """Four learnt topics (text and picture features), unseen posts of them, and a new topic."""
    rng = np.random.default_rng(3)
    text_centres, image_centres = rng.normal(size=(5, DIMS)), rng.normal(size=(5, DIMS)) + 4.0

    def posts(topic: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        return _posts(rng, text_centres, topic, n), _posts(rng, image_centres, topic, n)

    train = [posts(t, 150) for t in range(4)]
    held_in = [posts(t, 60) for t in range(4)]
    ref = novelty.for_encoders(
        np.concatenate([t for t, _ in train]),
        np.concatenate([i for _, i in train]),
        np.repeat(np.arange(4), 150),
    )
    held_text, held_image = (np.concatenate(x) for x in zip(*held_in, strict=True))
    return ref, (held_text, held_image), posts(4, 80)


def test_unseen_posts_of_learnt_topics_spread_and_a_new_topic_lands_high(learnt):
    ref, (held_text, held_image), (new_text, new_image) = learnt
    held = ref.percentiles(ref.vectors(text=held_text, image=held_image))
    new = ref.percentiles(ref.vectors(text=new_text, image=new_image))
    assert ref.n_topics == 4 and ref.n_posts == 600
    assert held.min() >= 0.0 and held.max() <= 100.0
    # left-one-out reference: unseen posts of a learnt topic look like training posts
    assert 35 <= np.median(held) <= 65
    assert (held >= 95).mean() < 0.15
    assert np.median(new) >= 99 and (new >= 95).mean() > 0.9


def test_the_picture_mean_is_removed_so_pictures_are_told_apart(learnt):
    """CNN features share a large common component: without centring every picture is near
    every other, and a new topic's pictures would not stand out."""
    ref, _, (new_text, new_image) = learnt
    assert ref.image_mean is not None and ref.image_mean.mean() > 3.0
    picture_only = novelty.for_encoders(None, new_image[:40], np.zeros(40, dtype=int))
    assert picture_only.parts == (("image", DIMS),)
    assert ref.parts == (("text", DIMS), ("image", DIMS))


def test_a_topic_of_one_post_is_not_its_own_reference():
    """Left-one-out: a lone post's distance is to the other topics, never 0 to itself."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(20, DIMS)) + 5, rng.normal(size=(1, DIMS)) - 5])
    ref = novelty.for_encoders(x, None, np.array([0] * 20 + [1]))
    assert ref.quantiles[-1] > 1.0  # the lone post is far from the other topic
    assert ref.distances(ref.vectors(text=x[-1:]))[0] == pytest.approx(0.0, abs=1e-5)


def test_char_ngram_space_tells_a_new_story_from_learnt_wording():
    topics = {
        0: "hurricane sandy flood new york subway water storm surge photo",
        1: "shark swimming in the flooded street of new jersey after the storm",
        2: "malaysia airlines flight mh370 missing plane search ocean debris",
    }
    rng = np.random.default_rng(1)
    texts, topic_of = [], []
    for topic, words in topics.items():
        vocab = words.split()
        for _ in range(40):
            texts.append(" ".join(rng.choice(vocab, size=8)))
            topic_of.append(topic)
    model = CharNgramModel.fit(texts, np.array([t % 2 for t in topic_of]))
    ref = novelty.for_ngrams(model.tfidf(texts), topic_of)
    assert ref.centroids.shape == (3, novelty.FOLD_DIMS)
    seen = ref.percentiles(ref.vectors(tfidf=model.tfidf(["storm surge flood photo subway sandy"])))
    unseen = ref.percentiles(
        ref.vectors(tfidf=model.tfidf(["volcano eruption ash cloud iceland grounded"]))
    )
    assert seen[0] < 90 and unseen[0] == 100.0


def test_the_reference_is_stored_in_the_artifact_and_checked(learnt, tmp_path):
    ref, (held_text, held_image), _ = learnt
    texts = ["a real post", "a fake post", "another real one", "and a fake"]
    model = CharNgramModel.fit(texts, np.array([0, 1, 0, 1]))
    saved = save_model(model, str(tmp_path / "m"), threshold=0.5, novelty=ref)
    assert "novelty.safetensors" in saved.files
    loaded = load_model(saved.uri, saved.sha256)
    assert loaded.novelty is not None and loaded.novelty.meta() == ref.meta()
    vectors = ref.vectors(text=held_text, image=held_image)
    np.testing.assert_allclose(
        loaded.novelty.percentiles(vectors), ref.percentiles(vectors), atol=1e-3
    )
    plain = save_model(model, str(tmp_path / "old"), threshold=0.5)  # as before sql/020
    assert load_model(plain.uri, plain.sha256).novelty is None


def test_a_stored_reference_that_does_not_fit_its_parts_is_refused(learnt):
    ref, _, _ = learnt
    arrays = ref.arrays() | {"centroids": ref.centroids[:, :10]}
    with pytest.raises(ValueError, match="do not fit"):
        novelty.NoveltyReference.from_stored(ref.meta(), arrays)
