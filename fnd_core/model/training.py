"""Train the fake-news model: frozen-encoder head training on cached features, optional fine-tune.

Phase 1 encodes every labelled post once with the frozen encoders (feature cache on disk), then
trains projections + fusion head on those vectors: seconds on a CPU. Phase 2 (off by default)
unfreezes the encoders and fine-tunes end to end with a low learning rate. Both use AdamW,
linear warmup + cosine decay, gradient clipping, class weights and early stopping on the
validation loss; the decision threshold is then chosen on the validation split.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fnd_core.model import metrics
from fnd_core.model.config import DEFAULT_MAX_PIXELS, ModelConfig
from fnd_core.model.examples import PostExample

if TYPE_CHECKING:
    import torch

    from fnd_core.model.features import EncodedFeatures
    from fnd_core.model.network import FakeNewsModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    """Hyperparameters and plumbing of :func:`train` besides epochs and seed."""

    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_share: float = 0.1  # of all optimiser steps
    grad_clip: float = 1.0
    patience: int = 20  # epochs without a better val loss before stopping
    class_weights: bool = True  # both classes weigh the same, whatever the snapshot's mix
    group_weights: bool = True  # each leak group (reposts of one story) counts once
    modality_dropout: float = 0.0  # share of posts trained with one modality zeroed
    align_weight: float = 1.0  # image-text contrastive loss on real posts; 0 disables
    align_temperature: float = 0.2
    finetune: bool = False  # phase 2: unfreeze encoders
    finetune_epochs: int = 2
    finetune_lr: float = 2e-5  # encoders; the head gets 10x
    finetune_batch_size: int = 16
    encode_batch_size: int = 4  # images; small batches are fastest on a 2-core CPU
    num_workers: int = 0  # -1: auto (fnd_core.model.runtime.loader_workers)
    cpu_threads: int | None = None  # cap torch CPU threads while encoding (1 on shared CPUs)
    cache_dir: str | Path | None = None  # feature cache folder; None = no disk cache
    max_pixels: int = DEFAULT_MAX_PIXELS
    storage_options: Mapping[str, Any] | None = None
    precision: str = "auto"  # frozen-encoder features: fp32 | bf16 | auto (bf16 where native)
    # "balanced": 0.5, the decision of class-balanced training; "val": best balanced accuracy on
    # the val split. Measured on the MediaEval dev tweets (held-out events): val-chosen
    # thresholds landed at 0.04-0.12 and balanced accuracy at 0.455, against 0.866 at 0.5.
    threshold_policy: str = "balanced"

    def __post_init__(self) -> None:
        for name in ("batch_size", "patience", "finetune_epochs", "finetune_batch_size",
                     "encode_batch_size"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.lr <= 0 or self.finetune_lr <= 0:
            raise ValueError("learning rates must be positive")
        if not 0 <= self.warmup_share < 1:
            raise ValueError(f"warmup_share must be in [0, 1), got {self.warmup_share!r}")
        if self.align_weight < 0 or self.align_temperature <= 0:
            raise ValueError("align_weight must be >= 0 and align_temperature > 0")
        if self.threshold_policy not in ("balanced", "val"):
            raise ValueError(
                f"threshold_policy must be balanced or val, got {self.threshold_policy!r}"
            )
        if not 0 <= self.modality_dropout < 1:
            raise ValueError(f"modality_dropout must be in [0, 1), got {self.modality_dropout!r}")
        if self.grad_clip <= 0 or self.weight_decay < 0 or self.num_workers < -1:
            raise ValueError("grad_clip must be > 0, weight_decay >= 0, num_workers >= -1")


@dataclass
class SplitScores:
    """Labels and predicted P(fake) of one split, kept for plots and the gate."""

    post_ids: list[str]
    y_true: np.ndarray
    p_fake: np.ndarray


@dataclass
class TrainResult:
    """What :func:`train` hands back. ``metrics`` is JSON-ready (``model_versions.metrics``)."""

    model: FakeNewsModel
    config: ModelConfig
    threshold: float
    metrics: dict[str, dict | None]
    history: list[dict[str, float]]
    scores: dict[str, SplitScores]
    finetuned: bool
    device: str
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def head_samples_per_s(self) -> float:
        rates = [h["samples_per_s"] for h in self.history if h["phase"] == "head"]
        return float(np.median(rates)) if rates else 0.0


def train(
    examples: Sequence[PostExample],
    config: ModelConfig,
    *,
    epochs: int = 60,
    seed: int = 0,
    device: str = "auto",
    options: TrainOptions | None = None,
    model: FakeNewsModel | None = None,
    groups: Sequence[int] | None = None,
) -> TrainResult:
    """Train a model on the labelled ``examples`` (their ``split`` decides the role).

    Args:
        examples: posts; unlabelled ones are ignored. Needs train and val posts of both classes.
        config: the architecture; ignored when ``model`` is given (its config is used).
        epochs: most head-training epochs (early stopping may end sooner).
        seed: seeds torch, numpy and Python: same seed + same data = same model on CPU.
        device: ``auto`` (CUDA with bf16 autocast when present), ``cpu`` or ``cuda``.
        options: everything else (learning rate, fine-tuning, feature cache folder, ...).
        model: a prebuilt model to train instead of ``build_model(config)``.
        groups: leak group per example (:func:`fnd_core.model.grouping.leak_groups`): with
            ``options.group_weights`` each group counts once in the loss and the threshold.

    Returns:
        :class:`TrainResult` with the model (eval mode), threshold, metrics and history.
    """

    from fnd_core.model.features import encode_examples
    from fnd_core.model.network import build_model
    from fnd_core.model.runtime import resolve_device

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    options = options or TrainOptions()
    started = time.perf_counter()
    splits = _labelled_splits(examples)
    _seed_everything(seed)
    resolved = resolve_device(device)
    model = (model or build_model(config)).to(resolved)
    config = model.config
    model.set_encoders_trainable(False)

    everything = splits["train"] + splits["val"] + splits["test"]
    features = encode_examples(
        model, everything, cache_dir=options.cache_dir, **encode_kwargs(options)
    )
    by_split = _slice_features(features, splits)
    labels = {name: _labels(rows) for name, rows in splits.items()}
    weights = _split_weights(examples, groups, splits, options)
    _seed_everything(seed)  # encoding may consume RNG (DataLoader) or not (all cached): reset
    history = fit_head(
        model, by_split["train"], labels["train"], by_split["val"], labels["val"],
        epochs=epochs, options=options, seed=seed,
        w_train=weights["train"], w_val=weights["val"],
    )  # fmt: skip
    if options.finetune:
        history += _finetune(model, splits, options, seed)
        by_split = {
            name: encode_examples(model, rows, **encode_kwargs(options))
            for name, rows in splits.items()
        }
    model.eval()
    scores = _score_splits(model, splits, by_split)
    threshold = 0.5
    if options.threshold_policy == "val":
        threshold = metrics.choose_threshold(
            scores["val"].y_true, scores["val"].p_fake, weights=weights["val"].numpy()
        )
    report = {
        name: metrics.classification_report(s.y_true, s.p_fake, threshold)
        if len(s.y_true)
        else None
        for name, s in scores.items()
    }
    seconds = time.perf_counter() - started
    log.info(
        "trained %s/%s in %.1f s: threshold %.3f, val accuracy %.3f, test accuracy %s",
        config.preset, config.fusion, seconds, threshold, report["val"]["accuracy"],
        f"{report['test']['accuracy']:.3f}" if report["test"] else "n/a",
    )  # fmt: skip
    return TrainResult(
        model=model,
        config=config,
        threshold=threshold,
        metrics=report,
        history=history,
        scores=scores,
        finetuned=model.encoders_finetuned,
        device=str(resolved),
        seconds=seconds,
        counts={name: len(rows) for name, rows in splits.items()},
    )


def encode_kwargs(options: TrainOptions) -> dict[str, Any]:
    """How :func:`~fnd_core.model.features.encode_examples` should read and batch posts."""
    return {
        "batch_size": options.encode_batch_size,
        "num_workers": options.num_workers,
        "max_pixels": options.max_pixels,
        "storage_options": options.storage_options,
        "cpu_threads": options.cpu_threads,
        "precision": options.precision,
    }


def _split_weights(
    examples: Sequence[PostExample],
    groups: Sequence[int] | None,
    splits: dict[str, list[PostExample]],
    options: TrainOptions,
) -> dict[str, torch.Tensor]:
    """Per-post loss weights of each split (see :func:`fnd_core.model.grouping.group_weights`)."""
    import torch

    from fnd_core.model.grouping import group_weights

    group_of: dict[str, int] = {}
    if groups is not None and options.group_weights:
        group_of = {ex.post_id: int(g) for ex, g in zip(examples, groups, strict=True)}
    out = {}
    for name, rows in splits.items():
        split_groups = np.array([group_of.get(ex.post_id, -1 - i) for i, ex in enumerate(rows)])
        labels = np.array([ex.label for ex in rows], dtype=int)
        w = group_weights(split_groups, labels, balance_classes=options.class_weights)
        out[name] = torch.tensor(w, dtype=torch.float32)
    return out


def _labelled_splits(examples: Sequence[PostExample]) -> dict[str, list[PostExample]]:
    splits: dict[str, list[PostExample]] = {"train": [], "val": [], "test": []}
    for ex in examples:
        if ex.label is not None:
            splits[ex.split].append(ex)
    for name in ("train", "val"):
        classes = {ex.label for ex in splits[name]}
        if classes != {0, 1}:
            raise ValueError(
                f"the {name} split needs labelled posts of both classes (real and fake); "
                f"it has {len(splits[name])} labelled posts with labels {sorted(classes)}"
            )
    return splits


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _labels(rows: Sequence[PostExample]) -> torch.Tensor:
    import torch

    return torch.tensor([float(ex.label) for ex in rows], dtype=torch.float32)


def _slice_features(
    features: EncodedFeatures, splits: dict[str, list[PostExample]]
) -> dict[str, EncodedFeatures]:
    out, start = {}, 0
    for name in ("train", "val", "test"):
        out[name] = features.subset(range(start, start + len(splits[name])))
        start += len(splits[name])
    return out


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
) -> list[dict[str, float]]:
    """Phase 1: train projections + classifier on precomputed encoder features.

    ``w_train`` / ``w_val``: per-post loss weights (default: the two classes weigh the same
    when ``options.class_weights``). Keeps the weights of the epoch with the lowest weighted
    validation loss (early stopping).
    """
    import torch

    from fnd_core.model.grouping import group_weights
    from fnd_core.model.runtime import cpu_threads, module_device

    def default(y: torch.Tensor) -> torch.Tensor:
        w = group_weights(None, y.numpy().astype(int), balance_classes=options.class_weights)
        return torch.tensor(w, dtype=torch.float32)

    w_train = default(y_train) if w_train is None else w_train
    w_val = default(y_val) if w_val is None else w_val
    device = module_device(model)
    with cpu_threads(1, device):
        return _fit_head(
            model, train_features, y_train, val_features, y_val,
            epochs=epochs, options=options, seed=seed, device=device,
            w_train=w_train, w_val=w_val,
        )  # fmt: skip


def _fit_head(
    model: FakeNewsModel,
    train_features: EncodedFeatures,
    y_train: torch.Tensor,
    val_features: EncodedFeatures,
    y_val: torch.Tensor,
    *,
    epochs: int,
    options: TrainOptions,
    seed: int,
    device: torch.device,
    w_train: torch.Tensor,
    w_val: torch.Tensor,
) -> list[dict[str, float]]:
    import torch

    from fnd_core.model.objective import batch_loss, warmup_cosine
    from fnd_core.model.runtime import autocast

    head = model.head_parameters()
    optimizer = torch.optim.AdamW(head, lr=options.lr, weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(len(y_train) / options.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(epochs * steps_per_epoch, options.warmup_share)
    )
    train_x = _to_device(train_features, device)
    val_x = _to_device(val_features, device)
    y_train, y_val = y_train.to(device), y_val.to(device)
    w_train, w_val = w_train.to(device), w_val.to(device)
    generator = torch.Generator().manual_seed(seed)
    best = (math.inf, copy.deepcopy(model.head_state_dict()))
    history, stale = [], 0
    for epoch in range(1, epochs + 1):
        tick = time.perf_counter()
        model.train()
        total = 0.0
        for rows in torch.randperm(len(y_train), generator=generator).split(options.batch_size):
            rows = rows.to(device)
            with autocast(device):
                loss = batch_loss(
                    model, *_take(train_x, rows), y_train[rows], w_train[rows],
                    align_weight=options.align_weight, align_temperature=options.align_temperature,
                    modality_dropout=options.modality_dropout,
                )  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head, options.grad_clip)
            optimizer.step()
            schedule.step()
            total += loss.item() * len(rows)
        seconds = time.perf_counter() - tick
        record = {"phase": "head", "epoch": epoch, "train_loss": total / len(y_train)}
        record |= _validate(model, val_x, y_val, w_val)
        record |= {"lr": schedule.get_last_lr()[0], "samples_per_s": len(y_train) / seconds}
        history.append(record)
        _log_epoch(record, epochs)
        if record["val_loss"] < best[0] - 1e-4:
            best, stale = (record["val_loss"], copy.deepcopy(model.head_state_dict())), 0
        else:
            stale += 1
            if stale >= options.patience:
                log.info("early stop after epoch %d: val loss did not improve for %d", epoch, stale)
                break
    model.load_state_dict(best[1], strict=False)
    return history


def _to_device(features: EncodedFeatures, device: torch.device) -> tuple:
    return tuple(None if f is None else f.to(device) for f in (features.image, features.text))


def _take(features: tuple, rows: torch.Tensor) -> tuple:
    return tuple(None if f is None else f[rows] for f in features)


def _validate(
    model: FakeNewsModel, val_x: tuple, y_val: torch.Tensor, w_val: torch.Tensor
) -> dict[str, float]:
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


def _log_epoch(record: dict[str, float], epochs: int) -> None:
    log.info(
        "%s epoch %d/%d: train loss %.4f, val loss %.4f, val acc %.3f, val auc %.3f, "
        "lr %.2e, %.0f samples/s",
        record["phase"], record["epoch"], epochs, record["train_loss"], record["val_loss"],
        record["val_accuracy"], record["val_auc"], record["lr"], record["samples_per_s"],
    )  # fmt: skip


def _score_splits(
    model: FakeNewsModel,
    splits: dict[str, list[PostExample]],
    features: dict[str, EncodedFeatures],
) -> dict[str, SplitScores]:
    from fnd_core.model.features import head_proba

    return {
        name: SplitScores(
            post_ids=[ex.post_id for ex in rows],
            y_true=np.array([ex.label for ex in rows], dtype=int),
            p_fake=head_proba(model, features[name]),
        )
        for name, rows in splits.items()
    }


def _finetune(
    model: FakeNewsModel,
    splits: dict[str, list[PostExample]],
    options: TrainOptions,
    seed: int,
) -> list[dict[str, float]]:
    """Phase 2: end to end with unfrozen encoders (encoders at ``finetune_lr``, head at 10x)."""
    import torch

    from fnd_core.model.features import encode_examples
    from fnd_core.model.grouping import group_weights
    from fnd_core.model.objective import batch_loss, warmup_cosine
    from fnd_core.model.preprocess import PostDataset, make_loader
    from fnd_core.model.runtime import autocast, loader_workers, module_device

    device = module_device(model)
    model.set_encoders_trainable(True)
    train_rows = splits["train"]
    loader = make_loader(
        PostDataset(
            image_uris=[ex.image_uri for ex in train_rows] if model.config.uses_image else None,
            texts=[ex.text for ex in train_rows] if model.config.uses_text else None,
            labels=[ex.label for ex in train_rows],
            image_size=model.config.image_size,
            max_pixels=options.max_pixels,
            storage_options=options.storage_options,
        ),
        batch_size=options.finetune_batch_size,
        num_workers=loader_workers(options.num_workers, device),
        tokenize=model.text_encoder.tokenize if model.text_encoder is not None else None,
        shuffle=True,
        seed=seed,
    )
    optimizer = torch.optim.AdamW(
        [{"params": model.encoder_parameters(), "lr": options.finetune_lr},
         {"params": model.head_parameters(), "lr": options.finetune_lr * 10}],
        weight_decay=options.weight_decay,
    )  # fmt: skip
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(options.finetune_epochs * len(loader), options.warmup_share)
    )
    y_train, y_val = _labels(train_rows), _labels(splits["val"])
    balance = options.class_weights
    w_train = group_weights(None, y_train.numpy().astype(int), balance_classes=balance)
    weight_of_label = {int(y): float(w) for y, w in zip(y_train.tolist(), w_train, strict=True)}
    w_val = torch.tensor(
        group_weights(None, y_val.numpy().astype(int), balance_classes=balance),
        dtype=torch.float32,
    ).to(device)
    y_val = y_val.to(device)

    def validate() -> dict[str, float]:
        val = encode_examples(model, splits["val"], **encode_kwargs(options))
        return _validate(model, _to_device(val, device), y_val, w_val)

    best = (validate()["val_loss"], copy.deepcopy(model.state_dict()), False)  # phase 1's
    history = []
    for epoch in range(1, options.finetune_epochs + 1):
        tick, total = time.perf_counter(), 0.0
        model.train()
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with autocast(device):
                image = model.encode_images(batch["pixels"]) if "pixels" in batch else None
                text = None
                if "input_ids" in batch:
                    text = model.encode_texts(batch["input_ids"], batch["attention_mask"])
                weights = torch.tensor(
                    [weight_of_label[int(y)] for y in batch["label"].tolist()], device=device
                )
                loss = batch_loss(
                    model, image, text, batch["label"], weights,
                    align_weight=options.align_weight, align_temperature=options.align_temperature,
                    modality_dropout=options.modality_dropout,
                )  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch["label"])
        seconds = time.perf_counter() - tick
        record = {"phase": "finetune", "epoch": epoch, "train_loss": total / len(train_rows)}
        record |= validate()
        record |= {"lr": schedule.get_last_lr()[0], "samples_per_s": len(train_rows) / seconds}
        history.append(record)
        _log_epoch(record, options.finetune_epochs)
        if record["val_loss"] < best[0]:
            best = (record["val_loss"], copy.deepcopy(model.state_dict()), True)
    model.load_state_dict(best[1])
    model.encoders_finetuned = best[2]
    if not best[2]:
        log.info("fine-tuning did not lower the val loss: keeping the phase-1 model")
    model.set_encoders_trainable(False)
    return history
