"""Evidence beside each verdict: the nearest labelled picture, looked up at scoring.

The first question a fact-checker asks of a viral picture is whether it was seen before and
what it was. Every labelled picture (a distinct ``image_sha256`` among posts with a current
label) enters a :class:`PictureIndex` with its three perceptual hashes
(:mod:`fnd_core.io.picture_hash`), the count of its posts labelled fake and real, and the most
recently labelled of them. At scoring each post's whole-picture hash is compared with every
indexed hash (Hamming distance, whole page at once); the nearest picture, its label (the
majority of its posts; a tie goes to the latest label), a post showing it, the distance, and
whether the distance passes ``FND_PICTURE_MATCH_BITS`` are stored in
``fnd.prediction_evidence``. A post is never its own evidence: its own label is taken out of
its picture's counts, and a picture labelled only through the post itself is skipped.

The index is built from the current labels at the start of each scoring shard (so a label that
arrived through ``fnd label`` counts from the next run on); building it twice from the same
labels gives the same index (:attr:`PictureIndex.digest`). Its size is 3 x 8 bytes per
labelled picture plus their ids; the brute-force comparison costs one popcount per
(post, indexed hash): 0.3 s for a page of 2,048 posts against 10,000 pictures. Millions of
labelled pictures would want a binary nearest-neighbour index (``faiss-cpu``'s
``IndexBinaryHash`` or multi-index hashing) instead of the brute force.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from fnd_core.io.picture_hash import CENTRES, hamming

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from fnd_core.settings import Settings

log = logging.getLogger(__name__)

EVIDENCE_COLUMNS = ("post_id", "model_version", "match_post_id", "match_label", "match_distance",
                    "matched", "match_fake_posts", "match_real_posts", "novelty")  # fmt: skip
_NO_MATCH: dict[str, Any] = {"match_post_id": None, "match_label": None, "match_distance": None,
             "matched": False, "match_fake_posts": None, "match_real_posts": None}  # fmt: skip
_CELLS_PER_BLOCK = 4_000_000  # (post, picture) distances per block: 32 MB of XOR at a time
_FAR = 99  # a distance no hash pair reaches: an entry ruled out


@dataclass(frozen=True)
class PictureIndex:
    """Labelled pictures: hashes ``(P, len(CENTRES))``, label counts, a recent post of each."""

    shas: list[str]
    hashes: np.ndarray
    n_fake: np.ndarray
    n_real: np.ndarray
    latest_label: np.ndarray  # the picture's most recently received label (breaks ties)
    posts: list[dict[int, list[str]]] = field(repr=False)  # label -> up to 2 recent post ids

    @property
    def digest(self) -> str:
        """A fingerprint of the index's contents (the same labels: the same digest)."""
        h = hashlib.sha256()
        for sha, hashes, f, r, last, posts in zip(self.shas, self.hashes.tolist(), self.n_fake,
                                                  self.n_real, self.latest_label, self.posts,
                                                  strict=True):  # fmt: skip
            h.update(f"{sha}:{hashes}:{f}:{r}:{last}:{sorted(posts.items())}\n".encode())
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.shas)


def build_index(engine: Engine, settings: Settings) -> PictureIndex:
    """The index of every labelled picture, from the posts' current labels."""
    backfill_hashes(engine, settings, labelled_only=True)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select image_sha256, image_phashes, post_id, label from fnd.posts "
                "where label is not null and cardinality(image_phashes) = :n "
                "order by image_sha256, coalesce(label_updated_at, ingested_at) desc, post_id"
            ),
            {"n": len(CENTRES)},
        ).all()
    shas: list[str] = []
    hashes: list[list[int]] = []
    n_fake: list[int] = []
    n_real: list[int] = []
    latest: list[int] = []
    posts: list[dict[int, list[str]]] = []
    for sha, phashes, post_id, label in rows:
        if not shas or shas[-1] != sha:
            shas.append(sha)
            hashes.append(phashes)
            n_fake.append(0)
            n_real.append(0)
            latest.append(label)  # rows come newest label first
            posts.append({0: [], 1: []})
        if label == 1:
            n_fake[-1] += 1
        else:
            n_real[-1] += 1
        if len(posts[-1][label]) < 2:
            posts[-1][label].append(post_id)
    index = PictureIndex(
        shas=shas,
        hashes=np.array(hashes, dtype=np.int64).reshape(len(shas), len(CENTRES)),
        n_fake=np.array(n_fake, dtype=np.int64),
        n_real=np.array(n_real, dtype=np.int64),
        latest_label=np.array(latest, dtype=np.int64),
        posts=posts,
    )
    log.info("picture index: %d labelled pictures (%d posts)", len(index), len(rows))
    return index


def backfill_hashes(
    engine: Engine,
    settings: Settings,
    *,
    post_ids: Sequence[str] | None = None,
    labelled_only: bool = False,
) -> int:
    """Hash the pictures of posts ingested before hashes were computed at ingest (read from
    the store, once per picture); returns the pictures hashed. A picture that cannot be read
    keeps no hash: its posts are never matched, and their scoring goes on."""
    from fnd_core.io import storage
    from fnd_core.io.imaging import inspect_image

    with engine.connect() as conn:
        todo = conn.execute(
            sa.text(
                "select image_sha256, min(image_uri) from fnd.posts where image_phashes is null"
                + (" and label is not null" if labelled_only else "")
                + (" and post_id = any(:ids)" if post_ids is not None else "")
                + " group by image_sha256"
            ),
            {"ids": list(post_ids or [])},
        ).all()
    done = 0
    for sha, uri in todo:
        try:
            data = storage.read_bytes(uri, gcs_endpoint=settings.gcs_endpoint)
            phashes = inspect_image(data, max_pixels=settings.max_image_pixels).phashes
        except Exception as exc:  # noqa: BLE001 — one unreadable picture never stops scoring
            log.warning("picture %s: no perceptual hash (%s)", sha[:12], exc)
            continue
        if phashes is None:
            continue
        with engine.begin() as conn:
            conn.execute(
                sa.text("update fnd.posts set image_phashes = :h "
                        "where image_sha256 = :s and image_phashes is null"),
                {"h": list(phashes), "s": sha},
            )  # fmt: skip
        done += 1
    if done:
        log.info("perceptual hashes computed for %d picture(s) ingested before sql/019", done)
    return done


def look_up(
    index: PictureIndex, queries: Sequence[tuple[str, str, int | None, int | None]], max_bits: int
) -> list[dict[str, Any]]:
    """The evidence of each ``(post_id, image_sha256, whole-picture hash, own label)``."""
    out: list[dict[str, Any]] = []
    usable = [i for i, q in enumerate(queries) if q[2] is not None]
    nearest: dict[int, tuple[int, int] | None] = dict.fromkeys(range(len(queries)))
    if len(index) and usable:
        position = {sha: j for j, sha in enumerate(index.shas)}
        left = index.n_fake + index.n_real - 1  # a picture's labelled posts but one
        block = max(1, _CELLS_PER_BLOCK // len(index))
        columns = [np.ascontiguousarray(index.hashes[:, c]) for c in range(index.hashes.shape[1])]
        for start in range(0, len(usable), block):
            rows = np.array(usable[start : start + block])
            hashes = np.array([queries[i][2] for i in rows], dtype=np.int64)
            d = hamming(hashes, columns[0])  # nearest of each picture's hashes
            for column in columns[1:]:
                np.minimum(d, hamming(hashes, column), out=d)
            # a picture labelled only through the post itself is not evidence for it
            labelled_self = [
                (k, position[queries[i][1]])
                for k, i in enumerate(rows)
                if queries[i][3] is not None and queries[i][1] in position
            ]
            for k, j_own in labelled_self:
                if left[j_own] == 0:
                    d[k, j_own] = _FAR
            best = d.argmin(axis=1)
            best_d = d[np.arange(len(rows)), best]
            for i, j, dist in zip(rows.tolist(), best.tolist(), best_d.tolist(), strict=True):
                if dist < _FAR:
                    nearest[i] = (j, dist)
    for i, (post_id, sha, _, own) in enumerate(queries):
        found = nearest[i]
        if found is None:
            out.append({"post_id": post_id, **_NO_MATCH})
            continue
        j, distance = found
        self_here = own is not None and index.shas[j] == sha
        n_fake = int(index.n_fake[j]) - int(self_here and own == 1)
        n_real = int(index.n_real[j]) - int(self_here and own == 0)
        label = 1 if n_fake > n_real else 0 if n_real > n_fake else int(index.latest_label[j])
        post = next((p for p in index.posts[j][label] + index.posts[j][1 - label]
                     if p != post_id), None)  # fmt: skip
        out.append({"post_id": post_id, "match_post_id": post, "match_label": label,
                    "match_distance": distance, "matched": distance <= max_bits,
                    "match_fake_posts": n_fake, "match_real_posts": n_real})  # fmt: skip
    return out


def attach(
    engine: Engine,
    settings: Settings,
    version: str,
    index: PictureIndex | None,
    post_ids: list[str],
    novelty: Mapping[str, float | None] | None = None,
) -> int:
    """Store the evidence of ``post_ids`` for ``version``: the nearest labelled picture (looked
    up in ``index``; none without one) and the ``novelty`` scoring measured. Returns the
    posts whose picture matched."""
    from fnd_core.io.pgcopy import upsert_via_staging

    if not post_ids:
        return 0
    found: list[dict[str, Any]]
    if index is None:
        found = [{"post_id": post_id, **_NO_MATCH} for post_id in post_ids]
    else:
        backfill_hashes(engine, settings, post_ids=post_ids)
        with engine.connect() as conn:
            queries = [
                (r[0], r[1], r[2], r[3])
                for r in conn.execute(
                    sa.text("select post_id, image_sha256, image_phashes[1], label "
                            "from fnd.posts where post_id = any(:ids)"),
                    {"ids": post_ids},
                ).all()
            ]  # fmt: skip
        found = look_up(index, queries, settings.picture_match_bits)
    for e in found:
        e["novelty"] = None if novelty is None else novelty.get(e["post_id"])
    rows = [tuple(version if c == "model_version" else e[c] for c in EVIDENCE_COLUMNS)
            for e in found]  # fmt: skip
    update = ", ".join(f"{c} = excluded.{c}" for c in EVIDENCE_COLUMNS[2:])
    with engine.begin() as conn:
        upsert_via_staging(
            conn, "fnd.prediction_evidence", EVIDENCE_COLUMNS, rows,
            conflict=f"(post_id, model_version) do update set {update}, computed_at = now()",
        )  # fmt: skip
    return sum(e["matched"] for e in found)
