"""Which encoders a model config gets: the ones its preset names in the registry
(:mod:`fnd_core.model.presets`), each built by the loader the entry names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fnd_core.model.presets import get

if TYPE_CHECKING:
    from fnd_core.model.config import ModelConfig
    from fnd_core.model.encoders.backbones import ImageBackbone, TextBackbone


def build_backbones(
    config: ModelConfig, *, pretrained: bool = True
) -> tuple[ImageBackbone | None, TextBackbone | None]:
    """The encoders ``config`` asks for (only the modalities it uses).

    Args:
        config: the model config; ``config.preset`` picks the encoders.
        pretrained: load the preset's pretrained weights. ``False`` builds the same
            architecture with random weights, only for callers that load weights next
            (an artifact holding the full model). Random-init presets ignore it.

    Raises:
        BackboneUnavailableError: pretrained weights are not on this machine.
    """
    preset = get(config.preset)
    if pretrained:
        preset.check_weights(need_image=config.uses_image, need_text=config.uses_text)
    image = preset.image.build(config, pretrained=pretrained) if config.uses_image else None
    text = preset.text.build(config, pretrained=pretrained) if config.uses_text else None
    return image, text
