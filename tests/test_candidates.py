"""The candidate kinds: exact fits, artifacts that round-trip, a choice that says why."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fnd_core.model import ModelConfig
from fnd_core.model.artifacts import load_model, save_model
from fnd_core.model.char_ngrams import CharNgramModel, NgramConfig
from fnd_core.model.errors import ArtifactIntegrityError
from fnd_core.model.features.encoding import EncodedFeatures
from fnd_core.model.features.inference import head_proba
from fnd_core.model.network import build_model
from fnd_core.model.train.heads import design_matrix, fit_linear_head
from fnd_core.pipeline import candidates, evaluation

TINY = ModelConfig.for_preset("tiny", image_size=32)
STYLES = {
    1: ["OMG!!! look at THIS {w} 😱😱", "BREAKING!!! {w} unbelievable!!!"],
    0: ["Photo of the {w} this morning, via local news.", "The {w} near the station today."],
}
WORDS = ["storm", "bridge", "harbour", "market", "tower", "river"]


def _texts(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    texts = [STYLES[int(c)][rng.integers(0, 2)].format(w=rng.choice(WORDS)) for c in y]
    return texts, y


def test_char_ngrams_learn_style_and_round_trip_through_an_artifact(tmp_path):
    texts, y = _texts(200)
    model = CharNgramModel.fit(texts, y, np.ones(len(y)), NgramConfig(n_features=2**12))
    test_texts, test_y = _texts(50, seed=1)
    p = model.predict_proba(test_texts)
    assert ((p >= 0.5) == test_y).mean() == 1.0
    saved = save_model(model, str(tmp_path / "ngram"), threshold=0.5, metrics={"kind": "x"})
    loaded = load_model(saved.uri, saved.sha256, for_inference=True)
    assert isinstance(loaded.model, CharNgramModel) and loaded.config == model.config
    assert loaded.model.predict_proba(test_texts) == pytest.approx(p, abs=1e-5)  # float32 store
    weights = tmp_path / "ngram" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        load_model(saved.uri, saved.sha256)


def test_a_char_ngram_config_is_checked_when_read():
    with pytest.raises(ValueError, match="unknown"):
        NgramConfig.from_dict({"analyzer": "char", "pickle": True})
    with pytest.raises(ValueError, match="n-gram range"):
        NgramConfig.from_dict({"ngram_min": 5, "ngram_max": 2})


def test_the_linear_head_is_the_logistic_regression_it_was_fitted_as(tmp_path):
    from sklearn.linear_model import LogisticRegression

    torch.manual_seed(0)
    base = build_model(TINY, pretrained=False)
    rng = np.random.default_rng(0)
    features = EncodedFeatures(
        image=torch.tensor(rng.normal(size=(80, base.image_dim)), dtype=torch.float32),
        text=torch.tensor(rng.normal(size=(80, base.text_dim)), dtype=torch.float32),
    )
    y = (features.text[:, 0].numpy() > 0).astype(int)
    w = rng.uniform(0.5, 2.0, 80)
    model = candidates.fresh_head(base, candidates.kind_config("linear", TINY), 0)
    fit_linear_head(model, features, y, w)
    x = design_matrix(model, features)
    assert np.allclose(np.linalg.norm(x[:, : base.image_dim], axis=1), 1.0, atol=1e-5)
    reference = LogisticRegression(C=1.0, max_iter=3000).fit(x, y, w).predict_proba(x)[:, 1]
    assert head_proba(model, features) == pytest.approx(reference, abs=1e-5)
    saved = save_model(model, str(tmp_path / "linear"), threshold=0.5)
    loaded = load_model(saved.uri, saved.sha256)
    assert loaded.config.head == "linear"
    assert head_proba(loaded.model, features) == pytest.approx(reference, abs=1e-5)


def test_kinds_read_from_a_registered_config():
    assert candidates.kind_of({"preset": "offline"}) == "fusion"  # older versions
    assert candidates.kind_of({"head": "linear", "modalities": "both"}) == "linear"
    assert candidates.kind_of({"head": "linear", "modalities": "text"}) == "text_linear"
    assert candidates.kind_of({"kind": "char_ngram"}) == "char_ngram"
    assert candidates.parse_kinds(" linear, char_ngram ") == ["linear", "char_ngram"]
    with pytest.raises(ValueError, match="FND_CANDIDATE_KINDS"):
        candidates.parse_kinds("fusion,xgboost")


def test_the_simplest_kind_within_one_standard_error_of_the_best_wins():
    def summary(estimate, half_width):
        return evaluation.CVSummary(
            metric="balanced_accuracy", counted_by="posts",
            main=evaluation.Counting({"balanced_accuracy": estimate}, 0.5, 0.5), others={},
            interval=(estimate - half_width, estimate + half_width), pooled_per_repeat=[estimate],
            fold_values=[estimate], n=10, n_stories=10, n_units=4, topic_plan={},
            effective_stories_by_post=10.0, n_folds=2, n_repeats=1, split_policy="topic_disjoint",
            threshold=0.5,
        )  # fmt: skip

    # fusion is best by 0.01, but its standard error (0.1 / 1.645 = 0.061) covers linear
    close = candidates.choose({"fusion": summary(0.90, 0.1), "linear": summary(0.89, 0.1),
                               "char_ngram": summary(0.70, 0.05)})  # fmt: skip
    assert (close["winner"], close["best"]) == ("linear", "fusion")
    assert close["bar"] == pytest.approx(0.90 - 0.1 / 1.6449, abs=1e-6)
    assert close["margin"] == pytest.approx(-0.01) and close["spread"] == pytest.approx(0.2)
    # far ahead (the demo posts: fusion 1.00, linear 0.49): the best wins
    far = candidates.choose({"fusion": summary(0.999, 0.001), "linear": summary(0.49, 0.02)})
    assert far["winner"] == "fusion" and far["margin"] == pytest.approx(0.509)
    assert candidates.choose({"fusion": summary(0.9, 0.0)})["margin"] is None


def test_a_fold_left_with_one_class_predicts_that_class_instead_of_failing():
    from fnd_core.model.train.recipe import TrainOptions
    from fnd_core.pipeline.evaluation import CVPlan, Recipe

    texts, _ = _texts(40, seed=2)
    y = np.array([0] * 10 + [1] * 30)
    units = np.array([0] * 10 + [1] * 10 + [2] * 10 + [3] * 10)  # unit 0 holds every real post
    torch.manual_seed(0)
    base = build_model(TINY, pretrained=False)
    features = EncodedFeatures(image=None, text=torch.zeros(40, base.text_dim))
    data = candidates.FoldData(y, np.arange(40), texts, features, base, TINY)
    plan = CVPlan.make(y, units, n_folds=4, repeats=1)
    (oof,) = candidates.out_of_fold("char_ngram", data, plan, Recipe(1, TrainOptions()))
    assert np.all(oof[:10] == 1.0)  # nothing real was left to learn from: called fake


def _fold_and_final(kind: str, monkeypatch) -> tuple:
    """Fold 0 of a cross-validation and the final model fitted on the same rows."""
    from fnd_core.model.examples import PostExample
    from fnd_core.model.train.recipe import TrainOptions
    from fnd_core.pipeline.candidate_training import _train_final
    from fnd_core.pipeline.evaluation import CVPlan, Recipe

    n, rng = 120, np.random.default_rng(3)
    torch.manual_seed(0)
    base = build_model(TINY, pretrained=False)
    features = EncodedFeatures(
        image=torch.tensor(rng.normal(size=(n, base.image_dim)), dtype=torch.float32),
        text=torch.tensor(rng.normal(size=(n, base.text_dim)), dtype=torch.float32),
    )
    y = (features.text[:, 0].numpy() + rng.normal(0, 0.5, n) > 0).astype(int)
    stories = np.arange(n) // 2  # reposts: two posts per story
    data = candidates.FoldData(y, stories, ["t"] * n, features, base, TINY)
    plan = CVPlan.make(y, np.arange(n) // 10, n_folds=3, repeats=1)
    recipe = Recipe(epochs=3, options=TrainOptions(batch_size=16), seed=5)

    fold_models = []
    real_proba = candidates.proba

    def proba(model, part, rows):  # the fold path hands each fold's model to proba
        fold_models.append(model)
        return real_proba(model, part, rows)

    monkeypatch.setattr(candidates, "proba", proba)
    candidates.out_of_fold(kind, data, plan, recipe)  # fold k of repeat 0 is seeded seed + k
    rows = np.setdiff1d(np.arange(n), plan.repeats[0][0])
    examples = [PostExample(f"p{i}", "t", "", None, int(y[i])) for i in rows]
    final = _train_final(kind, data.subset(rows), examples, plan, recipe).model
    return fold_models[0], final


def test_the_fold_path_and_the_final_path_fit_bitwise_identical_weights(monkeypatch):
    """The gate's estimate describes what ships: a fold's linear model and the final one,
    fitted on the same rows, are the same tensors bit for bit."""
    fold, final = _fold_and_final("linear", monkeypatch)
    assert final.state_dict().keys() == fold.state_dict().keys()
    for name, tensor in final.state_dict().items():
        assert torch.equal(tensor, fold.state_dict()[name]), name


def test_a_fusion_fold_and_the_final_fusion_model_get_the_same_recipe(monkeypatch):
    """Fusion's folds are fitted as one stack and the final model as a stack of one: the same
    initial weights, rows, early-stopping split, loss weights, batch-order seed and epochs
    (that stack-mates share only the dropout stream is test_stacked_heads')."""
    from fnd_core.model.train import stacked_heads

    calls = []
    real_fit_heads = stacked_heads.fit_heads

    def fit_heads(models, features, labels, jobs, **kwargs):
        calls.append(([{k: v.clone() for k, v in m.head_state_dict().items()} for m in models],
                      jobs, kwargs))  # fmt: skip
        return real_fit_heads(models, features, labels, jobs, **kwargs)

    monkeypatch.setattr(stacked_heads, "fit_heads", fit_heads)
    _fold_and_final("fusion", monkeypatch)
    (fold_starts, fold_jobs, fold_kwargs), (final_starts, final_jobs, final_kwargs) = calls
    assert len(fold_jobs) == 3 and len(final_jobs) == 1
    assert fold_kwargs == final_kwargs
    for name, tensor in final_starts[0].items():
        assert torch.equal(tensor, fold_starts[0][name]), name
    fold_job, final_job = fold_jobs[0], final_jobs[0]
    assert fold_job.seed == final_job.seed
    for part in ("train", "val"):  # the final fit sees the fold's rows renumbered from 0
        kept = np.sort(np.concatenate([fold_job.train, fold_job.val]))
        assert np.array_equal(np.searchsorted(kept, getattr(fold_job, part)),
                              getattr(final_job, part)), part  # fmt: skip
        assert np.array_equal(getattr(fold_job, f"w_{part}"), getattr(final_job, f"w_{part}"))
