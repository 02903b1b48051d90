"""The on-disk feature cache: frozen-encoder vectors in content-keyed safetensors shards.

Images are keyed by (backbone id, image sha256) and texts by (backbone id, sha256 of the
text), so an image shared by many posts is encoded once, and a second training run — or
scoring with the same frozen encoders — reuses every vector. The backbone id contains a
digest of the encoder weights, the input size and the preprocessing version, so a changed
encoder can never read stale features.

Cache layout: ``<cache_dir>/<backbone id>/<shard>.safetensors``, each shard holding
``keys`` (uint8, N x 32: the raw sha256 digests) and ``features`` (float32, N x D).

Its own module because it knows nothing of models: the encoding loops
(:mod:`fnd_core.model.features.encoding`) ask it for keys and hand it new vectors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


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
