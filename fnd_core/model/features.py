"""Frozen-encoder features for posts, with a content-keyed cache on local disk.

Images are keyed by (backbone id, image sha256) and texts by (backbone id, sha256 of the
text), so an image shared by many posts is encoded once, and a second training run — or
scoring with the same frozen encoders — reuses every vector. The backbone id contains a
digest of the encoder weights, the input size and the preprocessing version, so a changed
encoder can never read stale features.

Cache layout: ``<cache_dir>/<backbone id>/<shard>.safetensors``, each shard holding
``keys`` (uint8, N x 32: the raw sha256 digests) and ``features`` (float32, N x D).
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fnd_core.model.config import DEFAULT_MAX_PIXELS
from fnd_core.model.examples import PostExample

if TYPE_CHECKING:
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

    def subset(self, rows: Sequence[int]) -> EncodedFeatures:
        import torch

        index = torch.as_tensor(list(rows), dtype=torch.long)
        return EncodedFeatures(
            image=None if self.image is None else self.image[index],
            text=None if self.text is None else self.text[index],
        )


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class FeatureCache:
    """Local folder of feature shards: only keys stay in memory, vectors are read per lookup.

    Memory stays flat with the cache's size: the index holds 40 bytes per key (the raw
    sha256 and where its row lies); a lookup reads just the rows asked for, through a
    memory map dropped afterwards. A shard's digest is checked the first time one of its
    rows is read; a shard that fails it is dropped from the index, so its rows are re-encoded.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._indexes: dict[str, _KeyIndex] = {}

    def _index(self, backbone_id: str) -> _KeyIndex:
        if backbone_id not in self._indexes:
            index = _KeyIndex()
            for shard in sorted((self.root / backbone_id).glob("*.safetensors")):
                index.add(shard)
            self._indexes[backbone_id] = index
        return self._indexes[backbone_id]

    def get(self, backbone_id: str, keys: Sequence[str]) -> dict[str, torch.Tensor]:
        """The cached vectors among ``keys`` (hex sha256 strings)."""
        import torch

        if not keys:
            return {}
        index = self._index(backbone_id)
        found: dict[str, torch.Tensor] = {}
        for shard, wanted in index.locate(keys).items():
            rows = shard.read_rows([row for _, row in wanted])
            if rows is None:  # failed its digest: forget it, its keys get re-encoded
                index.drop(shard)
                continue
            found.update(zip((k for k, _ in wanted), torch.from_numpy(rows), strict=True))
        return found

    def put(self, backbone_id: str, keys: Sequence[str], features: torch.Tensor) -> None:
        """Write new shards of at most ``SHARD_ROWS`` rows (atomically: temp file, rename)."""
        if not keys:
            return
        folder = self.root / backbone_id
        folder.mkdir(parents=True, exist_ok=True)
        index = self._index(backbone_id)
        for start in range(0, len(keys), SHARD_ROWS):
            part = slice(start, start + SHARD_ROWS)
            index.add(_write_shard(folder, keys[part], features[part]), verified=True)


SHARD_ROWS = 8192  # rows per shard file: a digest check reads one shard at a time


def _write_shard(folder: Path, keys: Sequence[str], features: torch.Tensor) -> Path:
    """Serialise in memory, then write through Python: a full disk raises ``OSError(ENOSPC)``
    (safetensors' own writer reports it as a generic error, which would look like the post's
    fault instead of the machine's)."""
    import torch
    from safetensors.torch import save

    from fnd_core.io import storage

    raw = np.frombuffer(b"".join(bytes.fromhex(k) for k in keys), dtype=np.uint8)
    tensors = {
        "keys": torch.from_numpy(raw.reshape(len(keys), 32).copy()),
        "features": features.detach().to("cpu", torch.float32).contiguous(),
    }
    name = hashlib.sha256(raw.tobytes()).hexdigest()[:24]
    path = folder / f"{name}.safetensors"
    storage.write_bytes(str(path), save(tensors, metadata={"sha256": _shard_digest(tensors)}))
    return path


class _Shard:
    """One shard file: its header read, its rows read on demand, its digest checked once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        self._start = 8 + length
        self._expected = (header.get("__metadata__") or {}).get("sha256")
        self._keys, self._features = header["keys"], header["features"]
        if self._keys["dtype"] != "U8" or self._features["dtype"] != "F32":
            raise ValueError(f"unexpected dtypes {self._keys['dtype']}, {self._features['dtype']}")
        self.verified = False

    def keys(self) -> np.ndarray:
        """The shard's keys as 32-byte strings (``S32``)."""
        start, end = self._keys["data_offsets"]
        with self.path.open("rb") as f:
            f.seek(self._start + start)
            return np.frombuffer(f.read(end - start), dtype="S32")

    def read_rows(self, rows: Sequence[int]) -> np.ndarray | None:
        """The feature rows asked for (a copy); None if the shard fails its digest."""
        if not self.verified:
            self.verified = self._digest_ok()
            if not self.verified:
                return None
        n, dim = self._features["shape"]
        offset = self._start + self._features["data_offsets"][0]
        mapped = np.memmap(self.path, dtype=np.float32, mode="r", offset=offset, shape=(n, dim))
        try:
            return np.array(mapped[np.asarray(rows)])
        finally:
            del mapped  # unmapped now: rows read so far do not stay resident

    def _digest_ok(self) -> bool:
        """Whether the keys and features hash to the digest written with them (streamed)."""
        digest = hashlib.sha256()
        with self.path.open("rb") as f:
            for region in (self._keys, self._features):
                start, end = region["data_offsets"]
                f.seek(self._start + start)
                left = end - start
                while left > 0 and (block := f.read(min(left, 1 << 20))):
                    digest.update(block)
                    left -= len(block)
        if self._expected != digest.hexdigest():
            log.warning(
                "feature cache shard %s %s: ignored, its features are re-encoded",
                self.path, "has no digest (written before fnd checked them)"
                if self._expected is None else "does not match its sha256",
            )  # fmt: skip
            return False
        return True


class _KeyIndex:
    """Sorted raw keys of a backbone's shards -> (shard, row); 40 bytes a key."""

    def __init__(self) -> None:
        self._shards: list[_Shard | None] = []
        self._keys = np.zeros(0, dtype="S32")
        self._where = np.zeros(0, dtype=np.int64)  # shard number << 32 | row

    def add(self, path: Path, *, verified: bool = False) -> None:
        try:
            shard = _Shard(path)
            keys = shard.keys()
        except Exception as exc:  # noqa: BLE001 — an unreadable shard is one to re-encode
            log.warning("feature cache shard %s unreadable (%s): ignored, re-encoded", path, exc)
            return
        shard.verified = verified
        number = len(self._shards)
        self._shards.append(shard)
        where = (number << 32) | np.arange(len(keys), dtype=np.int64)
        all_keys = np.concatenate([self._keys, keys])
        order = np.argsort(all_keys, kind="stable")
        self._keys, self._where = all_keys[order], np.concatenate([self._where, where])[order]

    def locate(self, keys: Sequence[str]) -> dict[_Shard, list[tuple[str, int]]]:
        """The keys found, grouped by shard, each with its row."""
        if not len(self._keys):
            return {}
        wanted = np.array([bytes.fromhex(k) for k in keys], dtype="S32")
        pos = np.minimum(np.searchsorted(self._keys, wanted), len(self._keys) - 1)
        hit = self._keys[pos] == wanted
        grouped: dict[_Shard, list[tuple[str, int]]] = {}
        for key, where in zip(np.asarray(keys)[hit], self._where[pos[hit]], strict=True):
            shard = self._shards[int(where) >> 32]
            if shard is not None:
                grouped.setdefault(shard, []).append((str(key), int(where) & 0xFFFFFFFF))
        return grouped

    def drop(self, shard: _Shard) -> None:
        self._shards[self._shards.index(shard)] = None


def _shard_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over a shard's keys and feature bytes, stored in its safetensors metadata."""
    digest = hashlib.sha256(tensors["keys"].numpy().tobytes())
    digest.update(tensors["features"].numpy().tobytes())
    return digest.hexdigest()


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
        precision: ``fp32``, ``bf16`` (autocast) or ``auto``: bf16 where the device has
            native bf16 (CUDA, AVX512-BF16/AMX CPUs), measured 1.6x faster encoding than fp32
            on such a CPU with no label changed (README, Benchmarks). bf16 features are cached
            apart from fp32 ones.
    """
    if not examples:
        return _empty_features(model)
    from fnd_core.model.runtime import cpu_threads as limit_threads
    from fnd_core.model.runtime import loader_workers, module_device, resolve_precision

    device = module_device(model)
    precision = resolve_precision(precision, device)
    num_workers = loader_workers(num_workers, device)
    with limit_threads(cpu_threads or 1_000_000, device):
        if cache is None and cache_dir is not None:
            cache = FeatureCache(cache_dir)
        return _encode(
            model, examples, cache, batch_size, text_batch_size, num_workers, max_pixels,
            storage_options, precision,
        )  # fmt: skip


def _encode(
    model: FakeNewsModel,
    examples: Sequence[PostExample],
    cache: FeatureCache | None,
    batch_size: int,
    text_batch_size: int,
    num_workers: int,
    max_pixels: int,
    storage_options: Mapping[str, Any] | None,
    precision: str,
) -> EncodedFeatures:
    config = model.config
    suffix = "" if precision == "fp32" else f"-{precision}"  # cache ids: fp32 ones predate this
    image = text = None
    n_images = n_texts = 0
    was_training = model.training
    model.eval()
    try:
        if config.uses_image:
            keys = [_image_key(ex, storage_options) for ex in examples]
            uris = {k: ex.image_uri for k, ex in zip(keys, examples, strict=True)}
            backbone_id = model.image_encoder.backbone_id(config.image_size) + suffix

            def encode_images(missing: list[str]) -> torch.Tensor:
                return _run_image_encoder(
                    model, [uris[k] for k in missing], batch_size, num_workers, max_pixels,
                    storage_options, precision,
                )  # fmt: skip

            image, n_images = _lookup_or_encode(keys, backbone_id, cache, encode_images, "images")
        if config.uses_text:
            keys = [text_key(ex.text) for ex in examples]
            texts = {k: ex.text for k, ex in zip(keys, examples, strict=True)}
            backbone_id = model.text_encoder.backbone_id(config.max_tokens) + suffix

            def encode_texts(missing: list[str]) -> torch.Tensor:
                return _run_text_encoder(
                    model, [texts[k] for k in missing], text_batch_size, precision
                )

            text, n_texts = _lookup_or_encode(keys, backbone_id, cache, encode_texts, "texts")
    finally:
        model.train(was_training)
    return EncodedFeatures(image=image, text=text, images_encoded=n_images, texts_encoded=n_texts)


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
    from fnd_core.model.preprocess import read_bytes

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

    from fnd_core.model.preprocess import PostDataset, make_loader
    from fnd_core.model.runtime import inference_autocast, module_device

    device = module_device(model)
    dataset = PostDataset(
        image_uris=uris,
        image_size=model.config.image_size,
        max_pixels=max_pixels,
        storage_options=storage_options,
    )
    loader = make_loader(dataset, batch_size=batch_size, num_workers=num_workers)
    chunks, done = [], 0
    started = last = time.perf_counter()
    with torch.inference_mode(), inference_autocast(device, precision):
        for batch in loader:
            pixels = batch["pixels"].to(device, non_blocking=True)
            chunks.append(model.encode_images(pixels).float().cpu())
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
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(0)
    started = last = time.perf_counter()
    with torch.inference_mode(), inference_autocast(device, precision):
        for lo in range(0, len(order), batch_size):
            rows = order[lo : lo + batch_size]
            tokens = model.tokenize([texts[i] for i in rows])
            tokens = {k: v.to(device) for k, v in tokens.items()}
            features = model.encode_texts(**tokens).float().cpu()
            if out.numel() == 0:
                out = torch.empty(len(texts), features.shape[1])
            out[torch.as_tensor(rows)] = features
            last = _progress(lo + len(rows), len(texts), started, last, "texts")
    return out


def batched_rows(n: int, batch_size: int) -> Iterator[slice]:
    for lo in range(0, n, batch_size):
        yield slice(lo, min(lo + batch_size, n))


def predict_proba(
    model: FakeNewsModel, examples: Sequence[PostExample], **encode_kwargs: Any
) -> np.ndarray:
    """P(fake) for each example: cached encoder features, then the head (what scoring runs).

    ``encode_kwargs`` go to :func:`encode_examples`.
    """
    return head_proba(model, encode_examples(model, examples, **encode_kwargs))


def encode_options(settings: Settings) -> dict[str, Any]:
    """:func:`encode_examples` arguments from fnd's settings (cache, batching, precision)."""
    return {
        "cache_dir": str(settings.home / "feature_cache"),
        "batch_size": settings.batch_size,
        "num_workers": settings.num_workers,
        "max_pixels": settings.max_image_pixels,
        "cpu_threads": settings.cpu_threads or None,
        "precision": settings.inference_precision,
    }


def head_proba(
    model: FakeNewsModel, features: EncodedFeatures, batch_size: int = 1024
) -> np.ndarray:
    """Sigmoid of the head's logits over precomputed features, in eval mode."""
    import torch

    from fnd_core.model.runtime import module_device

    n = len(features.image if features.image is not None else features.text)
    device = module_device(model)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for rows in batched_rows(n, batch_size):
                image = features.image[rows].to(device) if features.image is not None else None
                text = features.text[rows].to(device) if features.text is not None else None
                out.append(torch.sigmoid(model.head_forward(image, text).float()).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)
