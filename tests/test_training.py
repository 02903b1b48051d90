"""Training, metrics, feature cache and plots on the tiny preset and a learnable toy task."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from fnd_core.model import ModelConfig, PostExample, metrics
from fnd_core.model.artifacts import load_model, save_model
from fnd_core.model.features.encoding import encode_examples
from fnd_core.model.network import build_model
from fnd_core.model.train.objective import alignment_loss, warmup_cosine
from fnd_core.model.train.plots import confusion_matrix, roc_curve, training_curves, training_report
from fnd_core.model.train.recipe import TrainOptions
from fnd_core.model.train.trainer import train
from tests.media import toy_posts


@pytest.fixture(autouse=True, scope="module")
def _one_cpu_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def posts(tmp_path_factory):
    return toy_posts(tmp_path_factory.mktemp("toy"), 240)


TINY = ModelConfig.for_preset("tiny", image_size=32)
FAST = TrainOptions(patience=20, batch_size=32, lr=3e-3)


# metrics ----------------------------------------------------------------------------------------
def test_metrics_on_known_inputs():
    y_true = [0, 0, 0, 1, 1, 1, 1, 1]
    p_fake = [0.1, 0.6, 0.2, 0.9, 0.8, 0.4, 0.7, 0.3]
    report = metrics.classification_report(y_true, p_fake, threshold=0.5)
    # predictions: 0 1 0 1 1 0 1 0 -> tn=2 fp=1 fn=2 tp=3
    assert report["confusion_matrix"] == [[2, 1], [2, 3]]
    assert report["accuracy"] == pytest.approx(5 / 8)
    assert report["precision"] == pytest.approx(3 / 4)
    assert report["recall"] == pytest.approx(3 / 5)
    assert report["f1"] == pytest.approx(2 / 3)  # 2 tp / (2 tp + fp + fn) = 6 / 9
    assert report["recall_per_class"] == {"real": pytest.approx(2 / 3), "fake": pytest.approx(0.6)}
    assert report["roc_auc"] == pytest.approx(13 / 15)  # 13 of 15 (fake, real) pairs ordered
    assert metrics.roc_auc([1, 1], [0.2, 0.9]) is None
    json.dumps(report)  # JSON-ready for model_versions.metrics


def test_choose_threshold_separates_when_it_can():
    y_true = [0, 0, 0, 1, 1, 1]
    p_fake = [0.05, 0.10, 0.20, 0.30, 0.35, 0.90]
    threshold = metrics.choose_threshold(y_true, p_fake)
    assert 0.20 < threshold <= 0.30  # any such threshold separates the classes exactly
    assert [int(p >= threshold) for p in p_fake] == y_true
    assert metrics.choose_threshold([1, 1], [0.3, 0.8]) == 0.5  # undefined: keep the default


def test_warmup_then_cosine_decay():
    factor = warmup_cosine(100, 0.1)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5, abs=0.02) and factor(100) == pytest.approx(0.0)


def test_alignment_loss_prefers_matching_pairs_and_ignores_fakes():
    base = torch.eye(4)
    labels = torch.tensor([0.0, 0.0, 0.0, 1.0])
    matched = alignment_loss(base, base, labels, temperature=0.2)
    shuffled = alignment_loss(base, base[[1, 2, 0, 3]], labels, temperature=0.2)
    assert matched < 0.1 < shuffled
    mismatched_fake = base.clone()
    mismatched_fake[3] = -1.0  # a fake post's pair is never pulled together
    assert alignment_loss(base, mismatched_fake, labels, temperature=0.2) == matched
    assert alignment_loss(base, base, torch.ones(4), temperature=0.2) == 0.0


# feature cache -----------------------------------------------------------------------------
class _CallCounter:
    def __init__(self, module: torch.nn.Module) -> None:
        self.rows = 0
        module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        self.rows += len(output)


def test_feature_cache_encodes_each_image_and_text_once(posts, tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    images, texts = _CallCounter(model.image_encoder), _CallCounter(model.text_encoder)
    sample = posts[:20]
    shared = PostExample("repost", sample[0].text, sample[0].image_uri, None, 0, "train")
    sample = [*sample, shared]  # same picture and caption as post 0: no extra encoding
    first = encode_examples(model, sample, cache_dir=tmp_path, batch_size=8)
    distinct_texts = len({ex.text for ex in sample})
    assert images.rows == 20 and texts.rows == distinct_texts
    assert first.images_encoded == 20 and torch.equal(first.image[0], first.image[-1])

    second = encode_examples(model, sample, cache_dir=tmp_path, batch_size=8)
    assert images.rows == 20 and texts.rows == distinct_texts  # all read from disk
    assert second.images_encoded == 0 and second.texts_encoded == 0
    assert torch.equal(first.image, second.image) and torch.equal(first.text, second.text)


def test_a_changed_cache_shard_is_re_encoded_not_trusted(posts, tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    model = build_model(TINY).eval()
    first = encode_examples(model, posts[:6], cache_dir=tmp_path)
    [shard] = [p for p in tmp_path.rglob("*.safetensors") if "text" not in p.parent.name][:1]
    tensors = load_file(shard)
    tensors["features"][0] += 1.0  # what a flipped bit or an edit does to one vector
    save_file(tensors, str(shard), metadata={"sha256": "0" * 64})
    again = encode_examples(model, posts[:6], cache_dir=tmp_path)
    assert again.images_encoded + again.texts_encoded > 0  # that shard was re-encoded
    assert torch.equal(first.image, again.image) and torch.equal(first.text, again.text)
    assert "does not match its sha256" in caplog.text


def test_feature_cache_reads_only_the_rows_asked_for_across_many_shards(tmp_path, monkeypatch):
    """Keys spread over 7 shards come back with their own vectors, whatever the order; a
    damaged shard costs only its own keys."""
    from fnd_core.model.features import cache

    monkeypatch.setattr(cache, "SHARD_ROWS", 8)
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(50)]
    vectors = torch.randn(50, 12)
    cache.FeatureCache(tmp_path).put("bb", keys, vectors)
    shards = sorted((tmp_path / "bb").glob("*.safetensors"))
    assert len(shards) == 7
    wanted = [keys[i] for i in (49, 0, 17, 33, 8)] + ["f" * 64]
    got = cache.FeatureCache(tmp_path).get("bb", wanted)
    assert list(got) == wanted[:5]  # the unknown key is a miss
    for i in (49, 0, 17, 33, 8):
        assert torch.equal(got[keys[i]], vectors[i])
    from safetensors.torch import load_file

    lost = {bytes(row).hex() for row in load_file(shards[0])["keys"].numpy()}
    damaged = bytearray(shards[0].read_bytes())
    damaged[-1] ^= 0xFF
    shards[0].write_bytes(bytes(damaged))
    survived = cache.FeatureCache(tmp_path).get("bb", keys)
    assert set(survived) == set(keys) - lost and len(lost) in (2, 8)
    assert all(torch.equal(v, vectors[keys.index(k)]) for k, v in survived.items())


def test_feature_cache_misses_when_encoder_weights_change(posts, tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    encode_examples(model, posts[:5], cache_dir=tmp_path)
    with torch.no_grad():
        next(model.image_encoder.parameters()).add_(0.1)
    again = encode_examples(model, posts[:5], cache_dir=tmp_path)
    assert again.images_encoded == 5 and again.texts_encoded == 0


def test_bf16_and_fp32_features_are_cached_apart(posts, tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    fp32 = encode_examples(model, posts[:5], cache_dir=tmp_path, precision="fp32")
    bf16 = encode_examples(model, posts[:5], cache_dir=tmp_path, precision="bf16")
    assert (bf16.images_encoded, bf16.texts_encoded) == (5, fp32.texts_encoded)  # none reused
    assert sorted(p.name.rsplit("-", 1)[-1] for p in tmp_path.iterdir()).count("bf16") == 2
    assert torch.nn.functional.cosine_similarity(fp32.image, bf16.image).min() > 0.99
    with pytest.raises(ValueError, match="FND_INFERENCE_PRECISION"):
        encode_examples(model, posts[:5], precision="fp16")


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "auto"),
    [(False, False, "fp32"), (True, False, "bf16"), (False, True, "bf16"), (True, True, "bf16")],
)
def test_auto_precision_is_bf16_only_where_native(monkeypatch, avx512_bf16, amx, auto):
    """What the CPU reports decides ``auto``, whatever this machine's own CPU has."""
    from fnd_core.model.runtime import float_precision

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    cpu = torch.device("cpu")
    assert float_precision("auto", cpu) == auto
    assert float_precision("int8", cpu) == auto  # heads are fitted on the float path's features
    assert float_precision("fp32", cpu) == "fp32" and float_precision("bf16", cpu) == "bf16"


def test_decoding_is_inline_on_cpu_unless_workers_are_asked_for():
    from fnd_core.model.runtime import loader_workers

    cpu = torch.device("cpu")
    assert loader_workers(-1, cpu) == 0
    assert loader_workers(3, cpu) == 3


# training ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(posts, tmp_path_factory):
    cache = tmp_path_factory.mktemp("features")
    options = TrainOptions(**{**FAST.__dict__, "cache_dir": cache})
    return train(posts, TINY, epochs=25, seed=7, options=options), options


def test_tiny_training_learns_the_toy_task(trained):
    from sklearn.metrics import accuracy_score, roc_auc_score

    result, _ = trained
    assert result.metrics["test"]["accuracy"] >= 0.85, result.metrics["test"]
    assert result.metrics["val"]["roc_auc"] >= 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    # toy_posts: of every 6 posts, 1 test, 1 val, 4 train; the default policy keeps 0.5
    assert result.counts == {"train": 160, "val": 40, "test": 40}
    assert result.threshold == 0.5
    for name in ("val", "test"):  # the reports agree with scikit-learn on the same scores
        scores = result.scores[name]
        assert len(scores.y_true) == 40
        assert result.metrics[name]["accuracy"] == pytest.approx(
            accuracy_score(scores.y_true, (scores.p_fake >= 0.5).astype(int))
        )
        assert result.metrics[name]["roc_auc"] == pytest.approx(
            roc_auc_score(scores.y_true, scores.p_fake)
        )
    assert result.head_samples_per_s > 0
    json.dumps(result.metrics)


def test_training_is_deterministic_for_a_seed(posts, trained):
    first, options = trained
    again = train(posts, TINY, epochs=25, seed=7, options=options)
    assert [h["val_loss"] for h in again.history] == [h["val_loss"] for h in first.history]
    for (name, a), b in zip(first.model.state_dict().items(), again.model.state_dict().values(),
                            strict=True):  # fmt: skip
        assert torch.equal(a, b), name


def test_text_only_ablation_stays_near_chance(posts, trained):
    _, options = trained
    config = TINY.replace(modalities="text", fusion="concat")
    result = train(posts, config, epochs=25, seed=7, options=options)
    assert result.metrics["test"]["accuracy"] < 0.75  # captions alone do not give the label


def test_training_needs_both_classes_in_train_and_val(posts):
    only_real = [ex for ex in posts if ex.label == 0]
    with pytest.raises(ValueError, match="needs labelled posts of both classes"):
        train(only_real, TINY, epochs=1, seed=0)


def test_finetune_phase_updates_encoders_and_saves_them(posts, tmp_path):
    options = TrainOptions(**{**FAST.__dict__, "finetune": True, "finetune_epochs": 1})
    result = train(posts[:120], TINY, epochs=3, seed=1, options=options)
    phases = [h["phase"] for h in result.history]
    assert phases.count("finetune") == 1 and phases[0] == "head"
    saved = save_model(result.model, str(tmp_path / "m"), threshold=result.threshold)
    assert saved.weights_scope == "full"
    assert load_model(saved.uri, saved.sha256).threshold == result.threshold


# plots -------------------------------------------------------------------------------------
def test_plots_are_pngs(trained, tmp_path):
    result, _ = trained
    report = training_report(result)
    assert {"training_curves.png", "roc_test.png", "confusion_test.png"} <= set(report)
    assert all(png.startswith(b"\x89PNG") for png in report.values())
    assert roc_curve([1, 1], [0.2, 0.3]).startswith(b"\x89PNG")  # one class: still a figure
    assert confusion_matrix([[3, 1], [0, 4]]).startswith(b"\x89PNG")
    assert training_curves(result.history).startswith(b"\x89PNG")
    saved = save_model(result.model, str(tmp_path / "m"), threshold=0.5, plots=report)
    assert "plots/roc_test.png" in saved.files
