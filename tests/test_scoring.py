"""Batch scoring against Postgres with a real (tiny) model: complete, exactly once, restartable."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from fnd_core.pipeline import page_scoring, prediction_store, scoring
from fnd_core.settings import Settings
from tests.helpers import ChampionRecipe

pytestmark = pytest.mark.slow
CHAMPION = ChampionRecipe(n_posts=150, seed=11)
KEEP_FIRST = "predictions_keep_first_verdict"  # sql/017; re-enabled as it was declared


def count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


@pytest.fixture
def settings(stable_settings: Settings) -> Settings:
    """At the path where ``champion`` restores its saved FND_HOME."""
    return stable_settings


def score_all(engine, settings, *, n_shards: int = 2, **kwargs) -> list[scoring.ShardReport]:
    work = scoring.plan(engine, n_shards=n_shards, **kwargs)
    return [
        scoring.score_shard(
            engine, settings, model_version=work["model_version"], shard=s["shard"],
            n_shards=n_shards, rescore_all=kwargs.get("rescore_all", False), page_size=40,
        )
        for s in work["shards"]
    ]  # fmt: skip


def test_every_post_scored_once_then_nothing(clean_db, settings, champion):
    reports = score_all(clean_db, settings, n_shards=3)
    assert sum(r.n_scored for r in reports) == 150
    assert count(clean_db, "select count(*) from fnd.latest_predictions") == 150
    assert scoring.plan(clean_db, n_shards=3)["n_todo"] == 0
    again = score_all(clean_db, settings, n_shards=3)
    assert sum(r.n_scored for r in again) == 0
    assert count(clean_db, "select count(*) from fnd.predictions") == 150


@pytest.mark.parametrize(
    ("cores", "score_workers", "cpu_threads", "n_shards", "expected"),
    [
        (8, 1, 0, 3, (1, 8)),  # the default: one process using every core
        (8, 2, 0, 3, (2, 4)),  # the cores shared out
        (8, 4, 0, 2, (2, 4)),  # never more workers than shards
        (8, 2, 0, 1, (1, 8)),
        (8, 2, 3, 3, (2, 3)),  # FND_CPU_THREADS wins
        (3, 2, 0, 3, (2, 1)),
        (1, 4, 0, 4, (4, 1)),  # at least one thread each
    ],
)
def test_worker_plan_shares_the_cores(
    monkeypatch, settings, cores, score_workers, cpu_threads, n_shards, expected
):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    settings = replace(settings, score_workers=score_workers, cpu_threads=cpu_threads)
    assert scoring.worker_plan(settings, n_shards=n_shards, device="cpu") == expected


def test_worker_processes_score_shards_at_once(clean_db, settings, champion):
    """`fnd score`'s path on CPU: two spawned workers, one shard each, every post once."""
    settings = replace(settings, score_workers=2, num_workers=0)
    work = scoring.plan(clean_db, n_shards=2)
    reports = scoring.score_shards(settings.database_url, settings, work, page_size=40)
    assert sorted(r.shard for r in reports) == [0, 1]
    assert sum(r.n_scored for r in reports) == 150
    assert count(clean_db, "select count(distinct post_id) from fnd.predictions") == 150
    assert scoring.plan(clean_db, n_shards=2)["n_todo"] == 0


def test_labels_follow_threshold_and_run_id(clean_db, settings, champion):
    """Each stored verdict is the champion's: its threshold (0.5, class-balanced training),
    and P(fake) as the loaded model's own forward pass gives it, post by post."""
    import torch

    from fnd_core.model.artifacts import load_model
    from fnd_core.model.encoders.preprocess import load_pixels
    from fnd_core.pipeline import registry

    score_all(clean_db, replace(settings, inference_precision="fp32"))
    with clean_db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select pr.p_fake, pr.label, pr.threshold, pr.run_id, p.text, p.image_uri "
                "from fnd.predictions pr join fnd.posts p using (post_id) order by post_id"
            )
        ).all()
    assert len(rows) == 150
    assert {(t, run_id) for _, _, t, run_id, _, _ in rows} == {(0.5, "cli")}
    assert all(label == ("fake" if p >= 0.5 else "real") for p, label, *_ in rows)
    version = registry.get_version(clean_db, champion)
    loaded = load_model(version.artifact_uri, version.artifact_sha256)
    model = loaded.model
    for p_fake, _, _, _, text, image_uri in rows[::15]:  # one post in 15, one at a time
        pixels = load_pixels(image_uri, image_size=model.config.image_size)[None]
        with torch.inference_mode():
            logit = model(pixels, **model.tokenize([text]))
        # what the scorer writes: the model's P(fake) through the artifact's calibration
        expected = loaded.calibration.apply(torch.sigmoid(logit).numpy())[0]
        assert p_fake == pytest.approx(float(expected), abs=1e-4)


def test_the_accuracy_objective_moves_the_stored_threshold_by_the_estimated_share(
    clean_db, settings, champion, caplog
):
    """Each shard estimates its posts' fake share before writing a verdict; the threshold it
    used is stored with each verdict, and label = (p_fake >= threshold) still holds."""
    from fnd_core.model.calibration import accuracy_threshold, estimate_fake_share

    settings = replace(settings, decision_objective="accuracy", prior_min_posts=30)
    reports = score_all(clean_db, settings, n_shards=2)
    assert sum(r.n_scored for r in reports) == 150
    with clean_db.connect() as conn:
        rows = conn.execute(sa.text(  # each verdict with its post's shard, as scoring assigns it
            f"select pr.p_fake, pr.label, pr.threshold, {prediction_store._SHARD_SQL} as shard "
            "from fnd.predictions pr join fnd.posts p using (post_id)"
        ), {"n_shards": 2}).all()  # fmt: skip
    for report in reports:
        p = np.array([r[0] for r in rows if r[3] == report.shard])
        share, _ = estimate_fake_share(p)
        assert report.estimated_fake_share == pytest.approx(share, abs=1e-3)
        assert report.threshold == pytest.approx(accuracy_threshold(0.5, share), abs=1e-4)
        assert {round(r[2], 4) for r in rows if r[3] == report.shard} == {
            round(float(np.float32(report.threshold)), 4)
        }
    assert all(label == ("fake" if p >= t else "real") for p, label, t, _ in rows)


def test_too_few_posts_for_an_estimate_keep_the_balanced_threshold(clean_db, settings, champion):
    settings = replace(settings, decision_objective="accuracy", prior_min_posts=10_000)
    reports = score_all(clean_db, settings, n_shards=1)
    assert [(r.threshold, r.estimated_fake_share) for r in reports] == [(0.5, None)]
    assert count(clean_db, "select count(*) from fnd.predictions where threshold = 0.5") == 150


def test_an_unknown_objective_is_refused_before_scoring(clean_db, settings, champion):
    with pytest.raises(ValueError, match="FND_DECISION_OBJECTIVE"):
        score_all(clean_db, replace(settings, decision_objective="recall"))
    assert count(clean_db, "select count(*) from fnd.predictions") == 0


def test_rescore_all_overwrites_in_place_and_keeps_the_first_verdict(clean_db, settings, champion):
    score_all(clean_db, settings)
    first = count(clean_db, "select count(*) from fnd.predictions")
    with clean_db.begin() as conn:  # the first verdicts, as if given a week ago
        conn.exec_driver_sql(f"alter table fnd.predictions disable trigger {KEEP_FIRST}")
        conn.exec_driver_sql(
            "update fnd.predictions set first_scored_at = scored_at - interval '7 days', "
            "scored_at = scored_at - interval '7 days'"
        )
        conn.exec_driver_sql(f"alter table fnd.predictions enable always trigger {KEEP_FIRST}")
    reports = score_all(clean_db, settings, rescore_all=True)
    assert first == 150 and sum(r.n_scored for r in reports) == 150
    assert count(clean_db, "select count(*) from fnd.predictions") == 150  # nothing twice
    kept = (
        "select count(*) from fnd.predictions where scored_at > now() - interval '1 hour' "
        "and first_scored_at < now() - interval '6 days' and first_p_fake = p_fake"
    )
    assert count(clean_db, kept) == 150


def test_labels_after_the_verdicts_are_realized_once_and_a_rescore_changes_nothing(
    clean_db, settings, champion
):
    """New unlabelled posts scored by the champion, their labels arriving afterwards through
    ``fnd label``: fnd.realized_performance matches a count made here from the first verdicts;
    rescoring everything afterwards keeps the first verdicts and counts nothing twice."""
    from click.testing import CliRunner

    from fnd_core.stack.cli import cli
    from fnd_core.stack.demo_posts import make_post
    from tests.helpers import ingest_demo

    ingest_demo(clean_db, settings, 60, seed=31, unlabelled_share=1.0)
    score_all(clean_db, settings)
    truth = {f"s31-{i:06d}": int(make_post(31, i).is_fake) for i in range(60)}
    labels = Path(settings.landing) / "labels"
    labels.mkdir(parents=True)
    (labels / "factcheck.csv").write_text(
        "post_id,label,source\n" + "".join(f"{k},{v},afp\n" for k, v in truth.items())
    )
    settings = replace(settings, realized_min_labels_per_class=1)
    result = CliRunner().invoke(cli, ["label", str(labels)], obj={"settings": settings})
    assert result.exit_code == 0, result.output
    with clean_db.connect() as conn:
        said = dict(conn.execute(sa.text(
            "select post_id, first_label = 'fake' from fnd.predictions where post_id like 's31-%'"
        )).all())  # fmt: skip
    tp = sum(said[k] and v == 1 for k, v in truth.items())
    tn = sum(not said[k] and v == 0 for k, v in truth.items())
    n_fake = sum(truth.values())
    expected_ba = (tp / n_fake + tn / (60 - n_fake)) / 2

    def realized() -> dict:
        with clean_db.connect() as conn:
            return dict(conn.execute(sa.text(
                "select * from fnd.realized_performance where model_version = :v"
            ), {"v": champion}).mappings().one())  # fmt: skip

    before = realized()
    # the champion's 150 training posts were labelled when scored: hindsight, not counted
    assert (before["n_verdicts"], before["n_hindsight"], before["n_labelled"]) == (210, 150, 60)
    assert (before["tp"], before["tn"], before["n_fake"]) == (tp, tn, n_fake)
    assert float(before["balanced_accuracy"]) == pytest.approx(expected_ba, abs=1e-4)
    first_times = count(clean_db, "select count(distinct first_scored_at) from fnd.predictions")
    score_all(clean_db, settings, rescore_all=True)
    after = realized()
    assert {k: after[k] for k in ("n_verdicts", "n_labelled", "n_hindsight", "tp", "fp", "tn",
                                  "fn", "balanced_accuracy")} == {
        k: before[k] for k in ("n_verdicts", "n_labelled", "n_hindsight", "tp", "fp", "tn", "fn",
                               "balanced_accuracy")
    }  # fmt: skip
    assert count(clean_db, "select count(distinct first_scored_at) from fnd.predictions") == (
        first_times
    )


def test_each_verdict_gets_its_nearest_labelled_picture_and_keeps_it_through_a_rescore(
    clean_db, settings, champion
):
    """A repost (cropped, scaled, re-encoded) of a labelled demo picture lands unlabelled: its
    verdict comes with the labelled post showing that picture; a rescore keeps the evidence."""
    import json

    from PIL import Image

    from fnd_core.ingest.load import ingest_file
    from fnd_core.stack.demo_posts import make_post
    from tests.test_evidence import reposted

    landing = Path(settings.landing)
    reposted(Image.open(landing / "images" / "s11-000003.jpg").convert("RGB")).save(
        landing / "images" / "repost.jpg", "JPEG", quality=70
    )
    (landing / "repost.jsonl").write_text(
        json.dumps({"id": "repost", "text": "seen again", "image": "images/repost.jpg"}) + "\n"
    )
    ingest_file(clean_db, str(landing / "repost.jsonl"), settings)
    reports = score_all(clean_db, settings)
    assert sum(r.n_scored for r in reports) == 151

    def found() -> dict:
        with clean_db.connect() as conn:
            return {r[0]: tuple(r[1:]) for r in conn.execute(sa.text(
                "select post_id, match_post_id, match_label, matched from fnd.prediction_evidence"
            ))}  # fmt: skip

    first = found()
    assert len(first) == 151 and first["repost"] == ("s11-000003", make_post(11, 3).label, True)
    assert all(match != post for post, (match, _, _) in first.items())  # never its own evidence
    score_all(clean_db, settings, rescore_all=True)
    assert found() == first
    off = replace(settings, picture_evidence=False)
    with clean_db.begin() as conn:
        conn.execute(sa.text("delete from fnd.prediction_evidence"))
    score_all(clean_db, off, rescore_all=True)
    assert set(found().values()) == {(None, None, False)}  # novelty only: no picture looked up


def test_each_verdict_records_how_far_its_post_lies_from_the_training_topics(
    clean_db, settings, champion
):
    """Novelty (a percentile of the training posts' own distances) beside every verdict, the
    same again on a rescore; the champion's artifact carries the reference."""
    from fnd_core.model.artifacts import load_model
    from fnd_core.pipeline import registry

    version = registry.get_version(clean_db, champion)
    reference = load_model(version.artifact_uri, version.artifact_sha256).novelty
    assert reference is not None and reference.n_posts == CHAMPION.n_posts

    def novelty() -> dict[str, float]:
        with clean_db.connect() as conn:
            return dict(conn.execute(sa.text(
                "select post_id, novelty from fnd.prediction_evidence where model_version = :v"
            ), {"v": champion}).all())  # fmt: skip

    score_all(clean_db, settings)
    first = novelty()
    values = np.array(list(first.values()), dtype=float)
    assert len(first) == CHAMPION.n_posts and not np.isnan(values).any()
    assert values.min() >= 0.0 and values.max() <= 100.0 and values.std() > 5.0
    score_all(clean_db, settings, rescore_all=True)
    assert novelty() == pytest.approx(first)


def test_unreadable_image_is_recorded_not_skipped(clean_db, settings, champion):
    with clean_db.connect() as conn:
        kind = conn.execute(
            sa.text("select kind from fnd.model_leaderboard where version = :v"), {"v": champion}
        ).scalar_one()
        assert kind in ("fusion", "linear"), f"premise: the champion reads pictures, not {kind}"
        post_id, uri = conn.execute(
            sa.text("select post_id, image_uri from fnd.posts order by post_id limit 1")
        ).one()
        sharing = conn.execute(
            sa.text("select count(*) from fnd.posts where image_uri = :u"), {"u": uri}
        ).scalar_one()
    Path(uri).unlink()
    # Training cached this image's encoder features (keyed by its sha256), and a cached
    # feature would rightly be reused: drop the cache so the image itself must be read.
    shutil.rmtree(settings.home / "feature_cache")
    reports = score_all(clean_db, settings)
    assert sum(r.n_errors for r in reports) == sharing
    assert sum(r.n_scored for r in reports) == 150 - sharing
    with clean_db.connect() as conn:
        error = conn.execute(
            sa.text("select error from fnd.scoring_errors where post_id = :p"), {"p": post_id}
        ).scalar_one()
    assert "No such file" in error or "FileNotFound" in error


def test_no_champion_is_a_clear_error(clean_db):
    with pytest.raises(scoring.NoChampionError, match="run fnd_retrain"):
        scoring.plan(clean_db)


def test_killed_midway_then_rerun_leaves_no_gaps_or_duplicates(clean_db, settings, champion):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FND_")},
        "FND_HOME": str(settings.home),
        "FND_DATABASE_URL": settings.database_url,
        "FND_NUM_WORKERS": "0",
    }
    cmd = [sys.executable, "-m", "fnd_core.stack.cli", "score", "--page-size", "10",
           "--shards", "2", "--workers", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    # Kill -9 as soon as a first page is committed: `fnd score` dies mid-shard, and its two
    # worker processes die with it (they would otherwise finish the job).
    import psutil

    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if re.search(r"shard \d/2: \d+ scored", line) or time.monotonic() > deadline:
            break
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers, "fnd score --workers 2 scores in worker processes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # a surviving worker (the bug this guards against) would go on writing pages
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"orphan scorer(s): {alive}"
    partial = count(clean_db, "select count(*) from fnd.predictions")
    assert 0 < partial < 150, "the kill should land between the first and the last page"

    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    assert count(clean_db, "select count(*) from fnd.predictions") == 150
    assert (
        count(
            clean_db,
            "select count(*) from fnd.posts p where not exists "
            "(select 1 from fnd.predictions pr where pr.post_id = p.post_id)",
        )
        == 0
    )


def test_a_full_disk_fails_the_shard_for_a_retry_instead_of_blaming_the_posts(
    clean_db, settings, champion, monkeypatch
):
    import errno

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(page_scoring, "_predict", disk_full)
    with pytest.raises(OSError, match="No space left"):
        scoring.score_shard(clean_db, settings, model_version=champion)
    assert count(clean_db, "select count(*) from fnd.scoring_errors") == 0
    monkeypatch.undo()
    score_all(clean_db, settings)  # the retry scores everything
    assert count(clean_db, "select count(*) from fnd.predictions") == 150


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (OSError(28, "No space left on device"), True),
        (ConnectionResetError(), True),
        (MemoryError(), True),
        (RuntimeError("Error while serializing: I/O error: (os error 28)"), True),
        (ValueError("cannot identify image file"), False),
        (FileNotFoundError(2, "No such file"), False),
    ],
)
def test_what_counts_as_the_machines_fault(exc, transient):
    assert page_scoring.is_transient(exc) is transient
    wrapped = RuntimeError("decoding failed")
    wrapped.__cause__ = exc
    assert page_scoring.is_transient(wrapped) is transient


def _cached_model(engine):
    """The champion as this process's scoring holds it (scoring.inference_model keeps one)."""
    version = scoring.resolve_version(engine, None)
    return scoring.inference_model(*version.artifact(), "cpu").model


def test_int8_scoring_builds_each_encoder_once_and_keeps_the_float_verdicts(
    clean_db, settings, champion
):
    """FND_INFERENCE_PRECISION=int8: ONNX Runtime encoders built once into the store (with
    their calibration pictures recorded), int8 features cached apart, labels as in fp32."""
    import json

    int8 = replace(settings, inference_precision="int8")
    reports = score_all(clean_db, int8, n_shards=1)
    assert reports[0].n_scored == 150 and reports[0].encoders == {"image": "int8", "text": "int8"}
    served = _cached_model(clean_db)
    assert served.released_encoders == {"image", "text"}  # one copy of each encoder held
    with pytest.raises(RuntimeError, match="released for its int8 copy"):
        served.encode_texts(*served.tokenize(["a float run now"]).values())
    records = {
        r["kind"]: r
        for r in (
            json.loads(p.read_text())
            for p in (settings.home / "store" / "encoders-int8").glob("*/w*/record.json")
        )
    }
    assert set(records) == {"image", "text"}
    calibration = records["image"]["calibration"]
    assert len(calibration) == 64 and all(Path(c["uri"]).is_file() for c in calibration)
    stored = {c["sha256"] for c in calibration}
    with clean_db.connect() as conn:
        snapshot = set(conn.execute(sa.text("select image_sha256 from fnd.posts")).scalars())
    assert stored <= snapshot  # pictures of the training snapshot, not of the scored posts
    cached = [p.name for p in (settings.home / "feature_cache").iterdir()]
    assert sum("-int8-" in name for name in cached) == 2
    query = "select post_id, p_fake, label from fnd.latest_predictions order by post_id"
    with clean_db.connect() as conn:
        int8_rows = conn.execute(sa.text(query)).all()
    score_all(clean_db, replace(settings, inference_precision="fp32"), n_shards=1,
              rescore_all=True)  # fmt: skip
    reloaded = _cached_model(clean_db)
    assert reloaded is not served and not reloaded.released_encoders
    with clean_db.connect() as conn:
        fp32_rows = conn.execute(sa.text(query)).all()
    delta = np.abs([a.p_fake - b.p_fake for a, b in zip(int8_rows, fp32_rows, strict=True)])
    same = np.mean([a.label == b.label for a, b in zip(int8_rows, fp32_rows, strict=True)])
    assert same >= 0.95 and delta.mean() < 0.02, (same, delta.mean())
    again = score_all(clean_db, int8, n_shards=1, rescore_all=True)  # built already: loaded
    assert again[0].encoders == {"image": "int8", "text": "int8"}
    built = [json.loads(p.read_text())["built_at"] for p in
             (settings.home / "store" / "encoders-int8").glob("*/w*/record.json")]  # fmt: skip
    assert sorted(built) == sorted(r["built_at"] for r in records.values())
