"""Training a candidate: the recipe cross-validated on grouped folds, the artifact trained on
the whole snapshot, then saved and registered.

The ``train`` step of retraining. Its figures (``metrics.cv``; ``metrics.test``, the pooled
out-of-fold report) come from models that never saw the held-out posts' pictures or captions;
the baselines and the champion's recipe are measured on the same folds, so the gate
(:mod:`fnd_core.pipeline.retrain`) compares like with like. The version id is a function of
the snapshot, run and recipe, so a retried task finds what its first try registered.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fnd_core.io import storage
from fnd_core.model.splits.grouping import leak_groups, leak_report
from fnd_core.pipeline import encoder_precision, registry
from fnd_core.pipeline.training_snapshot import load_examples
from fnd_core.settings import Settings, default

if TYPE_CHECKING:
    import numpy as np
    from sqlalchemy.engine import Engine

    from fnd_core.model.char_ngrams import NgramConfig
    from fnd_core.model.config import ModelConfig
    from fnd_core.model.examples import PostExample
    from fnd_core.model.network import FakeNewsModel
    from fnd_core.model.novelty import NoveltyReference
    from fnd_core.model.train.recipe import TrainOptions
    from fnd_core.model.train.trainer import SplitScores, TrainResult
    from fnd_core.pipeline import candidates
    from fnd_core.pipeline.evaluation import CVPlan, CVSummary, Recipe

log = logging.getLogger(__name__)

DEFAULT_EPOCHS: int = default("train_epochs")


def train_options(settings: Settings) -> TrainOptions:
    """The training options of this deployment (feature cache, batching, precision)."""
    from fnd_core.model.train.recipe import TrainOptions

    return TrainOptions(
        cache_dir=str(settings.home / "feature_cache"),
        encode_batch_size=settings.batch_size,
        num_workers=settings.num_workers,
        max_pixels=settings.max_image_pixels,
        cpu_threads=settings.cpu_threads or None,
        # heads are fitted on the float path's features, int8 or not (docs/benchmarks.md)
        precision="auto"
        if settings.inference_precision == "int8"
        else settings.inference_precision,
        **topic_objective(settings.topic_objective),
    )


# FND_TOPIC_OBJECTIVE -> TrainOptions (measured in docs/new-events.md; only "none" is kept)
TOPIC_OBJECTIVES: dict[str, dict[str, Any]] = {
    "none": {},
    "balanced": {"topic_weights": True},
    "worst": {"worst_topic_rounds": 3},
    "adversarial": {"topic_adversary": 0.3},
}


def topic_objective(name: str) -> dict[str, Any]:
    """The training options of ``FND_TOPIC_OBJECTIVE``; an unknown name is a clear error."""
    if name not in TOPIC_OBJECTIVES:
        raise ValueError(f"FND_TOPIC_OBJECTIVE must be one of {', '.join(TOPIC_OBJECTIVES)}, "
                         f"got {name!r}")  # fmt: skip
    return TOPIC_OBJECTIVES[name]


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
    overrides: dict[str, Any] | None = None,
    sweep: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Cross-validate the recipe on grouped folds, train on the whole snapshot, register.

    The candidate's figures (``metrics.cv``; ``metrics.test`` = its pooled out-of-fold
    report) come from models that never saw the held-out posts' pictures or captions; the
    baselines and the champion's recipe are measured on the same folds. The artifact is then
    trained on every labelled post (one grouped fold early-stops it).
    ``shuffle_labels`` permutes the labels (a sanity check: the gate must refuse it).
    ``overrides``: a sweep candidate's parameters (:mod:`fnd_core.pipeline.sweep_space`) over
    this recipe, its kind the only one estimated; ``sweep``: that sweep's selection record.
    """
    from fnd_core.pipeline import evaluation, sweep_space

    preset = preset or settings.model_preset
    version = candidate_version(
        snap, run_id, preset=preset, fusion=fusion, ablation=ablation, seed=seed, epochs=epochs,
        shuffle_labels=shuffle_labels, **({"sweep": sweep["sweep_id"]} if sweep else {}),
    )  # fmt: skip
    done = _already_trained(engine, version)
    if done is not None:
        return done
    examples = _snapshot_examples(engine, snap, seed=seed, shuffle_labels=shuffle_labels)
    config = _candidate_config(settings, preset, fusion=fusion, ablation=ablation)
    recipe = evaluation.Recipe(epochs=epochs, options=train_options(settings), seed=seed)
    kinds, base = None, recipe
    if overrides:
        kinds, config, recipe = sweep_space.apply(overrides, config, recipe)
        epochs = recipe.epochs
    result, n_groups = _cross_validate_and_train(
        engine, settings, examples, config, recipe, kinds=kinds, sweep=sweep, base=base
    )
    winning = result.config  # the winning kind's: a network config, or a char n-gram one
    registered = _save_and_register(
        engine, settings, snap, result, winning, version,
        preset=preset, epochs=epochs, seed=seed, ablation=ablation,
        shuffle_labels=shuffle_labels, run_id=run_id, n_groups=n_groups, overrides=overrides,
    )  # fmt: skip
    encoder_precision.build_ahead(result.model, settings, engine, snap["as_of"])
    return registered


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


def fold_setup(
    settings: Settings, examples: list[PostExample], config: ModelConfig, recipe: Recipe
) -> tuple[candidates.FoldData, CVPlan]:
    """What every candidate's folds read (frozen features through the cache), and the topic
    folds: the same for every candidate of one snapshot and seed."""
    from fnd_core.pipeline import candidates, evaluation

    stories = leak_groups(examples)
    y = evaluation.labels_of(examples)
    base, features = candidates.frozen_features(examples, config, recipe.options)
    data = candidates.FoldData(y, stories, [e.text for e in examples], features, base, config)
    plan = candidates.topic_plan(examples, data, settings, recipe.seed)
    return dataclasses.replace(data, topics=plan.topic_of), plan


def _cross_validate_and_train(
    engine: Engine,
    settings: Settings,
    examples: list[PostExample],
    config: ModelConfig,
    recipe: Recipe,
    *,
    kinds: str | None = None,
    sweep: dict[str, Any] | None = None,
    base: Recipe | None = None,
) -> tuple[TrainResult, int]:
    """The winning kind's artifact, with every kind's topic-disjoint figures, the prior's and
    the champion recipe's in its metrics; and the number of leak groups (stories).

    ``kinds``: the kinds to estimate (default ``FND_CANDIDATE_KINDS``). ``sweep``: the model
    search this recipe won (:mod:`fnd_core.pipeline.sweep`); its nested estimate replaces the
    kinds' own, since the choice was made there. ``base``: today's recipe before the sweep's
    parameters (what the champion's recipe is rebuilt on)."""
    import numpy as np

    from fnd_core.model.calibration import fit_calibration
    from fnd_core.model.metrics import logit_quantiles, score_histogram
    from fnd_core.pipeline import candidates

    data, plan = fold_setup(settings, examples, config, recipe)
    y, stories = data.y, data.stories
    metric = settings.gate_metric
    cvs, oofs = {}, {}
    for kind in [*data.available(kinds or settings.candidate_kinds), candidates.PRIOR]:
        cvs[kind], oofs[kind] = candidates.cross_validate(kind, data, plan, recipe, metric=metric)
    prior = cvs.pop(candidates.PRIOR)
    selection = _selection(data, plan, recipe, cvs, oofs, settings, sweep=sweep)
    winner = selection["winner"]
    log.info(
        "topic-disjoint %s: %s; prior %s; %s wins by %s",
        metric, {k: v.brief() for k, v in cvs.items()}, prior.brief(),
        winner, selection["margin"],
    )  # fmt: skip
    champion = _champion_recipe(
        engine, data, plan, recipe, metric, cvs, winner=winner, base=base or recipe
    )
    result = _train_final(winner, data, examples, plan, recipe)
    result.novelty = _novelty_reference(result, data, plan)
    # posts of a topic kept in every fold's training part have no out-of-fold score
    scored = np.arange(len(y)) if plan.scored is None else np.flatnonzero(plan.scored)
    oof = np.mean(oofs[winner], axis=0)[scored]
    calibration = fit_calibration(y[scored], oof)
    log.info("calibration of %s: %s", winner, calibration)
    cv = cvs[winner].to_json() | {"finetuned_after_estimate": result.finetuned}
    result.metrics["test"] = cvs[winner].report
    result.scores["test"] = _oof_scores([examples[i] for i in scored], y[scored], oof)
    if plan.units is None:  # CVPlan.make always sets them
        raise ValueError("the topic plan has no fold units")
    result.metrics |= {
        "cv": cv,
        "kind": winner,
        "selection": selection,
        "candidates": {k: v.to_json() for k, v in cvs.items() if k != winner},
        "baselines": {"prior": prior.to_json()},
        "champion_recipe": champion,
        "leak": leak_report(plan.units, plan.repeats[0])
        | {"split_policy": "topic_disjoint", "n_stories": int(np.unique(stories).size)},
        "topics": plan.topics,
        "calibration": calibration.to_dict(),
        # How the recipe scores posts it did not train on (calibrated, as the scorer writes
        # them): the reference of the drift checks.
        "score_histogram": score_histogram(calibration.apply(oof)),
        # the same scores as logits: how near the threshold new topics' posts fall, which the
        # int8 verdict check reads (encoder_precision)
        "score_logit_quantiles": logit_quantiles(calibration.apply(oof)),
    }
    return result, int(np.unique(stories).size)


def _selection(
    data: candidates.FoldData,
    plan: CVPlan,
    recipe: Recipe,
    cvs: dict[str, CVSummary],
    oofs: dict[str, list[np.ndarray]],
    settings: Settings,
    *,
    sweep: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Which kind ships (:func:`candidates.choose`), with the choice's nested estimate beside
    it when ``FND_NESTED_SELECTION`` asks (:mod:`fnd_core.pipeline.nested_selection`); for a
    sweep's winner, the sweep's nested estimate (its choice was among the sweep's recipes)."""
    from fnd_core.pipeline import candidates
    from fnd_core.pipeline.nested_selection import nested_estimate

    selection = candidates.choose(cvs)
    if sweep is not None:
        selection |= {"rule": "sweep winner", "sweep": sweep, "nested": sweep["nested"]}
    elif settings.nested_selection:
        winner = selection["winner"]
        nested = nested_estimate(
            data, plan, recipe, {k: oofs[k] for k in cvs},
            winner=winner, naive=cvs[winner].estimate, metric=settings.gate_metric,
        )  # fmt: skip
        selection["nested"] = None if nested is None else nested.to_json()
    return selection


def _novelty_reference(
    result: TrainResult, data: candidates.FoldData, plan: CVPlan
) -> NoveltyReference | None:
    """The training topics in the shipped model's own space (:mod:`fnd_core.model.novelty`);
    None for fine-tuned encoders, whose features are no longer the cached ones."""
    from fnd_core.model import novelty
    from fnd_core.model.char_ngrams import CharNgramModel

    if plan.topic_of is None:
        return None
    if isinstance(result.model, CharNgramModel):
        return novelty.for_ngrams(result.model.tfidf(data.texts), plan.topic_of)
    if result.finetuned:
        log.info("novelty: not recorded for fine-tuned encoders")
        return None
    config = result.model.config  # the modalities the shipped head reads
    text = data.features.text if config.uses_text else None
    image = data.features.image if config.uses_image else None
    return novelty.for_encoders(text, image, plan.topic_of)


def _oof_scores(examples: list[PostExample], y: np.ndarray, p: np.ndarray) -> SplitScores:
    from fnd_core.model.train.trainer import SplitScores

    return SplitScores(post_ids=[e.post_id for e in examples], y_true=y, p_fake=p)


def _train_final(
    kind: str,
    data: candidates.FoldData,
    examples: list[PostExample],
    plan: CVPlan,
    recipe: Recipe,
) -> TrainResult:
    """The artifact, fitted on every labelled post by the function each fold used
    (:func:`candidates.fit`): the same weights, seeding and early stopping, so the gate's
    estimate describes the procedure that ships.

    Fine-tuning the encoders (``TrainOptions.finetune``, off by default) is too costly to
    repeat on every fold: it runs on the final fusion fit only, and the registry says so
    beside the estimate (``metrics.cv.finetuned_after_estimate``).
    """
    import time

    import numpy as np

    from fnd_core.model import metrics
    from fnd_core.model.char_ngrams import CharNgramModel
    from fnd_core.model.runtime import module_device
    from fnd_core.model.train.trainer import SplitScores, TrainResult
    from fnd_core.pipeline import candidates

    started = time.perf_counter()
    y, everyone = data.y, np.arange(len(data.y))
    history: list[dict[str, Any]] = []
    model = candidates.fit(
        kind, data, everyone, recipe, n_folds=plan.n_folds, seed=recipe.seed, history=history
    )
    finetune = kind == "fusion" and recipe.options.finetune
    if finetune and not isinstance(model, CharNgramModel):  # a fusion fit is a network
        history += _finetune(model, data, examples, plan, recipe)
        p = _proba_reencoded(model, examples, recipe.options)
    else:
        p = candidates.proba(model, data, everyone)
    return TrainResult(
        model=model, config=model.config, threshold=0.5,
        metrics={"train": metrics.classification_report(y, p, 0.5)}, history=history,
        scores={"train": SplitScores([e.post_id for e in examples], y, p)},
        finetuned=bool(getattr(model, "encoders_finetuned", False)),
        device="cpu" if isinstance(model, CharNgramModel) else str(module_device(model)),
        seconds=time.perf_counter() - started, counts={"train": len(y)},
    )  # fmt: skip


def _finetune(
    model: FakeNewsModel,
    data: candidates.FoldData,
    examples: list[PostExample],
    plan: CVPlan,
    recipe: Recipe,
) -> list[dict[str, Any]]:
    """Phase 2 on the final fusion fit: its early-stopping split is the one phase 1 used."""
    from fnd_core.model.splits.grouping import early_stopping_split
    from fnd_core.model.train.finetuning import finetune

    val = set(early_stopping_split(data.y, data.stories, n_folds=plan.n_folds,
                                   seed=recipe.seed).tolist())  # fmt: skip
    splits: dict[str, list[PostExample]] = {"train": [], "val": []}
    for i, e in enumerate(examples):
        role = "val" if i in val else "train"
        splits[role].append(dataclasses.replace(e, split=role))
    return finetune(model, splits, recipe.options, recipe.seed)


def _proba_reencoded(
    model: FakeNewsModel, examples: list[PostExample], options: TrainOptions
) -> np.ndarray:
    """P(fake) with features of the fine-tuned encoders (the cached ones are stale)."""
    from fnd_core.model.features.encoding import encode_examples
    from fnd_core.model.features.inference import head_proba
    from fnd_core.model.train.recipe import encode_kwargs

    return head_proba(model, encode_examples(model, examples, **encode_kwargs(options)))


def _champion_recipe(
    engine: Engine,
    data: candidates.FoldData,
    plan: CVPlan,
    recipe: Recipe,
    metric: str,
    cvs: dict[str, CVSummary],
    *,
    winner: str,
    base: Recipe,
) -> dict[str, Any]:
    """The champion's recipe on the candidates' folds, or why it could not be estimated.

    The champion's recipe is its kind, architecture, epochs and sweep parameters over today's
    ``base`` recipe. When it is a recipe estimated in this run (the same kind, config, epochs
    and options), that estimate is reused (the same folds, the same fitting); otherwise it is
    cross-validated on the same folds. ``same_recipe`` says which, and ``paired_se`` is the
    standard error of the fold-wise difference between the ``winner`` kind and it (the gate's
    margin for a new recipe)."""
    from fnd_core.model.config import ModelConfig
    from fnd_core.pipeline import candidates, sweep_space

    champion = registry.current_champion(engine)
    if champion is None:
        return {"version": None, "cv": None, "note": "no champion yet"}
    kind = candidates.kind_of(champion.config)
    if kind not in data.available():
        return {"version": champion.version, "cv": None, "note": f"{kind}: not estimable here"}
    known = set(ModelConfig.__dataclass_fields__)
    try:
        champ_config = ModelConfig.from_dict(
            {k: v for k, v in champion.config.items() if k in known}
        ) if kind != "char_ngram" else data.config  # fmt: skip
        epochs = int(champion.config.get("epochs") or base.epochs)
        champ_recipe = dataclasses.replace(base, epochs=epochs)
        overrides = champion.config.get("recipe_overrides") or {}
        if overrides:
            _, champ_config, champ_recipe = sweep_space.apply(overrides, champ_config, champ_recipe)
    except ValueError as exc:
        return {"version": champion.version, "cv": None, "note": f"unreadable config: {exc}"}
    encoders = ("preset", "image_size", "max_tokens")
    if any(getattr(champ_config, k) != getattr(data.config, k) for k in encoders):
        return {
            "version": champion.version,
            "cv": None,
            "note": "other encoders than the candidate's: not comparable on these features",
        }
    same_as = _same_recipe(kind, champ_config, champ_recipe, data.config, recipe)
    if kind in cvs and same_as:
        cv = cvs[kind]
    else:
        champ_data = dataclasses.replace(data, config=champ_config)
        cv, _ = candidates.cross_validate(kind, champ_data, plan, champ_recipe, metric=metric)
    same_recipe = same_as and kind == winner
    return {
        "version": champion.version,
        "kind": kind,
        "cv": cv.to_json(),
        "note": "same folds",
        "same_recipe": same_recipe,
        "paired_se": _paired_se(cvs[winner].fold_values, cv.fold_values),
    }


def _same_recipe(
    kind: str, config: ModelConfig, recipe: Recipe, other_config: ModelConfig, other: Recipe
) -> bool:
    """Whether two recipes of ``kind`` fit the same model (what matters to the kind only)."""
    if kind == "char_ngram" or kind.endswith("linear"):
        fields = ("class_weights", "group_weights", "topic_weights", "worst_topic_rounds")
        return all(getattr(recipe.options, f) == getattr(other.options, f) for f in fields)
    return (config, recipe.epochs, recipe.options) == (other_config, other.epochs, other.options)


def _paired_se(a: list[float], b: list[float]) -> float | None:
    """Standard error of the mean fold-wise difference of two recipes on the same folds."""
    import numpy as np

    if len(a) != len(b) or len(a) < 2:
        return None
    diff = np.asarray(a) - np.asarray(b)
    return round(float(diff.std(ddof=1) / np.sqrt(len(diff))), 6)


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
    engine: Engine, settings: Settings, snap: dict[str, Any], result: TrainResult,
    config: ModelConfig | NgramConfig, version: str, *, preset: str, epochs: int, seed: int,
    ablation: str | None, shuffle_labels: bool, run_id: str, n_groups: int,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    from fnd_core.model.artifacts import save_model
    from fnd_core.model.calibration import Calibration
    from fnd_core.model.train.plots import training_report

    uri = storage.join(settings.store, "models", version)
    saved = save_model(
        result.model,
        uri,
        threshold=result.threshold,
        metrics=result.metrics,
        plots=training_report(result),
        calibration=Calibration.from_dict(result.metrics.get("calibration")),
        novelty=result.novelty,
    )
    start, end = (datetime.fromisoformat(w) if w else None for w in snap["window"])
    window = (start, end)
    train_config = {
        **config.to_dict(),
        "kind": result.metrics["kind"],
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
        "recipe_overrides": overrides or {},  # a sweep winner's parameters over the defaults
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
