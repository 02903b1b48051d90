"""An adversarial topic discriminator: the fusion head's hidden layer is trained so that the
topic (news event) of a post cannot be read from it, as EANN (Wang et al., KDD 2018) did on
this benchmark's tweets.

A small classifier predicts each training post's topic from the head's hidden representation
through a gradient reversal layer (Ganin & Lempitsky, 2015): the classifier learns to tell
topics apart, while the reversed gradient pushes the representation to hide them. Training
only: the discriminator is not part of the model or its artifact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from fnd_core.model.network import FakeNewsModel


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.strength * grad, None


class TopicAdversary(nn.Module):
    """``loss(model, image, text, topics)``: the weighted cross-entropy of telling the posts'
    topics from the head's hidden layer, its gradient reversed into the head."""

    def __init__(self, hidden: int, n_topics: int, weight: float) -> None:
        super().__init__()
        if n_topics < 2 or weight <= 0:
            raise ValueError(f"a topic adversary needs >= 2 topics and a weight > 0, got "
                             f"{n_topics} and {weight}")  # fmt: skip
        self.weight = weight
        self.discriminator = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(),
                                           nn.Linear(hidden, n_topics))  # fmt: skip

    def loss(
        self,
        model: FakeNewsModel,
        image: torch.Tensor | None,
        text: torch.Tensor | None,
        topics: torch.Tensor,
    ) -> torch.Tensor:
        hidden = model.hidden(image, text)
        logits = self.discriminator(_ReverseGradient.apply(hidden.float(), 1.0))
        return self.weight * F.cross_entropy(logits, topics)


def topic_ids(topics: object) -> torch.Tensor:
    """Topic labels (any hashable values) as 0..K-1 class ids."""
    import numpy as np

    _, ids = np.unique(np.asarray(topics).astype(str), return_inverse=True)
    return torch.as_tensor(ids, dtype=torch.long)
