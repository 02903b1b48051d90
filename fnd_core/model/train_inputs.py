"""What the trainer feeds its loops: labelled splits, label tensors, per-post loss weights, seeds.

Kept apart from the loops (:mod:`fnd_core.model.head_training`,
:mod:`fnd_core.model.finetuning`) so the preparation, where the leak-group and class
weighting is decided, can be read, and changed, in one place.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fnd_core.model.examples import PostExample

if TYPE_CHECKING:
    import torch

    from fnd_core.model.feature_encoding import EncodedFeatures
    from fnd_core.model.train_options import TrainOptions


def labelled_splits(examples: Sequence[PostExample]) -> dict[str, list[PostExample]]:
    """The labelled ``examples`` by their split; train and val must hold both classes."""
    splits: dict[str, list[PostExample]] = {"train": [], "val": [], "test": []}
    for ex in examples:
        if ex.label is not None:
            splits[ex.split].append(ex)
    for name in ("train", "val"):
        classes = {ex.label for ex in splits[name] if ex.label is not None}  # all labelled
        if classes != {0, 1}:
            raise ValueError(
                f"the {name} split needs labelled posts of both classes (real and fake); "
                f"it has {len(splits[name])} labelled posts with labels {sorted(classes)}"
            )
    return splits


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch: same seed + same data = same model on CPU."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def label_tensor(rows: Sequence[PostExample]) -> torch.Tensor:
    """The posts' labels as float32 (the loss's targets)."""
    import torch

    return torch.tensor([float(y) for y in labels_of(rows)], dtype=torch.float32)


def labels_of(rows: Sequence[PostExample]) -> list[int]:
    """The posts' labels; an unlabelled post among them is an error."""
    labels = []
    for ex in rows:
        if ex.label is None:
            raise ValueError(f"post {ex.post_id!r} has no label: only labelled posts train")
        labels.append(ex.label)
    return labels


def slice_features(
    features: EncodedFeatures, splits: dict[str, list[PostExample]]
) -> dict[str, EncodedFeatures]:
    """Cut features encoded for train + val + test (in that order) back into the splits."""
    out, start = {}, 0
    for name in ("train", "val", "test"):
        out[name] = features.subset(range(start, start + len(splits[name])))
        start += len(splits[name])
    return out


def split_weights(
    examples: Sequence[PostExample],
    groups: Sequence[int] | None,
    splits: dict[str, list[PostExample]],
    options: TrainOptions,
) -> dict[str, torch.Tensor]:
    """Per-post loss weights of each split (see :func:`fnd_core.model.grouping.group_weights`)."""
    import torch

    from fnd_core.model.grouping import group_weights

    group_of: dict[str, int] = {}
    if groups is not None and options.group_weights:
        group_of = {ex.post_id: int(g) for ex, g in zip(examples, groups, strict=True)}
    out = {}
    for name, rows in splits.items():
        split_groups = np.array([group_of.get(ex.post_id, -1 - i) for i, ex in enumerate(rows)])
        labels = np.array([ex.label for ex in rows], dtype=int)
        w = group_weights(split_groups, labels, balance_classes=options.class_weights)
        out[name] = torch.tensor(w, dtype=torch.float32)
    return out


def class_weights(y: torch.Tensor, options: TrainOptions) -> np.ndarray:
    """Per-post weights from labels alone: both classes weigh the same when
    ``options.class_weights``, else every post weighs 1."""
    from fnd_core.model.grouping import group_weights

    return group_weights(None, y.numpy().astype(int), balance_classes=options.class_weights)
