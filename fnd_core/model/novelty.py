"""Novelty: how far a post lies from the topics a model learnt, as a percentile.

A verdict made far from anything the model saw in training (the posts of a brand-new event) is
the verdict to distrust: on the MediaEval dev tweets the models that scored well within their
training events fell to a coin, or below, on new ones. Novelty makes that visible per post.

How: each training topic (:mod:`fnd_core.model.splits.topics`: the ``event`` field, else
discovered) gets a centroid in the space the model reads. A post's distance is its cosine
distance to the nearest centroid; its **novelty** is the percentile of that distance among the
training posts' own distances, each measured to the topics without the post itself (its own
topic's centroid left-one-out): 50 is as typical as a training post, 99 farther than 99 % of
them. A post of a topic the model learnt lands anywhere in 0–100; one of a new event lands
high.

The space is the model's own input:

- a network on frozen encoders: the caption embedding (weight 0.7) and the picture embedding,
  centred (0.3), exactly as topic discovery compares stories, so "near a topic" means what
  made the topic;
- a char n-gram model: its TF-IDF vectors, their hashed columns folded into
  :data:`FOLD_DIMS` (a sketch that keeps cosines within a few hundredths), so the centroids stay
  small whatever the vocabulary.

Stored in the model artifact (``novelty.safetensors``), checked like every other file: the
centroids (topics × dimensions, float32), the picture mean removed before the cosine, and
:data:`N_QUANTILES` quantiles of the training distances. Size: 1,000 topics of the offline
preset's 1,664 dimensions are 6.7 MB; scoring compares a page of posts with every centroid in
one matrix product.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fnd_core.model.splits.topics import TEXT_WEIGHT  # the topics' own caption/picture weights

log = logging.getLogger(__name__)

SPACE_ENCODERS = "frozen_encoders"
SPACE_NGRAMS = "char_ngrams"
FOLD_DIMS = 4096  # char n-gram columns folded into this many
N_QUANTILES = 1001  # of the training posts' distances: novelty to a tenth of a percentile
_ROWS = 4096  # posts per matrix product


@dataclass(frozen=True)
class NoveltyReference:
    """What scoring needs to place a post against the training topics."""

    space: str
    centroids: np.ndarray  # (topics, dims) float32; each part unit length, weighted
    quantiles: np.ndarray  # (N_QUANTILES,) training posts' distances, ascending
    parts: tuple[tuple[str, int], ...]  # ("text", 384), ("image", 1280) or ("ngrams", 4096)
    image_mean: np.ndarray | None = None  # removed from picture features before the cosine
    n_posts: int = 0

    @property
    def n_topics(self) -> int:
        return int(self.centroids.shape[0])

    def distances(self, vectors: np.ndarray) -> np.ndarray:
        """Cosine distance of each post vector (:meth:`vectors`) to its nearest centroid."""
        out = np.empty(len(vectors), dtype=np.float64)
        for lo in range(0, len(vectors), _ROWS):
            sims = vectors[lo : lo + _ROWS] @ self.centroids.T
            out[lo : lo + _ROWS] = 1.0 - sims.max(axis=1)
        return out

    def percentiles(self, vectors: np.ndarray) -> np.ndarray:
        """Novelty of each post: 0–100, the share of training posts lying nearer their topics."""
        grid = np.linspace(0.0, 100.0, len(self.quantiles))
        return np.interp(self.distances(vectors), self.quantiles, grid, left=0.0, right=100.0)

    def vectors(self, **features: Any) -> np.ndarray:
        """The posts' vectors in this space: ``text``/``image`` encoder features (arrays or
        tensors) for :data:`SPACE_ENCODERS`, ``tfidf`` (a sparse matrix) for the n-grams."""
        if self.space == SPACE_NGRAMS:
            return fold_tfidf(features["tfidf"])
        arrays = {k: _numpy(v) for k, v in features.items() if v is not None}
        if self.image_mean is not None and "image" in arrays:
            arrays["image"] = arrays["image"] - self.image_mean
        return _weighted(arrays, self.parts)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"centroids": self.centroids, "quantiles": self.quantiles.astype(np.float32)}
        if self.image_mean is not None:
            out["image_mean"] = self.image_mean.astype(np.float32)
        return out

    def meta(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "parts": [list(p) for p in self.parts],
            "n_topics": self.n_topics,
            "n_posts": self.n_posts,
        }

    @classmethod
    def from_stored(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> NoveltyReference:
        parts = tuple((str(name), int(dims)) for name, dims in meta["parts"])
        centroids = np.asarray(arrays["centroids"], dtype=np.float32)
        if meta["space"] not in (SPACE_ENCODERS, SPACE_NGRAMS):
            raise ValueError(f"unknown novelty space {meta['space']!r}")
        if centroids.ndim != 2 or centroids.shape[1] != sum(d for _, d in parts):
            raise ValueError(f"novelty centroids {centroids.shape} do not fit the parts {parts}")
        return cls(
            space=meta["space"],
            centroids=centroids,
            quantiles=np.asarray(arrays["quantiles"], dtype=np.float64),
            parts=parts,
            image_mean=arrays.get("image_mean"),
            n_posts=int(meta.get("n_posts", 0)),
        )


def for_encoders(
    text: Any | None, image: Any | None, topics: Sequence[int] | np.ndarray
) -> NoveltyReference:
    """The reference of a network on frozen encoders, from its training posts' features."""
    arrays = {k: _numpy(v) for k, v in (("text", text), ("image", image)) if v is not None}
    if not arrays:
        raise ValueError("novelty needs text or image features")
    image_mean = arrays["image"].mean(axis=0) if "image" in arrays else None
    if image_mean is not None:
        arrays["image"] = arrays["image"] - image_mean
    parts = tuple((name, a.shape[1]) for name, a in arrays.items())
    vectors = _weighted(arrays, parts)
    return _fit(SPACE_ENCODERS, vectors, topics, parts, image_mean)


def for_ngrams(tfidf: Any, topics: Sequence[int] | np.ndarray) -> NoveltyReference:
    """The reference of a char n-gram model, from its training posts' TF-IDF rows."""
    return _fit(SPACE_NGRAMS, fold_tfidf(tfidf), topics, (("ngrams", FOLD_DIMS),), None)


def fold_tfidf(tfidf: Any) -> np.ndarray:
    """Unit rows of FOLD_DIMS columns: hashed column ``c`` adds into ``c % FOLD_DIMS``."""
    import scipy.sparse as sp

    m = sp.csr_matrix(tfidf)
    folded = sp.csr_matrix(
        (m.data, m.indices % FOLD_DIMS, m.indptr), shape=(m.shape[0], FOLD_DIMS)
    ).toarray()
    return _unit(folded).astype(np.float32)


def _fit(
    space: str,
    vectors: np.ndarray,
    topics: Sequence[int] | np.ndarray,
    parts: tuple[tuple[str, int], ...],
    image_mean: np.ndarray | None,
) -> NoveltyReference:
    """Centroids of the topics, and each training post's distance to the topics without it."""
    import scipy.sparse as sp

    topics = np.unique(np.asarray(topics), return_inverse=True)[1]
    n_topics = int(topics.max()) + 1 if len(topics) else 0
    if n_topics == 0:
        raise ValueError("novelty needs at least one training post")
    members = sp.csr_matrix(
        (np.ones(len(topics)), (topics, np.arange(len(topics)))), shape=(n_topics, len(topics))
    )
    sums = np.asarray(members @ vectors.astype(np.float64))  # each topic's sum of vectors
    centroids = _weighted(_split(sums, parts), parts)
    nearest = np.empty(len(vectors))
    for lo in range(0, len(vectors), _ROWS):
        rows = slice(lo, lo + _ROWS)
        sims = vectors[rows] @ centroids.T.astype(np.float32)
        own = topics[rows]
        # the post's own topic without the post: its centroid is the rest of the topic's sum
        rest = sums[own] - vectors[rows]
        empty = np.linalg.norm(rest, axis=1) < 1e-9  # a topic of one post: nothing left
        loo = np.einsum("ij,ij->i", vectors[rows], _weighted(_split(rest, parts), parts))
        sims[np.arange(len(own)), own] = np.where(empty, -np.inf, loo)
        nearest[rows] = 1.0 - sims.max(axis=1)
    nearest = np.where(np.isfinite(nearest), nearest, 2.0)  # one topic of one post
    log.info(
        "novelty reference: %d topics, %d posts, %s space; training distances median %.3f",
        n_topics, len(vectors), space, float(np.median(nearest)),
    )  # fmt: skip
    return NoveltyReference(
        space=space,
        centroids=centroids.astype(np.float32),
        quantiles=np.quantile(nearest, np.linspace(0.0, 1.0, N_QUANTILES)),
        parts=parts,
        image_mean=None if image_mean is None else image_mean.astype(np.float32),
        n_posts=len(vectors),
    )


def _weights(parts: tuple[tuple[str, int], ...]) -> dict[str, float]:
    """Each part's share of the cosine: text 0.7 and image 0.3 when both, else all."""
    names = {name for name, _ in parts}
    if names == {"text", "image"}:
        return {"text": TEXT_WEIGHT, "image": 1.0 - TEXT_WEIGHT}
    return dict.fromkeys(names, 1.0)


def _weighted(arrays: dict[str, np.ndarray], parts: tuple[tuple[str, int], ...]) -> np.ndarray:
    """Each part unit length times sqrt(its weight), side by side: a dot product of two such
    rows is the weighted sum of the parts' cosines. (A part's scale does not matter, so sums
    of such rows come back as centroids of the same kind.)"""
    weights = _weights(parts)
    out = [np.float32(np.sqrt(weights[name])) * _unit(arrays[name]) for name, _ in parts]
    return out[0] if len(out) == 1 else np.concatenate(out, axis=1)


def _split(rows: np.ndarray, parts: tuple[tuple[str, int], ...]) -> dict[str, np.ndarray]:
    out, lo = {}, 0
    for name, dims in parts:
        out[name] = rows[:, lo : lo + dims]
        lo += dims
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _numpy(features: Any) -> np.ndarray:
    """Encoder features as float32 numpy (torch tensors of any dtype, bf16 included)."""
    if hasattr(features, "detach"):
        features = features.detach().float().cpu().numpy()
    return np.asarray(features, dtype=np.float32)
