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

from fnd_core import registry
from fnd_core.gate import GateDecision, GatePolicy, Scorecard, decide
from fnd_core.landing import storage
from fnd_core.resources import EXPECTATIONS_DIR
from fnd_core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from fnd_core.model.examples import PostExample

log = logging.getLogger(__name__)


class SnapshotInvalidError(RuntimeError):
    """The training snapshot failed its data-quality suite; nothing was trained."""


def load_examples(
    engine: Engine, *, as_of: datetime | None = None, labelled_only: bool = True
) -> list[PostExample]:
    """Posts as model examples, ordered by post_id (deterministic training input)."""
    from fnd_core.model.examples import PostExample

    query = (
        "select post_id, text, image_uri, image_sha256, label, split from fnd.posts "
        "where (cast(:as_of as timestamptz) is null or ingested_at <= :as_of)"
        + (" and label is not null" if labelled_only else "")
        + " order by post_id"
    )
    with engine.connect() as conn:
        rows = conn.execute(sa.text(query), {"as_of": as_of}).all()
    return [PostExample(*row) for row in rows]


def snapshot(engine: Engine) -> dict[str, Any]:
    """Freeze the training data as "labelled posts ingested up to now"; returns its summary."""
    with engine.connect() as conn:
        as_of = conn.execute(sa.text("select now()")).scalar_one()
        row = conn.execute(
            sa.text(
                "select count(*), min(ingested_at), max(ingested_at), "
                "count(*) filter (where split = 'train'), count(*) filter (where split = 'val'), "
                "count(*) filter (where split = 'test'), count(*) filter (where label = 1) "
                "from fnd.posts where label is not null and ingested_at <= :as_of"
            ),
            {"as_of": as_of},
        ).one()
    n, first, last, n_train, n_val, n_test, n_fake = row
    summary = {
        "as_of": as_of.isoformat(),
        "n_labelled": n,
        "n_fake": n_fake,
        "counts": {"train": n_train, "val": n_val, "test": n_test},
        "window": [first.isoformat() if first else None, last.isoformat() if last else None],
    }
    log.info("training snapshot: %s", summary)
    return summary


def validate_snapshot(
    engine: Engine, settings: Settings, snap: dict[str, Any], *, run_id: str = "cli"
) -> dict[str, Any]:
    """Run the ``training_set`` suite on the snapshot; record it; raise if it fails."""
    import json

    import pandas as pd

    from fnd_core.quality import validate_frame

    examples = load_examples(engine, as_of=datetime.fromisoformat(snap["as_of"]))
    frame = pd.DataFrame(
        {
            "post_id": [e.post_id for e in examples],
            "text": [e.text for e in examples],
            "image_sha256": [e.image_sha256 for e in examples],
            "label": pd.array([e.label for e in examples], dtype="Int64"),
            "split": [e.split for e in examples],
        }
    )
    name = f"snapshot-{snap['as_of'][:19].replace(':', '')}"
    summary = validate_frame(
        frame,
        "training_set",
        expectations_dir=EXPECTATIONS_DIR,
        data_docs_dir=settings.data_docs,
        batch_name=name,
    ).to_json()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into fnd.validation_runs (suite, batch_name, success, n_evaluated_rows, "
                "statistics, results, data_docs_uri, gx_version, run_id) values ('training_set', "
                ":name, :ok, :n, cast(:stats as jsonb), cast(:results as jsonb), :docs, :gx, :run)"
            ),
            {
                "name": name,
                "ok": summary["success"],
                "n": summary["evaluated_rows"],
                "stats": json.dumps(summary["statistics"]),
                "results": json.dumps(summary["results"]),
                "docs": summary["data_docs_path"],
                "gx": summary["gx_version"],
                "run": run_id,
            },
        )
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


def train_candidate(
    engine: Engine,
    settings: Settings,
    snap: dict[str, Any],
    *,
    preset: str | None = None,
    epochs: int = 40,
    seed: int = 0,
    ablation: str | None = None,
    fusion: str = "concat",
    shuffle_labels: bool = False,
    run_id: str = "cli",
) -> dict[str, Any]:
    """Train on the snapshot, save the artifact, register a candidate; returns its summary.

    ``shuffle_labels`` permutes the training labels (a sanity check: the gate must refuse it).
    """
    import random

    from fnd_core.model.artifacts import save_model
    from fnd_core.model.config import ModelConfig
    from fnd_core.model.examples import PostExample
    from fnd_core.plots import training_report
    from fnd_core.training import TrainOptions, train

    examples = load_examples(engine, as_of=datetime.fromisoformat(snap["as_of"]))
    if shuffle_labels:
        labels = [e.label for e in examples]
        random.Random(seed).shuffle(labels)
        examples = [
            PostExample(e.post_id, e.text, e.image_uri, e.image_sha256, y, e.split)
            for e, y in zip(examples, labels, strict=True)
        ]
    preset = preset or settings.model_preset
    modalities = {"text": "text", "image": "image", None: "both"}[ablation]
    config = ModelConfig.for_preset(
        preset,
        image_size=settings.image_size,
        max_tokens=settings.max_tokens,
        fusion=fusion,
        modalities=modalities,
    )
    options = TrainOptions(
        cache_dir=str(settings.home / "feature_cache"),
        encode_batch_size=settings.batch_size,
        num_workers=settings.num_workers,
        max_pixels=settings.max_image_pixels,
        cpu_threads=settings.cpu_threads or None,
        precision=settings.inference_precision,
    )
    result = train(examples, config, epochs=epochs, seed=seed, options=options)
    now = datetime.now(UTC)
    version = registry.new_version_id(now, f"{run_id}-{snap['as_of']}-{seed}-{ablation}")
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
    test = result.metrics.get("test") or {}
    log.info("candidate %s: test accuracy %s (%s)", version, test.get("accuracy"), saved.uri)
    return {
        "version": version,
        "artifact_uri": saved.uri,
        "test_accuracy": test.get("accuracy"),
        "seconds": round(result.seconds, 1),
    }


def evaluate(engine: Engine, settings: Settings, version: str) -> dict[str, Any]:
    """Scorecards of the candidate and the champion on the candidate's test posts."""
    from fnd_core.model.artifacts import load_model

    candidate = registry.get_version(engine, version)
    as_of = datetime.fromisoformat(candidate.config["snapshot_as_of"])
    test = [e for e in load_examples(engine, as_of=as_of) if e.split == "test"]
    if not test:
        raise ValueError(f"snapshot of {version} has no labelled test posts to evaluate on")
    loaded = load_model(candidate.artifact_uri, candidate.artifact_sha256, for_inference=True)
    cand_card = _scorecard(loaded.model, loaded.threshold, test, settings)
    champion = registry.current_champion(engine)
    champ_card = None
    if champion is not None:
        champ = load_model(champion.artifact_uri, champion.artifact_sha256, for_inference=True)
        champ_card = _scorecard(champ.model, champ.threshold, test, settings)
    result = {
        "version": version,
        "n_test": len(test),
        "candidate": cand_card.__dict__,
        "champion": None
        if champ_card is None
        else {"version": champion.version, **champ_card.__dict__},
    }
    log.info("evaluation on %d test posts: %s", len(test), result)
    return result


def gate(
    evaluation: dict[str, Any], policy: GatePolicy, *, forced_by: str | None = None
) -> GateDecision:
    """Apply the gate to an evaluation (pure decision), with the champion compared recorded."""
    champion = evaluation.get("champion")
    champ_card = None
    if champion:
        champ_card = Scorecard(**{k: v for k, v in champion.items() if k != "version"})
    decision = decide(Scorecard(**evaluation["candidate"]), champ_card, policy, forced_by=forced_by)
    log.info("gate for %s: %s", evaluation["version"], decision.reason)
    return decision


def record_decision(
    engine: Engine, evaluation: dict[str, Any], decision: GateDecision, policy: GatePolicy
) -> dict[str, Any]:
    """Promote or reject in the registry, keeping the decision, thresholds and comparison."""
    payload = {
        **decision.to_json(),
        "policy": policy.__dict__,
        "evaluation": evaluation,
        "decided_at": datetime.now(UTC).isoformat(),
    }
    version = evaluation["version"]
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


def _scorecard(model, threshold: float, test: list[PostExample], settings: Settings) -> Scorecard:
    import numpy as np

    from fnd_core import metrics
    from fnd_core.features import encode_options, predict_proba

    p_fake = predict_proba(model, test, **encode_options(settings))
    y_true = np.array([e.label for e in test])
    y_pred = metrics.predict_labels(p_fake, threshold)
    recalls = metrics.per_class_recall(y_true, y_pred)
    return Scorecard(
        accuracy=round(metrics.accuracy(y_true, y_pred), 6),
        recall_real=round(recalls["real"] or 0.0, 6),
        recall_fake=round(recalls["fake"] or 0.0, 6),
        n_test=len(test),
    )


def policy_from(settings: Settings, *, min_accuracy: float | None = None) -> GatePolicy:
    """The gate policy of the settings, with an optional floor override (a DAG Param)."""
    return GatePolicy(
        min_accuracy=settings.gate_min_accuracy if min_accuracy is None else min_accuracy,
        tolerance=settings.gate_tolerance,
        min_class_recall=settings.gate_min_class_recall,
    )
