"""Which encoders a model config gets: the tiny ones built here, pretrained presets from the hub.

The one place that knows both :mod:`fnd_core.model.backbones` (the encoder classes) and
:mod:`fnd_core.model.pretrained` (the preset loaders), so neither imports the other.
"""

from __future__ import annotations

from fnd_core.model import pretrained as hub
from fnd_core.model.backbones import (
    ImageBackbone,
    TextBackbone,
    tiny_image_backbone,
    tiny_text_backbone,
)
from fnd_core.model.config import ModelConfig


def build_backbones(
    config: ModelConfig, *, pretrained: bool = True
) -> tuple[ImageBackbone | None, TextBackbone | None]:
    """The encoders ``config`` asks for (only the modalities it uses).

    Args:
        config: the model config; ``config.preset`` picks the encoders.
        pretrained: load the preset's pretrained weights. ``False`` builds the same
            architecture with random weights, only for callers that load weights next
            (an artifact holding the full model). Ignored for ``tiny``.

    Raises:
        BackboneUnavailableError: pretrained weights are not on this machine.
    """
    if config.preset == "tiny":
        image = tiny_image_backbone(config) if config.uses_image else None
        text = tiny_text_backbone(config) if config.uses_text else None
        return image, text
    loaders = hub.LOADERS[config.preset]
    if config.preset == "seed" and pretrained:
        hub.require_seed_weights(need_image=config.uses_image, need_text=config.uses_text)
    image = loaders.image(config, pretrained=pretrained) if config.uses_image else None
    text = loaders.text(config, pretrained=pretrained) if config.uses_text else None
    return image, text
