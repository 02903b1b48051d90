"""Is the nearest labelled picture evidence? Perceptual-hash matches on the MediaEval dev set.

Usage::

    python -m benchmarks.picture_matches [--data ../shared/data/mediaeval-dev] [--bits 6]

Three measurements, each with the hashes and the look-up fnd runs at scoring
(:mod:`fnd_core.io.picture_hash`, :func:`fnd_core.pipeline.evidence.look_up`):

1. **Robustness**: every dev picture changed as platforms change reposts (scaled, re-encoded,
   cropped), its distance to the original's hashes, and the share within ``--bits``.
2. **Reposts seen before, within an event** (posts in time order): each post is looked up in
   an index of the pictures of the event's *earlier* posts, with their labels, as a fact-checker
   who labelled the first posts of a story would have it. Precision: matched posts whose
   matched picture carries the post's own label; recall: matched posts among those whose exact
   picture was posted earlier.
3. **By event hold-out**: each event's posts looked up in the labelled pictures of every other
   event; what matches across events, and whether its label agrees.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import machine, table
from fnd_core.io.picture_hash import hamming, picture_hashes
from fnd_core.pipeline.evidence import PictureIndex, look_up
from fnd_core.settings import default

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mediaeval-dev"


def changes(image: Image.Image) -> dict[str, Image.Image]:
    """The picture as reposts change it."""
    w, h = image.size

    def jpeg(im: Image.Image, quality: int) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    def centre(keep: float) -> Image.Image:
        dx, dy = int(w * (1 - keep) / 2), int(h * (1 - keep) / 2)
        return image.crop((dx, dy, w - dx, h - dy))

    half = image.resize((max(1, w // 2), max(1, h // 2)))
    return {
        "scaled to 1/2": half,
        "JPEG quality 30": jpeg(image, 30),
        "1/4 + JPEG 50": jpeg(image.resize((max(1, w // 4), max(1, h // 4))), 50),
        "5 % off each side": centre(0.9),
        "10 % off each side": centre(0.8),
        "5 % off + 1/2 + JPEG 40": jpeg(centre(0.9).resize((max(1, w // 2), max(1, h // 2))), 40),
        "8 % off top and left": image.crop((int(w * 0.08), int(h * 0.08), w, h)),
    }


def index_of(entries: list[tuple[str, tuple[int, ...], str, int]]) -> PictureIndex:
    """A :class:`PictureIndex` over (sha, hashes, post_id, label), newest label first."""
    by_sha: dict[str, list[tuple[tuple[int, ...], str, int]]] = defaultdict(list)
    for sha, hashes, post_id, label in entries:
        by_sha[sha].append((hashes, post_id, label))
    shas = sorted(by_sha)
    posts = []
    for sha in shas:
        kept: dict[int, list[str]] = {0: [], 1: []}
        for _, post_id, label in by_sha[sha]:
            if len(kept[label]) < 2:
                kept[label].append(post_id)
        posts.append(kept)
    return PictureIndex(
        shas=shas,
        hashes=np.array([by_sha[s][0][0] for s in shas], dtype=np.int64).reshape(len(shas), -1),
        n_fake=np.array([sum(e[2] == 1 for e in by_sha[s]) for s in shas], dtype=np.int64),
        n_real=np.array([sum(e[2] == 0 for e in by_sha[s]) for s in shas], dtype=np.int64),
        latest_label=np.array([by_sha[s][0][2] for s in shas], dtype=np.int64),
        posts=posts,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--bits", type=int, default=default("picture_match_bits"))
    args = parser.parse_args()
    posts = [json.loads(line) for line in (args.data / "posts.jsonl").open()]
    pictures = sorted({p["image"] for p in posts})
    print(f"# {machine()}; {len(posts):,} posts, {len(pictures)} pictures, match within "
          f"{args.bits} bits")  # fmt: skip
    started = time.perf_counter()
    hashes, changed = {}, defaultdict(dict)
    for name in pictures:
        image = Image.open(args.data / name).convert("RGB")
        hashes[name] = picture_hashes(image)
        for change, out in changes(image).items():
            changed[change][name] = picture_hashes(out)[0]
    per_picture = (time.perf_counter() - started) / len(pictures) / 8
    print(f"hashing: {per_picture * 1000:.1f} ms per picture (this CPU, decoded RGB in memory)")

    rows = []
    for change, queried in changed.items():
        d = np.array([hamming(np.array([queried[n]]), np.array(hashes[n])).min()
                      for n in pictures])  # fmt: skip
        rows.append((change, f"{d.mean():.1f}", int(d.max()), f"{(d <= args.bits).mean():.1%}"))
    print("1. the same picture, changed as reposts are (distance to the original's hashes):")
    print(table(rows, ("change", "mean bits", "max bits", f"within {args.bits}")))

    by_event: dict[str, list[dict]] = defaultdict(list)
    for p in posts:
        by_event[p["event"]].append(p)
    position = {name: i for i, name in enumerate(pictures)}
    table_of_hashes = np.array([hashes[n] for n in pictures], dtype=np.int64)
    # distance[q, j]: picture q's whole-picture hash against picture j's three, as at scoring
    distance = hamming(table_of_hashes[:, 0], table_of_hashes.ravel())
    distance = distance.reshape(len(pictures), len(pictures), -1).min(axis=2)
    rows = []
    totals = np.zeros(5, dtype=int)
    for event, items in sorted(by_event.items()):
        items.sort(key=lambda p: (p.get("created_utc") or 0, p["id"]))
        counts = np.zeros((len(pictures), 2), dtype=int)  # labelled posts so far: real, fake
        latest = np.zeros(len(pictures), dtype=int)
        matched = right = reposts = found = 0
        for p in items:
            q, seen = position[p["image"]], counts.sum(axis=1) > 0
            earlier = bool(seen[q])
            reposts += earlier
            if seen.any():
                d = np.where(seen, distance[q], 99)
                j = int(np.argmin(d))
                if d[j] <= args.bits:  # the picture's label: its majority, a tie the latest
                    real, fake = counts[j]
                    label = 1 if fake > real else 0 if real > fake else latest[j]
                    matched += 1
                    right += label == p["label"]
                    found += earlier
            counts[q, p["label"]] += 1
            latest[q] = p["label"]
        totals += (len(items), matched, right, reposts, found)
        rows.append((event, len(items), matched, _share(right, matched), _share(found, reposts)))
    rows.append(("all", totals[0], totals[1], _share(totals[2], totals[1]),
                 _share(totals[4], totals[3])))  # fmt: skip
    print("2. each post against the labelled pictures of its event's earlier posts:")
    print(table(rows, ("event", "posts", "matched", "precision (label agrees)",
                       "recall (exact reposts found)")))  # fmt: skip

    rows = []
    for event, items in sorted(by_event.items()):
        others = [(p["image"], hashes[p["image"]], p["id"], p["label"]) for p in posts
                  if p["event"] != event]  # fmt: skip
        index = index_of(others)
        found = look_up(index, [(p["id"], "query", hashes[p["image"]][0], None) for p in items],
                        args.bits)  # fmt: skip
        hits = [(e, p) for e, p in zip(found, items, strict=True) if e["matched"]]
        agree = sum(e["match_label"] == p["label"] for e, p in hits)
        rows.append((event, len(items), len(hits), _share(agree, len(hits))))
    print("3. each event's posts against the labelled pictures of the other events:")
    print(table(rows, ("held-out event", "posts", "matched", "precision (label agrees)")))


def _share(n: int, of: int) -> str:
    return "—" if not of else f"{n / of:.3f} ({n}/{of})"


if __name__ == "__main__":
    main()
