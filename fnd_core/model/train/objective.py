"""What training optimises and how its learning rate moves, shared by both training phases."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from fnd_core.model.network import FakeNewsModel
from fnd_core.model.train.topic_adversary import TopicAdversary


def warmup_cosine(total_steps: int, warmup_share: float) -> Callable[[int], float]:
    """LR multiplier: linear warmup from ~0 to 1, then cosine decay to 0 at ``total_steps``."""
    warmup = max(1, round(total_steps * warmup_share))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged with per-post weights (see grouping.group_weights)."""
    losses = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


def batch_loss(
    model: FakeNewsModel,
    image: torch.Tensor | None,
    text: torch.Tensor | None,
    labels: torch.Tensor,
    weights: torch.Tensor,
    *,
    align_weight: float,
    align_temperature: float,
    modality_dropout: float = 0.0,
    adversary: TopicAdversary | None = None,
    topics: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted classification loss, plus the alignment loss when the model sees both modalities.

    ``modality_dropout``: in training, that share of posts has its projected picture (or, as
    often, its caption) zeroed before fusion, so the head cannot lean on one modality alone:
    a picture it has seen in many posts is the easiest thing to memorise.
    ``adversary`` (with the posts' ``topics``): the topic discriminator's reversed loss.
    """
    image, text = model.project(image, text)
    fused_image, fused_text = image, text
    if modality_dropout > 0 and image is not None and text is not None and model.training:
        drop = torch.rand(len(labels), device=labels.device)
        fused_image = image * (drop >= modality_dropout / 2).unsqueeze(-1).to(image.dtype)
        keep_text = (drop < modality_dropout / 2) | (drop >= modality_dropout)
        fused_text = text * keep_text.unsqueeze(-1).to(text.dtype)
    loss = weighted_bce(model.fuse(fused_image, fused_text), labels, weights)
    if align_weight > 0 and image is not None and text is not None:
        loss = loss + align_weight * alignment_loss(image, text, labels, align_temperature)
    if adversary is not None and topics is not None:
        loss = loss + adversary.loss(model, fused_image, fused_text, topics)
    return loss


def alignment_loss(
    image: torch.Tensor, text: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Contrastive loss pulling each real post's picture and caption together in the shared space.

    Takes projected embeddings (:meth:`FakeNewsModel.project`). "Align before fuse" (ALBEF,
    Li et al. 2021): among the batch's real posts (label 0, whose caption matches its
    picture), each picture must pick its own caption and each caption its own picture
    (symmetric InfoNCE on cosine similarities). Every real post then teaches the projections
    which picture features go with which words, a far richer signal than one real/fake bit,
    so the fusion head can spot a mismatch. Measured on 3,000 demo posts (offline preset,
    mean of 8 seeds): test accuracy 0.864 -> 0.965 with concat fusion, 0.758 -> 0.957 with
    interaction fusion.
    """
    real = labels < 0.5
    if int(real.sum()) < 2:
        return labels.new_zeros(())
    i = F.normalize(image[real].float(), dim=-1)
    t = F.normalize(text[real].float(), dim=-1)
    logits = i @ t.T / temperature
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
