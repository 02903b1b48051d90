"""Retraining, step by step, as the ``fnd_retrain`` DAG and ``fnd train`` run it.

snapshot → validate the snapshot (GX ``training_set``) → train a candidate → evaluate it and
the champion on the *same* test posts → gate → promote or reject. Each step takes and returns
small JSON (ids, timestamps, numbers), so each can be its own Airflow task on any worker.

A snapshot is "the labelled posts ingested up to ``as_of``": later steps re-read exactly
those posts from Postgres instead of passing data between tasks.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from fnd_core.io import storage
from fnd_core.model.grouping import leak_groups, leak_report
from fnd_core.pipeline import registry
from fnd_core.pipeline.gate import GateDecision, GatePolicy, Scorecard, decide
from fnd_core.resources import EXPECTATIONS_DIR
from fnd_core.settings import Settings, default

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from fnd_core.model.examples import PostExample
    from fnd_core.model.training import TrainOptions, TrainResult

log = logging.getLogger(__name__)

DEFAULT_EPOCHS: int = default("train_epochs")
NO_LABELLED_POSTS = "no labelled posts yet: nothing to train on"


class SnapshotInvalidError(RuntimeError):
    """The training snapshot failed its data-quality suite; nothing was trained."""


def load_examples(
    engine: Engine,
    *,
    as_of: datetime | None = None,
    labelled_only: bool = True,
    max_posts: int | None = None,
) -> list[PostExample]:
    """Posts as model examples, ordered by post_id (deterministic training input).

    ``max_posts`` keeps the newest ones (by ingestion, then post_id): what bounds a
    retraining's memory. ``group`` comes from the landing file's optional ``group`` column
    (kept in ``posts.extra``).
    """
    from fnd_core.model.examples import PostExample

    query = (
        "select * from (select post_id, text, image_uri, image_sha256, label, 'train', "
        "extra ->> 'group' from fnd.posts "
        "where (cast(:as_of as timestamptz) is null or ingested_at <= :as_of)"
        + (" and label is not null" if labelled_only else "")
        + " order by ingested_at desc, post_id desc limit :limit) newest order by post_id"
    )
    with engine.connect() as conn:
        rows = conn.execute(sa.text(query), {"as_of": as_of, "limit": max_posts}).all()
    return [PostExample(*row) for row in rows]


def snapshot(engine: Engine, max_posts: int | None = None) -> dict[str, Any]:
    """Freeze the training data as "the newest ``max_posts`` labelled posts ingested up to
    now" (all of them without a cap); returns its summary."""
    with engine.connect() as conn:
        as_of = conn.execute(sa.text("select now()")).scalar_one()
        row = conn.execute(
            sa.text(
                "select count(*), min(ingested_at), max(ingested_at), "
                "count(*) filter (where label = 1) "
                "from fnd.posts where label is not null and ingested_at <= :as_of"
            ),
            {"as_of": as_of},
        ).one()
    n, first, last, n_fake = row
    summary = {
        "as_of": as_of.isoformat(),
        "n_labelled": n,
        "n_fake": n_fake,
        "window": [first.isoformat() if first else None, last.isoformat() if last else None],
        "max_posts": max_posts,
        "n_used": n if max_posts is None else min(n, max_posts),
    }
    if max_posts is not None and n > max_posts:
        log.warning(
            "%d labelled posts; training on the newest %d (FND_TRAIN_MAX_POSTS)", n, max_posts
        )
    log.info("training snapshot: %s", summary)
    return summary


def validate_snapshot(
    engine: Engine, settings: Settings, snap: dict[str, Any], *, run_id: str = "cli"
) -> dict[str, Any]:
    """Run the ``training_set`` suite on the snapshot; record it; raise if it fails."""

    import pandas as pd

    from fnd_core.ingest.quality import record_validation, validate_frame

    examples = load_examples(
        engine, as_of=datetime.fromisoformat(snap["as_of"]), max_posts=snap.get("max_posts")
    )
    frame = pd.DataFrame(
        {
            "post_id": [e.post_id for e in examples],
            "text": [e.text for e in examples],
            "image_sha256": [e.image_sha256 for e in examples],
            "label": pd.array([e.label for e in examples], dtype="Int64"),
            "leak_group": leak_groups(examples),
        }
    )
    name = f"snapshot-{snap['as_of'][:19].replace(':', '')}"
    summary = validate_frame(
        frame,
        "training_set",
        expectations_dir=EXPECTATIONS_DIR,
        data_docs_dir=settings.data_docs,
        batch_name=name,
        parameters={"min_groups": settings.cv_folds},
        publish_to=settings.data_docs_uri,
    ).to_json()
    with engine.begin() as conn:
        record_validation(conn, summary, run_id=run_id)
    if not summary["success"]:
        failed = [
            f"{r['expectation_type']}({r['column'] or ''}) observed {r['observed_value']}"
            for r in summary["results"]
            if not r["success"]
        ]
        raise SnapshotInvalidError(
            f"training snapshot {name} failed the training_set suite: {'; '.join(failed)}"
        )
    return {"batch_name": name, "success": True, "data_docs": summary["data_docs_path"]}


def train_options(settings: Settings) -> TrainOptions:
    """The training options of this deployment (feature cache, batching, precision)."""
    from fnd_core.model.training import TrainOptions

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
    import dataclasses
    import random

    import numpy as np

    from fnd_core.model.config import ModelConfig
    from fnd_core.model.features import encode_examples
    from fnd_core.model.metrics import score_histogram
    from fnd_core.model.network import build_model
    from fnd_core.model.runtime import resolve_device
    from fnd_core.model.training import encode_kwargs
    from fnd_core.pipeline import evaluation

    preset = preset or settings.model_preset
    version = candidate_version(
        snap, run_id, preset=preset, fusion=fusion, ablation=ablation, seed=seed, epochs=epochs,
        shuffle_labels=shuffle_labels,
    )  # fmt: skip
    done = _already_trained(engine, version)
    if done is not None:
        return done
    examples = load_examples(
        engine, as_of=datetime.fromisoformat(snap["as_of"]), max_posts=snap.get("max_posts")
    )
    if shuffle_labels:
        labels = [e.label for e in examples]
        random.Random(seed).shuffle(labels)
        examples = [dataclasses.replace(e, label=y) for e, y in zip(examples, labels, strict=True)]
    modalities = {"text": "text", "image": "image", None: "both"}[ablation]
    config = ModelConfig.for_preset(
        preset,
        image_size=settings.image_size,
        max_tokens=settings.max_tokens,
        fusion=fusion,
        modalities=modalities,
    )
    options = train_options(settings)
    recipe = evaluation.Recipe(epochs=epochs, options=options, seed=seed)
    groups = leak_groups(examples)
    y = evaluation.labels_of(examples)
    base = build_model(config).to(resolve_device("auto"))
    base.set_encoders_trainable(False)
    features = encode_examples(
        base, examples, cache_dir=options.cache_dir, **encode_kwargs(options)
    )
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
    return _save_and_register(
        engine, settings, snap, result, config, version,
        preset=preset, epochs=epochs, seed=seed, ablation=ablation,
        shuffle_labels=shuffle_labels, run_id=run_id, n_groups=int(np.unique(groups).size),
    )  # fmt: skip


def _without_report(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "report"}


def _oof_scores(examples: list[PostExample], y, p):
    from fnd_core.model.training import SplitScores

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


def evaluate(engine: Engine, settings: Settings, version: str) -> dict[str, Any]:
    """The evidence the gate decides on: the candidate's cross-validated figures, the
    baselines' and the champion recipe's on the same folds; the candidate's artifact is
    loaded (sha256 verified) so a model that cannot be served is never promoted, and a
    champion that cannot be loaded is recorded rather than blocking retraining."""
    from fnd_core.model.artifacts import load_model

    candidate = registry.get_version(engine, version)
    load_model(candidate.artifact_uri, candidate.artifact_sha256)
    m = candidate.metrics
    if "cv" not in m:
        raise ValueError(f"{version} has no cross-validated figures: it predates grouped folds")
    champion = m.get("champion_recipe") or {}
    current = registry.current_champion(engine)
    champion_state = None
    if current is not None:
        try:
            load_model(current.artifact_uri, current.artifact_sha256)
            champion_state = "loadable"
        except Exception as exc:  # noqa: BLE001 — any failure means it cannot serve
            champion_state = f"cannot be loaded: {exc}"
            log.warning("champion %s %s", current.version, champion_state)
    result = {
        "version": version,
        "metric": m["cv"]["metric"],
        "candidate": m["cv"],
        "baselines": m.get("baselines") or {},
        "champion": champion.get("cv") and {"version": champion.get("version"), **champion["cv"]},
        "champion_note": champion.get("note"),
        "champion_state": champion_state,
        "leak": m.get("leak"),
    }
    log.info("evaluation of %s: %s", version, {k: result[k] for k in ("metric", "leak")})
    return result


def gate(
    evaluation: dict[str, Any], policy: GatePolicy, *, forced_by: str | None = None
) -> GateDecision:
    """Apply the gate to an evaluation (pure decision) for the policy's metric."""
    metric = policy.metric
    champion = evaluation.get("champion")
    decision = decide(
        Scorecard.from_summary(evaluation["candidate"], metric),
        policy,
        baselines={
            name: Scorecard.from_summary(summary, metric)
            for name, summary in (evaluation.get("baselines") or {}).items()
        },
        champion=Scorecard.from_summary(champion, metric) if champion else None,
        forced_by=forced_by,
    )
    log.info("gate for %s: %s", evaluation["version"], decision.reason)
    return decision


def record_decision(
    engine: Engine,
    evaluation: dict[str, Any],
    decision: GateDecision,
    policy: GatePolicy,
    *,
    floor_set_by: str | None = None,
) -> dict[str, Any]:
    """Promote or reject in the registry, keeping the decision, thresholds and comparison.

    Idempotent: a retry after the version was already decided returns the recorded outcome.
    ``floor_set_by``: who changed the floor for this run (a trigger-form override), audited.
    """
    version = evaluation["version"]
    current = registry.get_version(engine, version)
    if current.status != "candidate" and current.gate:
        return {
            "version": version,
            "decision": current.gate.get("decision"),
            "reason": current.gate.get("reason"),
            "already_recorded": True,
        }
    payload = {
        **decision.to_json(),
        "policy": policy.__dict__,
        "floor_set_by": floor_set_by,
        "evaluation": evaluation,
        "decided_at": datetime.now(UTC).isoformat(),
    }
    if decision.promote:
        retired = registry.promote(engine, version, payload)
        return {
            "version": version,
            "decision": "promote",
            "retired": retired,
            "reason": decision.reason,
        }
    registry.reject(engine, version, payload)
    return {"version": version, "decision": "reject", "reason": decision.reason}


def policy_from(settings: Settings, *, min_accuracy: float | None = None) -> GatePolicy:
    """The gate policy of the settings, with an optional floor override (a DAG Param)."""
    return GatePolicy(
        min_accuracy=settings.gate_min_accuracy if min_accuracy is None else min_accuracy,
        tolerance=settings.gate_tolerance,
        min_class_recall=settings.gate_min_class_recall,
        baseline_margin=settings.gate_baseline_margin,
        metric=settings.gate_metric,
    )


def run(
    engine: Engine,
    settings: Settings,
    *,
    min_accuracy: float | None = None,
    forced_by: str | None = None,
    floor_set_by: str | None = None,
    run_id: str = "cli",
    **train_kwargs: Any,
) -> dict[str, Any]:
    """The whole recipe in one process (``fnd train``, tests, benchmarks): snapshot →
    validate → train → evaluate → gate → promote or reject. The ``fnd_retrain`` DAG runs the
    same steps as tasks. No labelled posts: ``{"skipped": reason}``, nothing trained."""
    snap = snapshot(engine, settings.train_max_posts)
    if snap["n_labelled"] == 0:
        return {"skipped": NO_LABELLED_POSTS}
    validate_snapshot(engine, settings, snap, run_id=run_id)
    candidate = train_candidate(engine, settings, snap, run_id=run_id, **train_kwargs)
    evaluation = evaluate(engine, settings, candidate["version"])
    policy = policy_from(settings, min_accuracy=min_accuracy)
    decision = gate(evaluation, policy, forced_by=forced_by)
    outcome = record_decision(engine, evaluation, decision, policy, floor_set_by=floor_set_by)
    return {"candidate": candidate, "evaluation": evaluation, **outcome}
