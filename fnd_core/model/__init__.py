"""The multimodal fake-news model: config, encoders, network, artifacts, features, training.

Importing this package is cheap: it loads no torch and no weights. Torch-backed names
(``FakeNewsModel``, ``build_model``, ``save_model``, ``load_model``) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from fnd_core.model.config import FUSIONS, MODALITIES, PRESETS, ModelConfig
from fnd_core.model.errors import ArtifactIntegrityError, BackboneUnavailableError, ImageDecodeError
from fnd_core.model.examples import SPLITS, PostExample

_LAZY = {
    "FakeNewsModel": "fnd_core.model.network",
    "build_model": "fnd_core.model.network",
    "save_model": "fnd_core.model.artifacts",
    "load_model": "fnd_core.model.artifacts",
    "LoadedModel": "fnd_core.model.artifacts",
    "open_rgb": "fnd_core.model.encoders.preprocess",
}

__all__ = [
    "FUSIONS",
    "MODALITIES",
    "PRESETS",
    "SPLITS",
    "ArtifactIntegrityError",
    "BackboneUnavailableError",
    "ImageDecodeError",
    "ModelConfig",
    "PostExample",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fnd_core.model' has no attribute {name!r}")
