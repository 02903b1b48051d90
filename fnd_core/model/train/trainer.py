"""Train the fake-news model, and what a training run hands back.

Phase 1 encodes every labelled post once with the frozen encoders (feature cache on disk), then
trains projections + fusion head on those vectors: seconds on a CPU. Phase 2 (off by default)
unfreezes the encoders and fine-tunes end to end with a low learning rate. Both use AdamW,
linear warmup + cosine decay, gradient clipping, class weights and early stopping on the
validation loss; the decision threshold is then chosen on the validation split.

The run reads its recipe from :mod:`~fnd_core.model.train.recipe` and its loops from
:mod:`~fnd_core.model.train.heads` and :mod:`~fnd_core.model.train.finetuning`; it hands back
:class:`TrainResult` (scores per split, the threshold, the reports), which the pipeline reads
to register a candidate and :mod:`fnd_core.model.train.plots` draws.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fnd_core.model import metrics
from fnd_core.model.config import ModelConfig
from fnd_core.model.examples import PostExample
from fnd_core.model.train.recipe import TrainOptions, encode_kwargs

if TYPE_CHECKING:
    import torch

    from fnd_core.model.char_ngrams import CharNgramModel, NgramConfig
    from fnd_core.model.features.encoding import EncodedFeatures
    from fnd_core.model.network import FakeNewsModel
    from fnd_core.model.novelty import NoveltyReference


@dataclass
class SplitScores:
    """Labels and predicted P(fake) of one split, kept for plots and the gate."""

    post_ids: list[str]
    y_true: np.ndarray
    p_fake: np.ndarray


@dataclass
class TrainResult:
    """What :func:`~fnd_core.model.train.trainer.train` hands back. ``metrics`` is JSON-ready
    (``model_versions.metrics``)."""

    model: FakeNewsModel | CharNgramModel  # the candidate pipeline also ships char n-grams
    config: ModelConfig | NgramConfig
    threshold: float
    metrics: dict[str, Any]  # reports per split (None: empty), cv, kind, calibration, ...
    history: list[dict[str, Any]]
    scores: dict[str, SplitScores]
    finetuned: bool
    device: str
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    novelty: NoveltyReference | None = None  # the training topics scoring measures posts against

    @property
    def head_samples_per_s(self) -> float:
        rates = [h["samples_per_s"] for h in self.history if h["phase"] == "head"]
        return float(np.median(rates)) if rates else 0.0


def score_splits(
    model: FakeNewsModel,
    splits: dict[str, list[PostExample]],
    features: dict[str, EncodedFeatures],
) -> dict[str, SplitScores]:
    """The trained head's P(fake) for every post of every split."""
    from fnd_core.model.features.inference import head_proba

    return {
        name: SplitScores(
            post_ids=[ex.post_id for ex in rows],
            y_true=np.array([ex.label for ex in rows], dtype=int),
            p_fake=head_proba(model, features[name]),
        )
        for name, rows in splits.items()
    }


def decision_threshold(policy: str, val: SplitScores, val_weights: torch.Tensor) -> float:
    """0.5 (``balanced``), or the best weighted balanced accuracy on the val split (``val``)."""
    if policy == "val":
        return metrics.choose_threshold(val.y_true, val.p_fake, weights=val_weights.numpy())
    return 0.5


def split_reports(scores: dict[str, SplitScores], threshold: float) -> dict[str, dict | None]:
    """Classification report per split at ``threshold``; None for an empty split."""
    return {
        name: metrics.classification_report(s.y_true, s.p_fake, threshold)
        if len(s.y_true)
        else None
        for name, s in scores.items()
    }


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
        groups: leak group per example (:func:`fnd_core.model.splits.grouping.leak_groups`): with
            ``options.group_weights`` each group counts once in the loss and the threshold.

    Returns:
        :class:`TrainResult` with the model (eval mode), threshold, metrics and history.
    """
    from fnd_core.model.network import build_model
    from fnd_core.model.runtime import resolve_device
    from fnd_core.model.train import recipe

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    options = options or TrainOptions()
    started = time.perf_counter()
    splits = recipe.labelled_splits(examples)
    recipe.seed_everything(seed)
    resolved = resolve_device(device)
    model = (model or build_model(config)).to(resolved)
    model.set_encoders_trainable(False)
    by_split = _encode_splits(model, splits, options)
    weights = recipe.split_weights(examples, groups, splits, options)
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
    from fnd_core.model.features.encoding import encode_examples
    from fnd_core.model.train.recipe import slice_features

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
    from fnd_core.model.train.finetuning import finetune
    from fnd_core.model.train.heads import fit_head
    from fnd_core.model.train.recipe import label_tensor, seed_everything

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
