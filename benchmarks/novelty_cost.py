"""What novelty costs: per page of posts at scoring, once per training, and in the artifact.

    python -m benchmarks.novelty_cost [--posts 11683] [--page 2048]

Novelty (``fnd_core/model/novelty.py``) compares each scored post's features with one centroid
per training topic. Its cost depends only on shapes: the offline preset's feature widths (384
caption + 1,280 picture dimensions), the number of training topics, the page size. Measured
here on random features of those shapes, for 13 topics (the MediaEval dev events) up to 5,000
(topics discovered in a large, varied snapshot), beside the baseline measured in the same run:
the fusion head's forward pass on the same page of cached features, the cheapest step of a
scoring page (a warm-cache rescore runs little else besides the database writes).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.common import machine, table
from fnd_core.model import novelty
from fnd_core.model.config import ModelConfig
from fnd_core.model.features.encoding import EncodedFeatures
from fnd_core.model.features.inference import head_proba
from fnd_core.model.network import build_model

TEXT_DIMS, IMAGE_DIMS = 384, 1280


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=11_683, help="training posts")
    parser.add_argument("--page", type=int, default=2048, help="posts per scoring page")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    train_text = rng.normal(size=(args.posts, TEXT_DIMS)).astype(np.float32)
    train_image = np.abs(rng.normal(size=(args.posts, IMAGE_DIMS))).astype(np.float32)
    page_text = torch.from_numpy(rng.normal(size=(args.page, TEXT_DIMS)).astype(np.float32))
    page_image = torch.from_numpy(
        np.abs(rng.normal(size=(args.page, IMAGE_DIMS))).astype(np.float32)
    )
    print(f"# {machine()}, torch threads {torch.get_num_threads()}; {args.posts:,} training posts, "
          f"pages of {args.page:,}")  # fmt: skip
    baseline = None
    try:
        model = build_model(ModelConfig.for_preset("offline", fusion="concat"), pretrained=False)
        features = EncodedFeatures(image=page_image, text=page_text)
        baseline = best_of(lambda: head_proba(model, features))
    except Exception as exc:  # noqa: BLE001 - the offline preset's packages may be missing
        print(f"(no head baseline: {type(exc).__name__}: {exc})")
    rows = []
    for n_topics in (13, 100, 1000, 5000):
        topics = rng.integers(0, n_topics, size=args.posts)
        started = time.perf_counter()
        ref = novelty.for_encoders(train_text, train_image, topics)
        fitted = time.perf_counter() - started
        per_page = best_of(lambda r=ref: r.percentiles(r.vectors(text=page_text, image=page_image)))
        stored = sum(a.nbytes for a in ref.arrays().values()) / 2**20
        ratio = f"{per_page / baseline:.2f}x" if baseline else "–"
        rows.append((f"{n_topics:,}", f"{fitted:.2f}", f"{per_page * 1e3:.1f}", ratio,
                     f"{stored:.1f}"))  # fmt: skip
    if baseline:
        print(f"baseline: the fusion head on a page of cached features, {baseline * 1e3:.1f} ms")
    print(table(rows, ("training topics", "fit at training (s)", "novelty per page (ms)",
                       "vs the head's forward", "stored (MiB)")))  # fmt: skip


if __name__ == "__main__":
    main()
