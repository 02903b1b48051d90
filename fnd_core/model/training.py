"""Train the fake-news model: frozen-encoder head training on cached features, optional fine-tune.

Phase 1 encodes every labelled post once with the frozen encoders (feature cache on disk), then
trains projections + fusion head on those vectors: seconds on a CPU. Phase 2 (off by default)
unfreezes the encoders and fine-tunes end to end with a low learning rate. Both use AdamW,
linear warmup + cosine decay, gradient clipping, class weights and early stopping on the
validation loss; the decision threshold is then chosen on the validation split.

This module is the run from start to end; its parts live beside it: the options
(:mod:`~fnd_core.model.train_options`), the inputs and weights
(:mod:`~fnd_core.model.train_inputs`), phase 1 (:mod:`~fnd_core.model.head_training`),
phase 2 (:mod:`~fnd_core.model.finetuning`) and the results
(:mod:`~fnd_core.model.train_results`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fnd_core.model.config import ModelConfig
from fnd_core.model.examples import PostExample
from fnd_core.model.train_options import TrainOptions, encode_kwargs
from fnd_core.model.train_results import TrainResult, decision_threshold, split_reports

if TYPE_CHECKING:
    import torch

    from fnd_core.model.feature_encoding import EncodedFeatures
    from fnd_core.model.network import FakeNewsModel

log = logging.getLogger(__name__)


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
    from fnd_core.model import train_inputs
    from fnd_core.model.network import build_model
    from fnd_core.model.runtime import resolve_device

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    options = options or TrainOptions()
    started = time.perf_counter()
    splits = train_inputs.labelled_splits(examples)
    train_inputs.seed_everything(seed)
    resolved = resolve_device(device)
    model = (model or build_model(config)).to(resolved)
    model.set_encoders_trainable(False)
    by_split = _encode_splits(model, splits, options)
    weights = train_inputs.split_weights(examples, groups, splits, options)
    history = _train_phases(model, splits, by_split, weights, epochs, options, seed)
    if options.finetune:  # the encoders changed: so did their features
        by_split = _encode_splits(model, splits, options, cache=False)
    return _result(model, splits, by_split, weights, history, options, started, str(resolved))


def _encode_splits(
    model: FakeNewsModel,
    splits: dict[str, list[PostExample]],
    options: TrainOptions,
    *,
    cache: bool = True,
) -> dict[str, EncodedFeatures]:
    """Each split's features: one pass through the feature cache, or (``cache=False``,
    after fine-tuning) each split encoded afresh with no cache."""
    from fnd_core.model.feature_encoding import encode_examples
    from fnd_core.model.train_inputs import slice_features

    if not cache:
        return {
            name: encode_examples(model, rows, **encode_kwargs(options))
            for name, rows in splits.items()
        }
    everything = splits["train"] + splits["val"] + splits["test"]
    features = encode_examples(
        model, everything, cache_dir=options.cache_dir, **encode_kwargs(options)
    )
    return slice_features(features, splits)


def _train_phases(
    model: FakeNewsModel,
    splits: dict[str, list[PostExample]],
    by_split: dict[str, EncodedFeatures],
    weights: dict[str, torch.Tensor],
    epochs: int,
    options: TrainOptions,
    seed: int,
) -> list[dict[str, Any]]:
    """Phase 1 on the cached features, then phase 2 when ``options.finetune``."""
    from fnd_core.model.finetuning import finetune
    from fnd_core.model.head_training import fit_head
    from fnd_core.model.train_inputs import label_tensor, seed_everything

    labels = {name: label_tensor(rows) for name, rows in splits.items()}
    seed_everything(seed)  # encoding may consume RNG (DataLoader) or not (all cached): reset
    history = fit_head(
        model, by_split["train"], labels["train"], by_split["val"], labels["val"],
        epochs=epochs, options=options, seed=seed,
        w_train=weights["train"], w_val=weights["val"],
    )  # fmt: skip
    if options.finetune:
        history += finetune(model, splits, options, seed)
    return history


def _result(
    model: FakeNewsModel,
    splits: dict[str, list[PostExample]],
    by_split: dict[str, EncodedFeatures],
    weights: dict[str, torch.Tensor],
    history: list[dict[str, Any]],
    options: TrainOptions,
    started: float,
    device: str,
) -> TrainResult:
    """Score every split with the trained model, choose the threshold, report."""
    from fnd_core.model.train_results import score_splits

    model.eval()
    scores = score_splits(model, splits, by_split)
    threshold = decision_threshold(options.threshold_policy, scores["val"], weights["val"])
    report = split_reports(scores, threshold)
    val_report, test_report = report["val"], report["test"]
    if val_report is None:  # labelled_splits refuses an empty val split
        raise ValueError("the val split is empty")
    seconds = time.perf_counter() - started
    config = model.config
    log.info(
        "trained %s/%s in %.1f s: threshold %.3f, val accuracy %.3f, test accuracy %s",
        config.preset, config.fusion, seconds, threshold, val_report["accuracy"],
        f"{test_report['accuracy']:.3f}" if test_report else "n/a",
    )  # fmt: skip
    return TrainResult(
        model=model,
        config=config,
        threshold=threshold,
        metrics=report,
        history=history,
        scores=scores,
        finetuned=model.encoders_finetuned,
        device=device,
        seconds=seconds,
        counts={name: len(rows) for name, rows in splits.items()},
    )
