"""Fitting a linear head: a weighted logistic regression on unit-length frozen features.

The ``linear`` head (:class:`~fnd_core.model.config.ModelConfig`) is solved exactly by
scikit-learn's L-BFGS rather than by stochastic steps: no epochs, no learning rate, no early
stopping split, the same weights from the same rows every time. The solution is copied into
the model's one ``nn.Linear``, so the artifact, the scorer and the drift checks treat it as
any other fnd model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np

if TYPE_CHECKING:
    from fnd_core.model.feature_encoding import EncodedFeatures
    from fnd_core.model.network import FakeNewsModel

L2_C = 1.0  # inverse regularisation strength (scikit-learn's C), the baseline's since round 1


def design_matrix(model: FakeNewsModel, features: EncodedFeatures) -> np.ndarray:
    """The rows the linear head reads: each used modality's features at unit length."""
    import torch

    with torch.inference_mode():
        image, text = model.project(
            None if features.image is None else features.image.float(),
            None if features.text is None else features.text.float(),
        )
    parts = [p.numpy() for p in (image, text) if p is not None]
    return np.hstack(parts).astype(np.float64)


def fit_linear_head(
    model: FakeNewsModel,
    features: EncodedFeatures,
    y: np.ndarray,
    sample_weight: np.ndarray | None,
    *,
    c: float = L2_C,
) -> FakeNewsModel:
    """Fit ``model``'s linear head in place on ``features`` (weights as the gate's)."""
    import torch
    from sklearn.linear_model import LogisticRegression

    if model.config.head != "linear":
        raise ValueError(f"fit_linear_head needs a linear head, got {model.config.head!r}")
    regression = LogisticRegression(C=c, max_iter=3000)
    regression.fit(design_matrix(model, features), np.asarray(y, dtype=int), sample_weight)
    layer = cast("torch.nn.Linear", model.classifier[0])  # a linear head: one Linear layer
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(regression.coef_, dtype=layer.weight.dtype))
        layer.bias.copy_(torch.as_tensor(regression.intercept_, dtype=layer.bias.dtype))
    return model
