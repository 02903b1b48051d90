"""Training a candidate: the recipe cross-validated on grouped folds, the artifact trained on
the whole snapshot, then saved and registered.

The ``train`` step of retraining. Its figures (``metrics.cv``; ``metrics.test``, the pooled
out-of-fold report) come from models that never saw the held-out posts' pictures or captions;
the baselines and the champion's recipe are measured on the same folds, so the gate
(:mod:`fnd_core.pipeline.retrain`) compares like with like. The version id is a function of
the snapshot, run and recipe, so a retried task finds what its first try registered.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fnd_core.io import storage
from fnd_core.model.grouping import leak_groups, leak_report
from fnd_core.pipeline import registry
from fnd_core.pipeline.training_snapshot import load_examples
from fnd_core.settings import Settings, default

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from fnd_core.model.config import ModelConfig
    from fnd_core.model.examples import PostExample
    from fnd_core.model.feature_encoding import EncodedFeatures
    from fnd_core.model.network import FakeNewsModel
    from fnd_core.model.train_options import TrainOptions
    from fnd_core.model.train_results import TrainResult
    from fnd_core.pipeline.evaluation import Recipe

log = logging.getLogger(__name__)

DEFAULT_EPOCHS: int = default("train_epochs")


def train_options(settings: Settings) -> TrainOptions:
    """The training options of this deployment (feature cache, batching, precision)."""
    from fnd_core.model.train_options import TrainOptions

    return TrainOptions(
        cache_dir=str(settings.home / "feature_cache"),
        encode_batch_size=settings.batch_size,
        num_workers=settings.num_workers,
        max_pixels=settings.max_image_pixels,
        cpu_threads=settings.cpu_threads or None,
        precision=settings.inference_precision,
    )


def train_candidate(
    engine: Engine,
    settings: Settings,
    snap: dict[str, Any],
    *,
    preset: str | None = None,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    ablation: str | None = None,
    fusion: str = "concat",
    shuffle_labels: bool = False,
    run_id: str = "cli",
) -> dict[str, Any]:
    """Cross-validate the recipe on grouped folds, train on the whole snapshot, register.

    The candidate's figures (``metrics.cv``; ``metrics.test`` = its pooled out-of-fold
    report) come from models that never saw the held-out posts' pictures or captions; the
    baselines and the champion's recipe are measured on the same folds. The artifact is then
    trained on every labelled post (one grouped fold early-stops it).
    ``shuffle_labels`` permutes the labels (a sanity check: the gate must refuse it).
    """
    from fnd_core.pipeline import evaluation

    preset = preset or settings.model_preset
    version = candidate_version(
        snap, run_id, preset=preset, fusion=fusion, ablation=ablation, seed=seed, epochs=epochs,
        shuffle_labels=shuffle_labels,
    )  # fmt: skip
    done = _already_trained(engine, version)
    if done is not None:
        return done
    examples = _snapshot_examples(engine, snap, seed=seed, shuffle_labels=shuffle_labels)
    config = _candidate_config(settings, preset, fusion=fusion, ablation=ablation)
    recipe = evaluation.Recipe(epochs=epochs, options=train_options(settings), seed=seed)
    result, n_groups = _cross_validate_and_train(engine, settings, examples, config, recipe)
    return _save_and_register(
        engine, settings, snap, result, config, version,
        preset=preset, epochs=epochs, seed=seed, ablation=ablation,
        shuffle_labels=shuffle_labels, run_id=run_id, n_groups=n_groups,
    )  # fmt: skip


def _snapshot_examples(
    engine: Engine, snap: dict[str, Any], *, seed: int, shuffle_labels: bool
) -> list[PostExample]:
    """The snapshot's posts; their labels permuted (seeded) when ``shuffle_labels``."""
    import dataclasses
    import random

    examples = load_examples(
        engine, as_of=datetime.fromisoformat(snap["as_of"]), max_posts=snap.get("max_posts")
    )
    if shuffle_labels:
        labels = [e.label for e in examples]
        random.Random(seed).shuffle(labels)
        examples = [dataclasses.replace(e, label=y) for e, y in zip(examples, labels, strict=True)]
    return examples


def _candidate_config(
    settings: Settings, preset: str, *, fusion: str, ablation: str | None
) -> ModelConfig:
    """The candidate's architecture: ``ablation`` (text or image) keeps one modality."""
    from fnd_core.model.config import ModelConfig

    modalities = {"text": "text", "image": "image", None: "both"}[ablation]
    return ModelConfig.for_preset(
        preset,
        image_size=settings.image_size,
        max_tokens=settings.max_tokens,
        fusion=fusion,
        modalities=modalities,
    )


def _cross_validate_and_train(
    engine: Engine,
    settings: Settings,
    examples: list[PostExample],
    config: ModelConfig,
    recipe: Recipe,
) -> tuple[TrainResult, int]:
    """The artifact, with the cross-validated figures of it, the baselines and the champion's
    recipe in its metrics; and the number of leak groups."""
    import numpy as np

    from fnd_core.model.metrics import score_histogram
    from fnd_core.pipeline import evaluation

    groups = leak_groups(examples)
    y = evaluation.labels_of(examples)
    base, features = _frozen_features(examples, config, recipe.options)
    metric = settings.gate_metric
    plan, cv, oof, baselines = evaluation.gate_evidence(
        base, config, features, y, groups, recipe,
        n_folds=settings.cv_folds, repeats=settings.cv_repeats, metric=metric,
    )  # fmt: skip
    log.info("grouped cross-validation: %s", leak_report(groups, plan.repeats[0]))
    champion = _champion_recipe(engine, base, config, features, y, groups, plan, recipe, metric)
    log.info(
        "cross-validated %s: candidate %s; prior %s; text baseline %s; champion recipe %s",
        metric, evaluation.brief(cv), evaluation.brief(baselines.get("prior")),
        evaluation.brief(baselines.get("text_lr")), evaluation.brief(champion.get("cv")),
    )  # fmt: skip
    result = _train_final(base, config, examples, groups, y, plan, recipe)
    result.metrics["test"] = cv.pop("report")
    result.scores["test"] = _oof_scores(examples, y, oof[0])
    result.metrics |= {
        "cv": cv,
        "baselines": {k: _without_report(v) for k, v in baselines.items()},
        "champion_recipe": champion,
        "leak": leak_report(groups, plan.repeats[0]) | {"split_policy": "grouped_stratified_kfold"},
        # How the recipe scores posts it did not train on: the reference of the drift checks.
        "score_histogram": score_histogram(oof[0]),
    }
    return result, int(np.unique(groups).size)


def _frozen_features(
    examples: list[PostExample], config: ModelConfig, options: TrainOptions
) -> tuple[FakeNewsModel, EncodedFeatures]:
    """A fresh model with frozen encoders, and its features of every post (through the
    cache): what every fold's head trains on."""
    from fnd_core.model.feature_encoding import encode_examples
    from fnd_core.model.network import build_model
    from fnd_core.model.runtime import resolve_device
    from fnd_core.model.train_options import encode_kwargs

    base = build_model(config).to(resolve_device("auto"))
    base.set_encoders_trainable(False)
    features = encode_examples(
        base, examples, cache_dir=options.cache_dir, **encode_kwargs(options)
    )
    return base, features


def _without_report(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "report"}


def _oof_scores(examples: list[PostExample], y, p):
    from fnd_core.model.train_results import SplitScores

    return SplitScores(post_ids=[e.post_id for e in examples], y_true=y, p_fake=p)


def _train_final(base, config, examples, groups, y, plan, recipe) -> TrainResult:
    """The artifact: trained on every labelled post; one grouped fold early-stops it."""
    import dataclasses

    from fnd_core.model.grouping import early_stopping_split
    from fnd_core.model.training import train
    from fnd_core.pipeline.evaluation import fresh_head

    val = set(early_stopping_split(y, groups, n_folds=plan.n_folds, seed=recipe.seed).tolist())
    roles = [
        dataclasses.replace(e, split="val" if i in val else "train") for i, e in enumerate(examples)
    ]
    return train(
        roles, config, epochs=recipe.epochs, seed=recipe.seed, options=recipe.options,
        model=fresh_head(base, config, recipe.seed), groups=groups,
    )  # fmt: skip


def _champion_recipe(engine, base, config, features, y, groups, plan, recipe, metric):
    """The champion's recipe retrained on the candidate's folds, or why it could not be."""
    from fnd_core.model.config import ModelConfig
    from fnd_core.pipeline import evaluation

    champion = registry.current_champion(engine)
    if champion is None:
        return {"version": None, "cv": None, "note": "no champion yet"}
    known = set(ModelConfig.__dataclass_fields__)
    try:
        champ_config = ModelConfig.from_dict(
            {k: v for k, v in champion.config.items() if k in known}
        )
    except ValueError as exc:
        return {"version": champion.version, "cv": None, "note": f"unreadable config: {exc}"}
    same_encoders = all(
        getattr(champ_config, k) == getattr(config, k)
        for k in ("preset", "image_size", "max_tokens")
    )
    has_inputs = (not champ_config.uses_image or features.image is not None) and (
        not champ_config.uses_text or features.text is not None
    )
    if not (same_encoders and has_inputs):
        return {
            "version": champion.version,
            "cv": None,
            "note": "other encoders than the candidate's: not comparable on these features",
        }
    epochs = int(champion.config.get("epochs") or recipe.epochs)
    champ_recipe = evaluation.Recipe(epochs=epochs, options=recipe.options, seed=recipe.seed)
    cv, _ = evaluation.cross_validate(
        base, champ_config, features, y, groups, plan, champ_recipe, metric=metric
    )
    return {"version": champion.version, "cv": _without_report(cv), "note": "same folds"}


def candidate_version(snap: dict[str, Any], run_id: str, **recipe: Any) -> str:
    """The candidate's version id: a function of the snapshot, the run and the recipe.

    A retried ``train`` task therefore finds the version its first try registered instead of
    leaving an orphan candidate behind.
    """
    salt = f"{run_id}-{snap['as_of']}-" + "-".join(f"{k}={recipe[k]}" for k in sorted(recipe))
    return registry.new_version_id(datetime.fromisoformat(snap["as_of"]), salt)


def _already_trained(engine: Engine, version: str) -> dict[str, Any] | None:
    """The summary of ``version`` when a previous try of this task registered it."""
    try:
        existing = registry.get_version(engine, version)
    except LookupError:
        return None
    cv = existing.metrics.get("cv") or {}
    log.info("candidate %s was registered by an earlier try of this task: reused", version)
    return {
        "version": version,
        "artifact_uri": existing.artifact_uri,
        "gate_metric": cv.get("metric"),
        "gate_estimate": cv.get("estimate"),
        "test_accuracy": (existing.metrics.get("test") or {}).get("accuracy"),
        "seconds": 0.0,
        "reused": True,
    }


def _save_and_register(
    engine, settings, snap, result, config, version, *, preset, epochs, seed, ablation,
    shuffle_labels, run_id, n_groups,
) -> dict[str, Any]:  # fmt: skip
    from fnd_core.model.artifacts import save_model
    from fnd_core.model.plots import training_report

    uri = storage.join(settings.store, "models", version)
    saved = save_model(
        result.model,
        uri,
        threshold=result.threshold,
        metrics=result.metrics,
        plots=training_report(result),
    )
    window = tuple(datetime.fromisoformat(w) if w else None for w in snap["window"])
    train_config = {
        **config.to_dict(),
        "epochs": epochs,
        "seed": seed,
        "threshold": result.threshold,
        "device": result.device,
        "snapshot_as_of": snap["as_of"],
        "shuffle_labels": shuffle_labels,
        "weights_scope": saved.weights_scope,
        "n_groups": n_groups,
        "cv_folds": settings.cv_folds,
        "cv_repeats": settings.cv_repeats,
    }
    registry.register_candidate(
        engine,
        version=version,
        preset=preset,
        config=train_config,
        metrics=result.metrics,
        artifact_uri=saved.uri,
        artifact_sha256=saved.sha256,
        data_window=window,
        counts=result.counts,
        run_id=run_id,
    )
    cv = result.metrics["cv"]
    log.info("candidate %s: %s %s (%s)", version, cv["metric"], cv["estimate"], saved.uri)
    return {
        "version": version,
        "artifact_uri": saved.uri,
        "gate_metric": cv["metric"],
        "gate_estimate": cv["estimate"],
        "test_accuracy": result.metrics["test"]["accuracy"],
        "seconds": round(result.seconds, 1),
    }
