"""Phase 1 of training: projections + fusion head fitted on cached, frozen-encoder features.

The loop every training path shares: :func:`~fnd_core.model.training.train` runs it once,
the pipeline's grouped cross-validation once per fold. Its pieces (validation figures, epoch
records, the optimiser step) are reused by phase 2 (:mod:`fnd_core.model.finetuning`).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fnd_core.model import metrics

if TYPE_CHECKING:
    import torch

    from fnd_core.model.feature_encoding import EncodedFeatures
    from fnd_core.model.network import FakeNewsModel
    from fnd_core.model.topic_adversary import TopicAdversary
    from fnd_core.model.train_options import TrainOptions

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
    ``options.topic_adversary``: a topic discriminator is trained against the head.
    """
    import torch

    from fnd_core.model.runtime import cpu_threads, module_device
    from fnd_core.model.train_inputs import class_weights

    def default(y: torch.Tensor) -> torch.Tensor:
        return torch.tensor(class_weights(y, options), dtype=torch.float32)

    w_train = default(y_train) if w_train is None else w_train
    w_val = default(y_val) if w_val is None else w_val
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

    from fnd_core.model.objective import warmup_cosine

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
    from fnd_core.model.topic_adversary import TopicAdversary

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

    from fnd_core.model.objective import batch_loss
    from fnd_core.model.runtime import autocast

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

    from fnd_core.model.objective import weighted_bce

    model.eval()
    with torch.inference_mode():
        logits = model.head_forward(*val_x).float()
        loss = float(weighted_bce(logits, y_val, w_val))
    p = torch.sigmoid(logits).cpu().numpy()
    y = y_val.cpu().numpy()
    auc = metrics.roc_auc(y, p)
    return {
        "val_loss": loss,
        "val_accuracy": metrics.accuracy(y, metrics.predict_labels(p, 0.5)),
        "val_balanced_accuracy": metrics.balanced_accuracy(y, metrics.predict_labels(p, 0.5)),
        "val_auc": float("nan") if auc is None else auc,
    }


def epoch_record(
    phase: str,
    epoch: int,
    train_loss: float,
    validation: dict[str, float],
    lr: float,
    *,
    samples_per_s: float,
) -> dict[str, Any]:
    """One row of the training history (what the curves plot): numbers, and the phase."""
    record = {"phase": phase, "epoch": epoch, "train_loss": train_loss}
    return record | validation | {"lr": lr, "samples_per_s": samples_per_s}


def log_epoch(record: dict[str, Any], epochs: int) -> None:
    log.info(
        "%s epoch %d/%d: train loss %.4f, val loss %.4f, val acc %.3f, val auc %.3f, "
        "lr %.2e, %.0f samples/s",
        record["phase"], record["epoch"], epochs, record["train_loss"], record["val_loss"],
        record["val_accuracy"], record["val_auc"], record["lr"], record["samples_per_s"],
    )  # fmt: skip
