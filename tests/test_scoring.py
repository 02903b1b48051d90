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

import pytest
import sqlalchemy as sa

from fnd_core.pipeline import page_scoring, scoring
from tests.helpers import ingest_demo, promote_tiny

pytestmark = pytest.mark.slow


def count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


@pytest.fixture
def champion(clean_db, settings):
    ingest_demo(clean_db, settings, 150, seed=11)
    return promote_tiny(clean_db, settings)


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


def test_worker_processes_score_shards_at_once(clean_db, settings, champion):
    """`fnd score`'s path on CPU: two spawned workers, one shard each, every post once."""
    cores = len(os.sched_getaffinity(0))
    assert scoring.worker_plan(settings, n_shards=3, device="cpu") == (1, cores)  # default
    settings = replace(settings, score_workers=2, num_workers=0)
    assert scoring.worker_plan(settings, n_shards=3, device="cpu") == (2, max(1, cores // 2))
    assert scoring.worker_plan(settings, n_shards=1, device="cpu")[0] == 1
    work = scoring.plan(clean_db, n_shards=2)
    reports = scoring.score_shards(settings.database_url, settings, work, page_size=40)
    assert sorted(r.shard for r in reports) == [0, 1]
    assert sum(r.n_scored for r in reports) == 150
    assert count(clean_db, "select count(distinct post_id) from fnd.predictions") == 150
    assert scoring.plan(clean_db, n_shards=2)["n_todo"] == 0


def test_labels_follow_threshold_and_run_id(clean_db, settings, champion):
    score_all(clean_db, settings)
    with clean_db.connect() as conn:
        rows = conn.execute(
            sa.text("select p_fake, label, threshold, run_id from fnd.predictions")
        ).all()
    assert all((label == "fake") == (p >= t) for p, label, t, _ in rows)
    assert {r[3] for r in rows} == {"cli"}


def test_rescore_all_overwrites_in_place(clean_db, settings, champion):
    score_all(clean_db, settings)
    first = count(clean_db, "select count(*) from fnd.predictions")
    reports = score_all(clean_db, settings, rescore_all=True)
    assert sum(r.n_scored for r in reports) == first
    assert count(clean_db, "select count(*) from fnd.predictions") == first


def test_unreadable_image_is_recorded_not_skipped(clean_db, settings, champion):
    with clean_db.connect() as conn:
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
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if re.search(r"shard \d/2: \d+ scored", line) or time.monotonic() > deadline:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2)  # let a surviving worker (the bug this guards against) write more pages
    partial = count(clean_db, "select count(*) from fnd.predictions")
    assert 0 < partial < 150, "the kill should land between the first and the last page"
    time.sleep(3)
    assert count(clean_db, "select count(*) from fnd.predictions") == partial, "orphan scorer"

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
    assert count(clean_db, "select count(*) from fnd.predictions") == count(
        clean_db, "select count(*) from fnd.posts"
    )


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
