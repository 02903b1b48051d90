"""Drift reports: quiet on batches like the training data, loud on shifted ones.

A champion (offline preset: real pretrained encoders) trained on demo posts; then batches
landed and scored as the DAGs do. 20 batches generated with the training settings must not be
flagged (the false-alarm rate is printed); a batch with a shifted fake share, one with a
different caption style and one with a different picture style must be.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image, ImageOps

from fnd_core.ingest.load import ingest_file
from fnd_core.observe import drift
from fnd_core.pipeline import registry, retrain, scoring
from fnd_core.stack.demo import generate_batch
from tests.helpers import ingest_demo

pytestmark = pytest.mark.slow


def test_domain_auc_is_near_a_half_for_alike_rows_and_high_for_shifted_ones():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 64)), rng.normal(size=(200, 64))
    assert abs(drift.domain_auc(a, b) - 0.5) < 0.08
    assert drift.domain_auc(a, b + 0.5) > 0.9


def test_the_auc_bar_rises_for_small_batches_only():
    policy = drift.DriftPolicy(auc_threshold=0.6)
    assert drift.auc_bar(policy, 1000, 1000) == 0.6
    assert 0.7 < drift.auc_bar(policy, 60, 60) < 0.72


@pytest.fixture(scope="module")
def trained(create_database, tmp_path_factory):
    """A champion on 600 demo posts (offline preset), in a database of this module's own."""
    from fnd_core.io import migrations
    from fnd_core.io.db import make_engine
    from fnd_core.settings import Settings

    url = create_database()
    engine = make_engine(url)
    migrations.upgrade(engine)
    settings = Settings(home=tmp_path_factory.mktemp("drift") / "fnd_home", database_url=url,
                        cv_repeats=1, num_workers=0, nested_selection=False)  # fmt: skip
    ingest_demo(engine, settings, 600, seed=1)
    outcome = retrain.run(engine, settings, forced_by="tests", preset="offline", epochs=20)
    assert outcome["decision"] == "promote"
    scoring.score_shard(engine, settings, model_version=outcome["version"], run_id="initial")
    yield engine, settings
    engine.dispose()


LABELS_APPEND_ONLY = "labels_are_append_only"  # sql/018


@pytest.fixture(autouse=True)
def _only_the_champion_kept(request):
    """Each test starts from the trained champion alone: the batches, verdicts and drift
    reports a test adds are removed after it, so no test reads another's."""
    if "trained" not in request.fixturenames:
        yield
        return
    engine, _ = request.getfixturevalue("trained")
    with engine.connect() as conn:
        last_batch = conn.exec_driver_sql(
            "select coalesce(max(batch_id), 0) from fnd.ingest_batches"
        ).scalar_one()
        versions = list(conn.exec_driver_sql("select version from fnd.model_versions").scalars())
    yield
    with engine.begin() as conn:
        conn.exec_driver_sql("delete from fnd.drift_reports")
        conn.exec_driver_sql("delete from fnd.predictions where run_id <> 'initial'")
        conn.exec_driver_sql("delete from fnd.scoring_errors where run_id <> 'initial'")
        conn.exec_driver_sql(
            "delete from fnd.prediction_evidence e using fnd.posts p "
            f"where p.post_id = e.post_id and p.batch_id > {int(last_batch)}"
        )
        # fnd.labels is append-only (sql/018); this cleanup alone takes labels back
        conn.exec_driver_sql(f"alter table fnd.labels disable trigger {LABELS_APPEND_ONLY}")
        conn.exec_driver_sql(f"delete from fnd.labels where batch_id > {int(last_batch)}")
        conn.exec_driver_sql(f"alter table fnd.labels enable always trigger {LABELS_APPEND_ONLY}")
        for table in ("quarantine", "validation_runs", "posts", "ingest_batches"):
            conn.exec_driver_sql(f"delete from fnd.{table} where batch_id > {int(last_batch)}")
        for table in ("performance_estimates", "performance_alerts", "prediction_evidence"):
            conn.execute(sa.text(f"delete from fnd.{table} where model_version <> all(:v)"),
                         {"v": versions})  # fmt: skip
        conn.execute(sa.text("delete from fnd.model_versions where version <> all(:v)"),
                     {"v": versions})  # fmt: skip


def land_and_score(engine, settings, batch_file: Path, run_id: str) -> drift.DriftReport:
    report = ingest_file(engine, str(batch_file), settings, run_id=run_id)
    version = scoring.resolve_version(engine, None).version
    scoring.score_shard(engine, settings, model_version=version, run_id=run_id)
    measured = drift.measure(engine, settings, kind="scoring_run", subject=run_id)
    assert measured is not None and measured.n_posts == report.n_accepted
    shown = ("image_auc", "text_auc", "predicted_fake_share", "train_fake_share", "score_kl")
    print(measured.summary(), {k: measured.metrics.get(k) for k in shown})
    drift.record(engine, measured, run_id)
    return measured


def test_auto_measured_int8_on_this_cpu_and_kept_it_only_where_the_labels_held(trained):
    """FND_INFERENCE_PRECISION=auto (the default) with pretrained encoders: the first scoring
    built the int8 encoders and measured them against the float path for this model and CPU;
    the record is what later runs read, and int8 is chosen only with its labels unchanged."""
    from fnd_core.pipeline.encoder_precision import MIN_SAME_LABELS, cpu_tag

    engine, settings = trained
    version = scoring.resolve_version(engine, None).version
    folder = Path(settings.store) / "encoders-int8"
    record = json.loads((folder / "choices" / f"{version}-{cpu_tag()}.json").read_text())
    assert record["version"] == version and record["check_posts"] == 256
    assert set(record["chosen"]) == {"image", "text"}
    assert set(record["chosen"].values()) <= {"int8", record["float_precision"]}
    # the check also reads where new topics' scores lie: the recipe's out-of-fold quantiles
    quantiles = registry.get_version(engine, version).metrics["score_logit_quantiles"]
    assert len(quantiles) == 101 and quantiles == sorted(quantiles)
    held = min(record["same_labels"], record["new_topic_same_labels"]) >= MIN_SAME_LABELS
    faster = {k: s["int8"] >= 1.1 * s["float"] for k, s in record["posts_per_s"].items()}
    int8 = {k for k, p in record["chosen"].items() if p == "int8"}
    assert all(faster[k] for k in int8)  # int8 only where it measured faster...
    assert held or not int8  # ...and only with both shares of labels held
    if any(faster.values()) and not int8:  # tried and refused: the figures say why
        assert not held
    built = {json.loads(p.read_text())["sha256"] for p in folder.glob("*/w*/record.json")}
    assert set(record["int8_sha256"].values()) == built
    report = scoring.score_shard(
        engine, settings, model_version=version, rescore_all=True, run_id="initial"
    )
    assert report.encoders == record["chosen"]


def test_stable_batches_raise_no_alarm(trained):
    engine, settings = trained
    landing = Path(settings.landing)
    reports = [
        land_and_score(engine, settings, generate_batch(landing, 60, seed=100 + i).data_file,
                       f"stable-{i}")
        for i in range(20)
    ]  # fmt: skip
    flagged = [r.summary() for r in reports if r.flagged]
    print(f"false alarms: {len(flagged)} of {len(reports)} stable batches")
    aucs = [r.metrics["image_auc"] for r in reports] + [r.metrics["text_auc"] for r in reports]
    print(f"domain AUCs on stable batches: max {max(aucs):.3f}, mean {np.mean(aucs):.3f}, "
          f"bar {reports[0].metrics['image_auc_bar']}")  # fmt: skip
    kls = [r.metrics["score_kl"] for r in reports]
    print(f"score KL divergence on stable batches: max {max(kls):.3f}, mean {np.mean(kls):.3f}")
    assert len(flagged) <= 1, flagged  # at most 5 %
    with engine.connect() as conn:
        stored = conn.execute(sa.text(
            "select count(*), count(*) filter (where flagged) from fnd.drift_summary "
            "where subject like 'stable-%'"
        )).one()  # fmt: skip
    assert tuple(stored) == (20, len(flagged))
    assert all(r.metrics["outputs_check"]["suite"] == "model_outputs" for r in reports)


def _rewrite(batch_file: Path, change) -> Path:
    rows = [json.loads(line) for line in batch_file.read_text().splitlines()]
    batch_file.write_text("".join(json.dumps(change(row)) + "\n" for row in rows))
    return batch_file


def test_a_shifted_fake_share_is_flagged(trained):
    engine, settings = trained
    batch = generate_batch(Path(settings.landing), 80, seed=200, fake_share=0.95)
    report = land_and_score(engine, settings, batch.data_file, "shift-prior")
    assert report.flagged and any("fake share" in r for r in report.reasons), report.to_json()
    # The output checks are the GX suite model_outputs, recorded like any validation.
    assert report.metrics["outputs_check"]["success"] is False
    assert "expect_column_mean_to_be_between(is_fake)" in report.metrics["outputs_check"]["failed"]
    with engine.connect() as conn:
        docs, success = conn.execute(sa.text(
            "select data_docs_uri, success from fnd.validation_runs "
            "where suite = 'model_outputs' and run_id = 'shift-prior'"
        )).one()  # fmt: skip
        passed = conn.execute(sa.text(
            "select outputs_check_passed from fnd.drift_summary where subject = 'shift-prior'"
        )).scalar_one()  # fmt: skip
    assert success is False and passed is False and Path(docs).is_file()


def test_a_different_caption_style_is_flagged(trained):
    engine, settings = trained
    batch = generate_batch(Path(settings.landing), 80, seed=201)

    def shouting(row):
        return {**row, "text": f"BREAKING!!! {row['text'].upper()} RT PLS #viral #mustsee"}

    report = land_and_score(engine, settings, _rewrite(batch.data_file, shouting), "shift-text")
    assert report.flagged and any(r.startswith("text inputs") for r in report.reasons), (
        report.to_json())  # fmt: skip


def test_a_different_picture_style_is_flagged(trained):
    engine, settings = trained
    batch = generate_batch(Path(settings.landing), 80, seed=202)
    rows = [json.loads(line) for line in batch.data_file.read_text().splitlines()]
    for path in {batch.data_file.parent / row["image"] for row in rows}:  # faded grey copies
        with Image.open(path) as image:
            grey = ImageOps.grayscale(image).point(lambda v: 128 + v // 4).convert("RGB")
        grey.save(path, format="JPEG")
    report = land_and_score(engine, settings, batch.data_file, "shift-image")
    assert report.flagged and any(r.startswith("image inputs") for r in report.reasons), (
        report.to_json())  # fmt: skip


def test_retraining_is_requested_once_per_champion(trained):
    """Flagged runs of one champion ask for retraining once: retraining on the same labelled
    posts cannot fix drift in unlabelled ones, and must not loop retrain -> rescore -> drift."""
    engine, settings = trained
    batch = generate_batch(Path(settings.landing), 60, seed=203, fake_share=0.95)
    report = land_and_score(engine, settings, batch.data_file, "shift-prior-2")
    quiet = land_and_score(
        engine, settings, generate_batch(Path(settings.landing), 60, seed=204).data_file, "calm"
    )
    first, second = (drift.record(engine, report, f"run-{i}") for i in range(2))
    calm = drift.record(engine, quiet, "run-calm")
    assert report.flagged and not quiet.flagged
    assert drift.request_retrain(engine, calm, cooldown_hours=0) is False  # not flagged
    assert drift.request_retrain(engine, first, cooldown_hours=0) is True
    assert drift.request_retrain(engine, second, cooldown_hours=0) is False  # same champion
    # Another model's flagged report, an hour after the request: the cooldown decides.
    registry.register_candidate(
        engine,
        version="m-other",
        preset="offline",
        config={},
        metrics={},
        artifact_uri="unused",
        artifact_sha256="0" * 64,
    )
    with engine.begin() as conn:
        conn.execute(sa.text("update fnd.drift_reports set model_version = 'm-other' "
                             "where report_id = :id"), {"id": second})  # fmt: skip
        conn.execute(sa.text("update fnd.drift_reports set computed_at = now() - interval '1 h' "
                             "where report_id = :id"), {"id": first})  # fmt: skip
    assert drift.request_retrain(engine, second, cooldown_hours=2) is False  # within 2 h
    assert drift.request_retrain(engine, second, cooldown_hours=0.5) is True  # after 30 min
    with engine.connect() as conn:
        assert conn.execute(sa.text(
            "select count(*) from fnd.drift_summary where retrain_requested"
        )).scalar_one() == 2  # fmt: skip
