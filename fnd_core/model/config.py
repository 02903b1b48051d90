"""Architecture as data: one frozen dataclass describes a model; artifacts store it as JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fnd_core.model.presets import PRESET_NAMES
from fnd_core.model.presets import PRESETS as _REGISTRY
from fnd_core.settings import default

PRESETS = PRESET_NAMES  # the registry: fnd_core.model.presets
FUSIONS = ("concat", "interaction")
MODALITIES = ("both", "text", "image")
HEADS = ("mlp", "linear")
DEFAULT_MAX_PIXELS: int = default("max_image_pixels")  # decompression-bomb guard


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a :class:`~fnd_core.model.network.FakeNewsModel`.

    Attributes:
        preset: backbones: ``offline`` (EfficientNet-Lite0 + MiniLM from PyPI packages),
            ``seed`` (torchvision EfficientNet-B0 + DistilBERT from local caches) or
            ``tiny`` (small random-init encoders for tests).
        image_size: square side in pixels fed to the image encoder.
        max_tokens: texts are truncated to this many tokens.
        proj_dim: both modalities are projected to this size before fusion.
        fusion: ``concat`` = [i, t]; ``interaction`` = [i, t, i*t, |i-t|]. Measured on 3,000
            demo posts (offline preset, 8 seeds, mean test accuracy): with the alignment loss
            of :func:`fnd_core.model.train.objective.alignment_loss` concat 0.965, interaction
            0.957; without it 0.864 vs 0.758. Concat wins, so it is the default: once the
            projections are aligned the MLP compares them well by itself.
        hidden: width of the head's hidden layer.
        dropout: dropout in projections and head.
        modalities: ``both``, or ``text`` / ``image`` only (ablations).
        head: ``mlp`` (projections, fusion, a hidden layer: what can learn that a caption
            contradicts its picture) or ``linear`` (a logistic regression on the unit-length
            frozen features, fitted exactly: :mod:`fnd_core.model.train.heads`). On the
            MediaEval dev tweets the linear head carried better to events it never saw; the
            gate picks between them on topic-disjoint folds.
    """

    preset: str = "offline"
    image_size: int = 224
    max_tokens: int = 64
    proj_dim: int = 256
    fusion: str = "concat"
    hidden: int = 256
    dropout: float = 0.1
    modalities: str = "both"
    head: str = "mlp"

    def __post_init__(self) -> None:
        _check_choice("preset", self.preset, PRESETS)
        _check_choice("fusion", self.fusion, FUSIONS)
        _check_choice("modalities", self.modalities, MODALITIES)
        _check_choice("head", self.head, HEADS)
        _check_int("image_size", self.image_size, 32, 1024)
        _check_int("max_tokens", self.max_tokens, 4, 512)
        _check_int("proj_dim", self.proj_dim, 1, 8192)
        _check_int("hidden", self.hidden, 1, 8192)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float):
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.head == "linear" and self.fusion != "concat":
            raise ValueError("a linear head reads the features side by side: use fusion='concat'")
        if self.fusion == "interaction" and self.modalities != "both":
            raise ValueError(
                f"fusion='interaction' compares two modalities; with modalities="
                f"{self.modalities!r} use fusion='concat'"
            )

    @classmethod
    def for_preset(cls, preset: str, **overrides: Any) -> ModelConfig:
        """A config with the preset's sensible defaults, then ``overrides`` on top."""
        _check_choice("preset", preset, PRESETS)
        return cls(preset=preset, **{**_REGISTRY[preset].defaults, **overrides})

    @property
    def uses_image(self) -> bool:
        return self.modalities in ("both", "image")

    @property
    def uses_text(self) -> bool:
        return self.modalities in ("both", "text")

    def replace(self, **changes: Any) -> ModelConfig:
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (what ``config.json`` and ``fnd.model_versions.config`` hold)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {unknown}; known: {sorted(known)}")
        return cls(**data)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
