"""int8 encoders (ONNX Runtime): built once per backbone, verified, rebuilt; auto's measurement."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fnd_core.model.artifacts import LoadedModel
from fnd_core.model.config import ModelConfig
from fnd_core.model.encoders import int8
from fnd_core.model.examples import PostExample
from fnd_core.model.features.encoding import encode_examples
from fnd_core.model.network import build_model
from fnd_core.pipeline import encoder_precision


@pytest.fixture(scope="module")
def model():
    return build_model(ModelConfig(preset="tiny")).eval().optimise_for_inference()


@pytest.fixture
def posts(tmp_path: Path) -> list[PostExample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(24):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
        out.append(PostExample(f"p{i}", f"post number {i} " * (1 + i % 5), str(path), None, i % 2))
    return out


def calibration(posts: list[PostExample]) -> list[int8.CalibrationPicture]:
    return [int8.CalibrationPicture(p.image_uri, f"{i:064x}") for i, p in enumerate(posts)]


def build_image(model, store: str, posts) -> int8.Int8Encoder:
    encoder = model.image_encoder
    return int8.load_or_build(
        encoder, "image", encoder.backbone_id(model.config.image_size), store,
        calibration=calibration(posts[:8]), image_size=model.config.image_size,
    )  # fmt: skip


def test_built_once_then_loaded_and_rebuilt_when_altered(model, posts, tmp_path, caplog):
    store = str(tmp_path / "store")
    first = build_image(model, store, posts)
    folder = Path(int8.folder_uri(store, first.backbone_id))
    record = json.loads((folder / "record.json").read_text())
    assert record["sha256"] == first.record["sha256"] and len(record["calibration"]) == 8
    assert build_image(model, store, posts).record == record  # loaded, not rebuilt
    pixels = torch.randint(0, 255, (4, 3, model.config.image_size, model.config.image_size),
                           dtype=torch.uint8)  # fmt: skip
    with torch.inference_mode():
        cosine = torch.nn.functional.cosine_similarity(first(pixels), model.encode_images(pixels))
    assert cosine.min() > 0.9

    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger=int8.__name__):
        rebuilt = build_image(model, store, posts)
    assert "does not match its recorded sha256" in caplog.text
    assert rebuilt.record["sha256"] == json.loads((folder / "record.json").read_text())["sha256"]
    assert (
        hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest() == rebuilt.record["sha256"]
    )


def test_each_weight_width_is_built_and_kept_apart_and_this_cpu_chooses(model, posts, tmp_path):
    """8-bit weights for CPUs with VNNI, 7-bit for those without: one store can serve both, and
    a record of one width is never loaded as the other."""
    text = model.text_encoder
    backbone = text.backbone_id(model.config.max_tokens)
    store = str(tmp_path / "store")
    built = {bits: int8.load_or_build(text, "text", backbone, store, bits=bits) for bits in (8, 7)}
    assert {b: e.record["weight_bits"] for b, e in built.items()} == {8: 8, 7: 7}
    assert built[8].record["sha256"] != built[7].record["sha256"]
    for bits in (8, 7):
        folder = Path(int8.folder_uri(store, backbone, bits))
        assert folder.name == f"w{bits}"
        assert json.loads((folder / "record.json").read_text()) == built[bits].record
    # a 7-bit record copied where the 8-bit one belongs is rebuilt, not served
    w8, w7 = (Path(int8.folder_uri(store, backbone, b)) for b in (8, 7))
    for name in ("record.json", "model.onnx"):
        (w8 / name).write_bytes((w7 / name).read_bytes())
    assert int8.load_or_build(text, "text", backbone, store, bits=8).record["weight_bits"] == 8
    # the width this CPU needs, as /proc/cpuinfo says
    flags = {f for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("flags") for f in line.split()}  # fmt: skip
    assert int8.weight_bits() == (8 if flags & int8.VNNI_FLAGS else 7)
    assert encoder_precision.cpu_tag().endswith(f"-int8w{int8.weight_bits()}")


def test_an_image_encoder_needs_calibration_pictures(model, posts, tmp_path):
    encoder = model.image_encoder
    with pytest.raises(int8.Int8UnavailableError, match="calibration pictures"):
        int8.load_or_build(encoder, "image", "x", str(tmp_path), calibration=calibration(posts[:3]))


def test_int8_features_are_cached_apart_and_an_unprepared_model_is_refused(model, posts, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="int8 encoders were not prepared"):
        encode_examples(model, posts, cache_dir=cache, precision="int8")
    store = str(tmp_path / "store")
    model.int8_encoders = {"image": build_image(model, store, posts)}
    text = model.text_encoder
    model.int8_encoders["text"] = int8.load_or_build(
        text, "text", text.backbone_id(model.config.max_tokens), store
    )
    model.encoder_precisions = {"image": "int8", "text": "fp32"}
    try:
        mixed = encode_examples(model, posts, cache_dir=cache, precision="auto")
        floats = encode_examples(model, posts, cache_dir=cache, precision="fp32")
    finally:
        model.int8_encoders, model.encoder_precisions = {}, None
    assert mixed.images_encoded == floats.images_encoded == 24  # no int8 row read as float
    assert floats.texts_encoded == 0 and torch.equal(mixed.text, floats.text)
    assert not torch.equal(mixed.image, floats.image)
    ids = sorted(p.name for p in cache.iterdir())
    assert len(ids) == 3 and sum("-int8-" in i for i in ids) == 1


@pytest.mark.parametrize(("speed_up", "same", "expected"), [
    (0.0, 0.0, "int8"),  # always faster, any labels: int8 kept
    (0.0, 1.01, "fp32"),  # faster, but the labels cannot hold: float
    (1e9, 0.0, "fp32"),  # never fast enough: float
])  # fmt: skip
def test_auto_keeps_int8_only_where_faster_and_the_labels_hold(
    model, posts, tmp_path, monkeypatch, speed_up, same, expected
):
    store = str(tmp_path / "store")
    model.int8_encoders = {"image": build_image(model, store, posts)}
    text = model.text_encoder
    model.int8_encoders["text"] = int8.load_or_build(
        text, "text", text.backbone_id(model.config.max_tokens), store
    )
    monkeypatch.setattr(encoder_precision, "MIN_SPEED_UP", speed_up)
    monkeypatch.setattr(encoder_precision, "MIN_SAME_LABELS", same)
    loaded = LoadedModel(model, model.config, threshold=0.5, metrics=None, uri="", sha256="")
    try:
        choice = encoder_precision.measure(loaded, posts, "fp32")
    finally:
        model.int8_encoders = {}
    assert choice.chosen == {"image": expected, "text": expected}
    assert choice.check_posts == 24 and 0 <= choice.same_labels <= 1
    assert all(s["float"] > 0 and s["int8"] > 0 for s in choice.posts_per_s.values())


def test_expected_same_labels_applies_every_shift_to_every_quantile():
    # shift +0.1 moves no quantile across 0; shift -0.1 moves 0.05 below it: 5 of 6 hold
    share = encoder_precision._expected_same_labels(np.array([0.1, -0.1]), 0.0, [-1.0, 0.05, 1.0])
    assert share == pytest.approx(5 / 6, abs=1e-4)
    assert encoder_precision._expected_same_labels(np.array([0.1]), 0.0, None) is None


def test_labels_are_checked_where_new_topics_score_near_the_threshold(
    model, posts, tmp_path, monkeypatch, caplog
):
    """New topics' scores on both sides of the cut, a hair apart: any int8 shift flips one of
    the two, so about half the labels would change there, however well the check posts hold."""
    store = str(tmp_path / "store")
    model.int8_encoders = {"image": build_image(model, store, posts)}
    text = model.text_encoder
    model.int8_encoders["text"] = int8.load_or_build(
        text, "text", text.backbone_id(model.config.max_tokens), store
    )
    monkeypatch.setattr(encoder_precision, "MIN_SPEED_UP", 0.0)
    loaded = LoadedModel(model, model.config, threshold=0.5, metrics=None, uri="", sha256="")
    near = [-1e-9, 0.0]
    try:
        monkeypatch.setattr(encoder_precision, "MIN_SAME_LABELS", 0.6)
        with caplog.at_level(logging.WARNING, logger=encoder_precision.__name__):
            refused = encoder_precision.measure(loaded, posts, "fp32", new_topic_logits=near)
        monkeypatch.setattr(encoder_precision, "MIN_SAME_LABELS", 0.0)
        kept = encoder_precision.measure(loaded, posts, "fp32", new_topic_logits=near)
    finally:
        model.int8_encoders = {}
    assert refused.chosen == {"image": "fp32", "text": "fp32"}
    assert refused.new_topic_same_labels is not None and refused.new_topic_same_labels <= 0.55
    tried = [r.getMessage() for r in caplog.records if "not chosen" in r.getMessage()]
    assert [m.split()[2] for m in tried] == ["image+text", "image"]  # all int8, then image only
    assert kept.chosen == {"image": "int8", "text": "int8"}
    assert kept.new_topic_same_labels is not None and kept.new_topic_same_labels <= 0.55


def test_a_recorded_choice_is_served_with_one_copy_of_each_encoder(posts, tmp_path):
    """auto reads its record (image int8, text float): only the image encoder gets an int8
    session, and only it gives up its float weights; the text encoder still runs in float."""
    import dataclasses
    from types import SimpleNamespace

    from fnd_core.settings import Settings

    settings = Settings(home=tmp_path / "home")
    fresh = build_model(ModelConfig(preset="tiny")).eval().optimise_for_inference()
    shas = {"image": build_image(fresh, settings.store, posts).record["sha256"]}
    text = fresh.text_encoder
    shas["text"] = int8.load_or_build(
        text, "text", text.backbone_id(fresh.config.max_tokens), settings.store
    ).record["sha256"]
    version = SimpleNamespace(version="v1", metrics={})
    record = encoder_precision.PrecisionChoice(
        version="v1", cpu=encoder_precision.cpu_tag(), float_precision="fp32",
        chosen={"image": "int8", "text": "fp32"}, posts_per_s={}, same_labels=1.0,
        largest_delta_p=0.0, check_posts=0, int8_sha256=shas, measured_at="",
        check=encoder_precision.CHECK,
    )  # fmt: skip
    folder = Path(settings.store) / "encoders-int8" / "choices"
    folder.mkdir(parents=True)
    path = folder / f"v1-{encoder_precision.cpu_tag()}.json"
    path.write_text(json.dumps(dataclasses.asdict(record)))
    loaded = LoadedModel(fresh, fresh.config, threshold=0.5, metrics=None, uri="", sha256="")
    chosen = encoder_precision._auto(loaded, version, settings, posts)
    assert chosen == {"image": "int8", "text": "fp32"}
    assert set(fresh.int8_encoders) == {"image"} and fresh.released_encoders == {"image"}
    tokens = fresh.tokenize(["still runs in float"])
    assert fresh.encode_texts(tokens["input_ids"], tokens["attention_mask"]).shape[0] == 1
    with pytest.raises(RuntimeError, match="released for its int8 copy"):
        fresh.encode_images(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    fresh.prepared_for = "auto"  # as prepare() leaves it; another precision needs a reload
    fp32 = dataclasses.replace(settings, inference_precision="fp32")
    with pytest.raises(ValueError, match="load it again to score in fp32"):
        encoder_precision.prepare(loaded, version, fp32, None)
    # a record of the previous check, or naming other encoders or precisions, is measured again
    assert encoder_precision._recorded_choice(str(path), fresh, settings) == record
    for altered in (
        {"check": 1},
        {"chosen": {"image": "int8", "text": "fp32", "audio": "int8"}},
        {"chosen": {"image": "int8", "text": "fp16"}},
        {"chosen": ["image", "text"]},
        {"chosen": {"image": ["int8"], "text": "fp32"}, "float_precision": ["fp32"]},
        {"float_precision": "int4", "chosen": {"image": "int4", "text": "int4"}},
    ):
        path.write_text(json.dumps(dataclasses.asdict(record) | altered))
        assert encoder_precision._recorded_choice(str(path), fresh, settings) is None, altered
