"""Fitting heads on cached, frozen-encoder features: phase 1 of training.

Two ways, one per head kind. The projections + fusion head are fitted by stochastic steps:
:func:`fit_head` fits one (the trainer's run, the final model of a retraining), as a stack of
one of :mod:`fnd_core.model.train.stacked_heads`, which fits every fold of a cross-validation
at once by the same recipe; :func:`fit_head_looped`, one step of one head at a time, remains
for the topic adversary. Phase 2 (:mod:`fnd_core.model.train.finetuning`) reuses their pieces
(validation figures, epoch records, the optimiser step). The ``linear`` head
(:class:`~fnd_core.model.config.ModelConfig`) is instead solved exactly, a weighted logistic
regression on unit-length features by scikit-learn's L-BFGS (:func:`fit_linear_head`): no
epochs, no learning rate, the same weights from the same rows every time, copied into the
model's one ``nn.Linear`` so the artifact, scorer and drift checks treat it as any other.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from fnd_core.model.train.records import epoch_record, log_epoch, validation_figures

if TYPE_CHECKING:
    import torch

    from fnd_core.model.features.encoding import EncodedFeatures
    from fnd_core.model.network import FakeNewsModel
    from fnd_core.model.train.recipe import TrainOptions
    from fnd_core.model.train.topic_adversary import TopicAdversary


Features = tuple["torch.Tensor | None", "torch.Tensor | None"]  # (image, text), either may be None

log = logging.getLogger(__name__)


def fit_head(
    model: FakeNewsModel,
    train_features: EncodedFeatures,
    y_train: torch.Tensor,
    val_features: EncodedFeatures,
    y_val: torch.Tensor,
    *,
    epochs: int,
    options: TrainOptions,
    seed: int,
    w_train: torch.Tensor | None = None,
    w_val: torch.Tensor | None = None,
    topics_train: torch.Tensor | None = None,
) -> list[dict[str, Any]]:
    """Phase 1: train projections + classifier on precomputed encoder features.

    ``w_train`` / ``w_val``: per-post loss weights (default: the two classes weigh the same
    when ``options.class_weights``). Keeps the weights of the epoch with the lowest weighted
    validation loss (early stopping). ``topics_train`` (topic ids) with
    ``options.topic_adversary``: a topic discriminator is trained against the head, one step
    at a time (:func:`fit_head_looped`); otherwise the head is a stack of one
    (:mod:`fnd_core.model.train.stacked_heads`), as every fold of the gate's estimate is.
    """
    import torch

    from fnd_core.model.train.recipe import class_weights
    from fnd_core.model.train.stacked_heads import HeadJob, fit_heads, stackable

    def default(y: torch.Tensor) -> torch.Tensor:
        return torch.tensor(class_weights(y, options), dtype=torch.float32)

    w_train = default(y_train) if w_train is None else w_train
    w_val = default(y_val) if w_val is None else w_val
    if not stackable(options) or model.config.head != "mlp":
        return fit_head_looped(
            model, train_features, y_train, val_features, y_val, epochs=epochs,
            options=options, seed=seed, w_train=w_train, w_val=w_val, topics_train=topics_train,
        )  # fmt: skip
    both = train_features.concat(val_features)
    n = len(y_train)
    job = HeadJob(np.arange(n), np.arange(n, n + len(y_val)), w_train.numpy(), w_val.numpy(), seed)
    labels = torch.cat([y_train, y_val]).cpu().numpy()
    return fit_heads([model], both, labels, [job], epochs=epochs, options=options, seed=seed)[0]


def fit_head_looped(
    model: FakeNewsModel,
    train_features: EncodedFeatures,
    y_train: torch.Tensor,
    val_features: EncodedFeatures,
    y_val: torch.Tensor,
    *,
    epochs: int,
    options: TrainOptions,
    seed: int,
    w_train: torch.Tensor,
    w_val: torch.Tensor,
    topics_train: torch.Tensor | None = None,
) -> list[dict[str, Any]]:
    """:func:`fit_head` one step of one head at a time (what a topic adversary needs; and the
    baseline ``benchmarks/train_throughput.py`` measures the stack against)."""
    from fnd_core.model.runtime import cpu_threads, module_device

    device = module_device(model)
    with cpu_threads(1, device):
        topics = None if topics_train is None else topics_train.to(device)
        train = _Posts(
            to_device(train_features, device), y_train.to(device), w_train.to(device), topics
        )
        val = _Posts(to_device(val_features, device), y_val.to(device), w_val.to(device))
        return _fit_head(model, train, val, epochs=epochs, options=options, seed=seed)


@dataclass
class _Posts:
    """One split on the model's device: features (image, text), labels, loss weights."""

    x: Features
    y: torch.Tensor
    w: torch.Tensor
    topics: torch.Tensor | None = None  # topic ids, for a topic adversary


@dataclass
class Optimiser:
    """AdamW under a LambdaLR schedule, with gradient clipping of ``params``: one step."""

    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    grad_clip: float

    def step(self, loss: torch.Tensor) -> None:
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        self.schedule.step()

    @property
    def lr(self) -> float:
        return float(self.schedule.get_last_lr()[0])


def _head_optimiser(
    model: FakeNewsModel,
    options: TrainOptions,
    total_steps: int,
    extra: list[torch.nn.Parameter] | None = None,
) -> Optimiser:
    import torch

    from fnd_core.model.train.objective import warmup_cosine

    head = model.head_parameters() + (extra or [])
    optimizer = torch.optim.AdamW(head, lr=options.lr, weight_decay=options.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total_steps, options.warmup_share)
    )
    return Optimiser(head, optimizer, schedule, options.grad_clip)


def _fit_head(
    model: FakeNewsModel,
    train: _Posts,
    val: _Posts,
    *,
    epochs: int,
    options: TrainOptions,
    seed: int,
) -> list[dict[str, Any]]:
    """The epochs, early-stopped on the weighted val loss; the best epoch's head is kept."""
    import torch

    n = len(train.y)
    adversary = _adversary(model, train, options)
    optimiser = _head_optimiser(
        model, options, epochs * math.ceil(n / options.batch_size),
        list(adversary.parameters()) if adversary else None,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    best = (math.inf, copy.deepcopy(model.head_state_dict()))
    history, stale = [], 0
    for epoch in range(1, epochs + 1):
        tick = time.perf_counter()
        total = _head_epoch(model, train, optimiser, generator, options, adversary)
        samples_per_s = n / (time.perf_counter() - tick)
        validation = validate(model, val.x, val.y, val.w)
        record = epoch_record(
            "head", epoch, total / n, validation, optimiser.lr, samples_per_s=samples_per_s
        )
        history.append(record)
        log_epoch(record, epochs)
        if record["val_loss"] < best[0] - 1e-4:
            best, stale = (record["val_loss"], copy.deepcopy(model.head_state_dict())), 0
        else:
            stale += 1
            if stale >= options.patience:
                log.info("early stop after epoch %d: val loss did not improve for %d", epoch, stale)
                break
    model.load_state_dict(best[1], strict=False)
    return history


def _adversary(model: FakeNewsModel, train: _Posts, options: TrainOptions) -> TopicAdversary | None:
    """The topic discriminator when asked for and possible (an mlp head, >= 2 topics)."""
    if not options.topic_adversary or train.topics is None or model.config.head != "mlp":
        return None
    n_topics = int(train.topics.max()) + 1
    if n_topics < 2:
        return None
    from fnd_core.model.train.topic_adversary import TopicAdversary

    adversary = TopicAdversary(model.config.hidden, n_topics, options.topic_adversary)
    return adversary.to(train.y.device)


def _head_epoch(
    model: FakeNewsModel,
    train: _Posts,
    optimiser: Optimiser,
    generator: torch.Generator,
    options: TrainOptions,
    adversary: TopicAdversary | None = None,
) -> float:
    """One pass over the training posts in a fresh random order; the loss summed over posts."""
    import torch

    from fnd_core.model.runtime import autocast
    from fnd_core.model.train.objective import batch_loss

    device = train.y.device
    model.train()
    total = 0.0
    for rows in torch.randperm(len(train.y), generator=generator).split(options.batch_size):
        rows = rows.to(device)
        with autocast(device):
            loss = batch_loss(
                model, *take(train.x, rows), train.y[rows], train.w[rows],
                align_weight=options.align_weight, align_temperature=options.align_temperature,
                modality_dropout=options.modality_dropout, adversary=adversary,
                topics=None if train.topics is None else train.topics[rows],
            )  # fmt: skip
        optimiser.step(loss)
        total += loss.item() * len(rows)
    return total


def to_device(features: EncodedFeatures, device: torch.device) -> Features:
    """(image, text) features on ``device`` (either may be None)."""
    image, text = (None if f is None else f.to(device) for f in (features.image, features.text))
    return image, text


def take(features: Features, rows: torch.Tensor) -> Features:
    image, text = (None if f is None else f[rows] for f in features)
    return image, text


def validate(
    model: FakeNewsModel, val_x: Features, y_val: torch.Tensor, w_val: torch.Tensor
) -> dict[str, float]:
    """Weighted val loss, accuracy, balanced accuracy and ROC-AUC of the head, in eval mode."""
    import torch

    model.eval()
    with torch.inference_mode():
        logits = model.head_forward(*val_x)
    return validation_figures(logits, y_val, w_val)


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
