"""Encoding posts with the model's frozen encoders, each distinct image and text at most once.

The loops that turn posts into backbone features: decode and batch images (DataLoader workers),
batch texts by length, look every key up in the feature cache
(:mod:`fnd_core.model.features.cache`) first and store what had to be encoded. Training,
cross-validation, scoring and the drift checks all encode through :func:`encode_examples`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fnd_core.model.config import DEFAULT_MAX_PIXELS
from fnd_core.model.examples import PostExample
from fnd_core.model.features.cache import FeatureCache

if TYPE_CHECKING:
    import numpy as np
    import torch

    from fnd_core.model.network import FakeNewsModel
    from fnd_core.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class EncodedFeatures:
    """Backbone features aligned with the examples given (row i = example i)."""

    image: torch.Tensor | None
    text: torch.Tensor | None
    images_encoded: int = 0  # cache misses actually run through the encoder
    texts_encoded: int = 0

    def concat(self, other: EncodedFeatures) -> EncodedFeatures:
        """These rows, then ``other``'s (a modality either lacks is None)."""
        import torch

        def join(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
            return None if a is None or b is None else torch.cat([a, b])

        return EncodedFeatures(
            image=join(self.image, other.image), text=join(self.text, other.text)
        )

    def subset(self, rows: Sequence[int] | np.ndarray) -> EncodedFeatures:
        import torch

        index = torch.as_tensor(list(rows), dtype=torch.long)
        return EncodedFeatures(
            image=None if self.image is None else self.image[index],
            text=None if self.text is None else self.text[index],
        )


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def encode_examples(
    model: FakeNewsModel,
    examples: Sequence[PostExample],
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 4,
    text_batch_size: int = 32,
    num_workers: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    storage_options: Mapping[str, Any] | None = None,
    cpu_threads: int | None = None,
    cache: FeatureCache | None = None,
    precision: str = "auto",
) -> EncodedFeatures:
    """Backbone features for ``examples`` with the model's (frozen) encoders.

    Runs on the model's device under ``torch.inference_mode()``, in ``precision``.
    Each distinct image and text is encoded at most once per call, and not at all when
    ``cache_dir`` already holds it.

    Args:
        model: the model whose encoders to run; put it on its device first.
        examples: posts to encode; the result's rows follow their order.
        cache_dir: local folder for the feature cache; ``None`` disables it.
        batch_size: image batch size. On a 2-core CPU small batches are fastest (measured
            with EfficientNet-Lite0 at 224 px: 20 img/s at 1-4, 14 at 16); use more on a GPU.
        text_batch_size: text batch size (MiniLM: 48 text/s at 1, 88 at 16 on one thread).
        num_workers: DataLoader processes decoding images (-1: auto, see
            :func:`~fnd_core.model.runtime.loader_workers`).
        max_pixels: images above this many pixels are refused.
        storage_options: fsspec options for reading ``image_uri`` (e.g. a GCS endpoint).
        cpu_threads: cap torch's CPU threads while encoding. On a CPU shared with other
            jobs, 1 thread was up to 10x faster than 2 here (OpenMP threads spin-waiting).
        cache: an open :class:`FeatureCache` to use instead of ``cache_dir`` (a caller
            encoding page after page keeps one, so the cache is read from disk only once).
        precision: ``fp32``, ``bf16`` (autocast), ``int8`` or ``auto``: bf16 where the
            device has native bf16 (CUDA, AVX512-BF16/AMX CPUs), measured 1.6x faster encoding
            than fp32 on such a CPU with no label changed (README, Benchmarks). ``int8`` runs
            the ONNX Runtime encoders :func:`fnd_core.pipeline.encoder_precision.prepare`
            attached to the model; for a prepared model, ``auto`` runs what it chose for each
            encoder. Each precision's features are cached apart.
    """
    if not examples:
        return _empty_features(model)
    from fnd_core.model.runtime import cpu_threads as limit_threads
    from fnd_core.model.runtime import loader_workers, module_device

    device = module_device(model)
    precisions = encoder_precisions(model, precision)
    num_workers = loader_workers(num_workers, device)
    with limit_threads(cpu_threads or 1_000_000, device):
        if cache is None and cache_dir is not None:
            cache = FeatureCache(cache_dir)
        how = _Batching(
            batch_size, text_batch_size, num_workers, max_pixels, storage_options, precisions
        )
        return _encode(model, examples, cache, how)


def encoder_precisions(model: FakeNewsModel, precision: str) -> dict[str, str]:
    """What each encoder runs in (``image``/``text`` -> ``fp32`` | ``bf16`` | ``int8``).

    A model prepared for scoring (``model.encoder_precisions``) answers ``auto`` and ``int8``
    itself; otherwise ``int8`` is refused and ``auto`` means the float path of the device.
    """
    from fnd_core.model.runtime import float_precision, module_device

    chosen = getattr(model, "encoder_precisions", None)
    if precision in ("auto", "int8") and chosen:
        return dict(chosen)
    if precision == "int8":
        raise ValueError(
            "FND_INFERENCE_PRECISION=int8, but this model's int8 encoders were not prepared "
            "(fnd_core.pipeline.encoder_precision.prepare does it when scoring loads a model); "
            "use auto, fp32 or bf16 here"
        )
    resolved = float_precision(precision, module_device(model))
    return {"image": resolved, "text": resolved}


@dataclass(frozen=True)
class _Batching:
    """How :func:`encode_examples` reads and batches posts (its arguments, resolved)."""

    batch_size: int
    text_batch_size: int
    num_workers: int
    max_pixels: int
    storage_options: Mapping[str, Any] | None
    precisions: Mapping[str, str]  # encoder kind -> fp32 | bf16 | int8

    def cache_id(self, model: FakeNewsModel, kind: str, float_id: str) -> str:
        """Feature-cache id of ``kind``'s features at its precision (fp32 ids predate this)."""
        precision = self.precisions[kind]
        if precision == "int8":
            return model.int8_encoders[kind].cache_id
        return float_id if precision == "fp32" else f"{float_id}-{precision}"


def _encode(
    model: FakeNewsModel,
    examples: Sequence[PostExample],
    cache: FeatureCache | None,
    how: _Batching,
) -> EncodedFeatures:
    config = model.config
    image = text = None
    n_images = n_texts = 0
    was_training = model.training
    model.eval()
    try:
        if config.uses_image:
            image, n_images = _image_features(model, examples, cache, how)
        if config.uses_text:
            text, n_texts = _text_features(model, examples, cache, how)
    finally:
        model.train(was_training)
    return EncodedFeatures(image=image, text=text, images_encoded=n_images, texts_encoded=n_texts)


def _image_features(
    model: FakeNewsModel,
    examples: Sequence[PostExample],
    cache: FeatureCache | None,
    how: _Batching,
) -> tuple[torch.Tensor, int]:
    """Image rows (keyed by the image's sha256) and how many were encoded, not read."""
    keys = [_image_key(ex, how.storage_options) for ex in examples]
    uris = {k: ex.image_uri for k, ex in zip(keys, examples, strict=True)}
    if model.image_encoder is None:
        raise ValueError(f"this model has no image encoder (modalities={model.config.modalities})")
    float_id = model.image_encoder.backbone_id(model.config.image_size)
    backbone_id = how.cache_id(model, "image", float_id)

    def encode_images(missing: list[str]) -> torch.Tensor:
        return _run_image_encoder(
            model, [uris[k] for k in missing], how.batch_size, how.num_workers, how.max_pixels,
            how.storage_options, how.precisions["image"],
        )  # fmt: skip

    return _lookup_or_encode(keys, backbone_id, cache, encode_images, "images")


def _text_features(
    model: FakeNewsModel,
    examples: Sequence[PostExample],
    cache: FeatureCache | None,
    how: _Batching,
) -> tuple[torch.Tensor, int]:
    """Text rows (keyed by the text's sha256) and how many were encoded, not read."""
    keys = [text_key(ex.text) for ex in examples]
    texts = {k: ex.text for k, ex in zip(keys, examples, strict=True)}
    if model.text_encoder is None:
        raise ValueError(f"this model has no text encoder (modalities={model.config.modalities})")
    float_id = model.text_encoder.backbone_id(model.config.max_tokens)
    backbone_id = how.cache_id(model, "text", float_id)

    def encode_texts(missing: list[str]) -> torch.Tensor:
        return _run_text_encoder(
            model, [texts[k] for k in missing], how.text_batch_size, how.precisions["text"]
        )

    return _lookup_or_encode(keys, backbone_id, cache, encode_texts, "texts")


def _empty_features(model: FakeNewsModel) -> EncodedFeatures:
    import torch

    return EncodedFeatures(
        image=torch.zeros(0, model.image_dim) if model.image_dim else None,
        text=torch.zeros(0, model.text_dim) if model.text_dim else None,
    )


def _image_key(example: PostExample, storage_options: Mapping[str, Any] | None) -> str:
    """The recorded sha256, or one computed from the bytes (ingest normally records it)."""
    if example.image_sha256:
        return example.image_sha256.lower()
    from fnd_core.model.encoders.preprocess import read_bytes

    return hashlib.sha256(read_bytes(example.image_uri, storage_options)).hexdigest()


def _lookup_or_encode(
    keys: list[str],
    backbone_id: str,
    cache: FeatureCache | None,
    encode: Callable[[list[str]], torch.Tensor],
    what: str,
) -> tuple[torch.Tensor, int]:
    """Rows for ``keys``: cached ones read, distinct missing ones encoded (and cached)."""
    import torch

    unique = list(dict.fromkeys(keys))
    found = cache.get(backbone_id, unique) if cache is not None else {}
    missing = [k for k in unique if k not in found]
    if missing:
        started = time.perf_counter()
        features = encode(missing)
        elapsed = time.perf_counter() - started
        log.info(
            "encoded %d %s with %s in %.1f s (%.1f %s/s); %d from cache",
            len(missing), what, backbone_id, elapsed, len(missing) / max(elapsed, 1e-9), what,
            len(found),
        )  # fmt: skip
        found.update(zip(missing, features, strict=True))
        if cache is not None:
            cache.put(backbone_id, missing, features)
    else:
        log.info(
            "all %d distinct %s read from the feature cache (%s)", len(unique), what, backbone_id
        )
    return torch.stack([found[k] for k in keys]), len(missing)


def _progress(done: int, total: int, started: float, last: float, what: str) -> float:
    """Log progress at most every 10 s; returns the time of the last log line."""
    now = time.perf_counter()
    if now - last >= 10.0:
        rate = done / max(now - started, 1e-9)
        log.info("encoding %s: %d/%d (%.1f/s)", what, done, total, rate)
        return now
    return last


def _run_image_encoder(
    model: FakeNewsModel,
    uris: list[str],
    batch_size: int,
    num_workers: int,
    max_pixels: int,
    storage_options: Mapping[str, Any] | None,
    precision: str,
) -> torch.Tensor:
    import torch

    from fnd_core.model.encoders.preprocess import PostDataset, make_loader
    from fnd_core.model.runtime import inference_autocast, module_device

    device = module_device(model)
    dataset = PostDataset(
        image_uris=uris,
        image_size=model.config.image_size,
        max_pixels=max_pixels,
        storage_options=storage_options,
    )
    loader = make_loader(dataset, batch_size=batch_size, num_workers=num_workers)
    encode = model.int8_encoders["image"] if precision == "int8" else model.encode_images
    chunks, done = [], 0
    started = last = time.perf_counter()
    with torch.inference_mode(), inference_autocast(device, precision):
        for batch in loader:
            pixels = batch["pixels"].to(device, non_blocking=True)
            chunks.append(encode(pixels).float().cpu())
            done += len(pixels)
            last = _progress(done, len(uris), started, last, "images")
    return torch.cat(chunks)


def _run_text_encoder(
    model: FakeNewsModel, texts: list[str], batch_size: int, precision: str
) -> torch.Tensor:
    """Texts sorted by length so each batch pads little; rows returned in input order."""
    import torch

    from fnd_core.model.runtime import inference_autocast, module_device

    device = module_device(model)
    int8 = model.int8_encoders["text"] if precision == "int8" else None
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(0)
    started = last = time.perf_counter()
    with torch.inference_mode(), inference_autocast(device, precision):
        for lo in range(0, len(order), batch_size):
            rows = order[lo : lo + batch_size]
            tokens = model.tokenize([texts[i] for i in rows])
            if int8 is not None:
                features = int8(tokens["input_ids"], tokens["attention_mask"])
            else:
                tokens = {k: v.to(device) for k, v in tokens.items()}
                features = model.encode_texts(**tokens).float().cpu()
            if out.numel() == 0:
                out = torch.empty(len(texts), features.shape[1])
            out[torch.as_tensor(rows)] = features
            last = _progress(lo + len(rows), len(texts), started, last, "texts")
    return out


def encode_options(settings: Settings, *, float_path: bool = False) -> dict[str, Any]:
    """:func:`encode_examples` arguments from fnd's settings (cache, batching, precision).

    ``float_path``: torch's fastest float path whatever ``FND_INFERENCE_PRECISION`` says
    (what training encoded in, so its cached features are reused).
    """
    precision = settings.inference_precision
    if float_path and precision in ("auto", "int8"):
        import torch

        from fnd_core.model.runtime import float_precision

        precision = float_precision(precision, torch.device("cpu"))
    return {
        "cache_dir": str(settings.home / "feature_cache"),
        "batch_size": settings.batch_size,
        "num_workers": settings.num_workers,
        "max_pixels": settings.max_image_pixels,
        "cpu_threads": settings.cpu_threads or None,
        "precision": precision,
    }
