"""P(fake) from the head over frozen-encoder features: the inference half of the model's use.

What scoring, evaluation and the trainer's final report run once features exist: the head in
eval mode over batches of feature rows (:func:`head_proba`), or encoding then the head in one
call (:func:`predict_proba`). The features themselves come from
:mod:`fnd_core.model.features.encoding`, through the cache in :mod:`fnd_core.model.features.cache`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fnd_core.model.examples import PostExample
from fnd_core.model.features.encoding import EncodedFeatures, encode_examples

if TYPE_CHECKING:
    from fnd_core.model.network import FakeNewsModel


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


def head_proba(
    model: FakeNewsModel, features: EncodedFeatures, batch_size: int = 1024
) -> np.ndarray:
    """Sigmoid of the head's logits over precomputed features, in eval mode."""
    import torch

    return torch.sigmoid(torch.from_numpy(head_logits(model, features, batch_size))).numpy()


def head_logits(
    model: FakeNewsModel, features: EncodedFeatures, batch_size: int = 1024
) -> np.ndarray:
    """The head's logits over precomputed features, in eval mode: what a verdict's margin is
    measured in (a probability saturates where a logit still shows the distance)."""
    import torch

    from fnd_core.model.runtime import module_device

    some = features.image if features.image is not None else features.text
    if some is None:
        raise ValueError("no features: neither image nor text features were encoded")
    n = len(some)
    device = module_device(model)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for rows in batched_rows(n, batch_size):
                image = features.image[rows].to(device) if features.image is not None else None
                text = features.text[rows].to(device) if features.text is not None else None
                out.append(model.head_forward(image, text).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)
