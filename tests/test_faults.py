"""Fault injection: processes killed mid-step, Postgres restarted, disks full, runs racing.

Each case ends the way an operator needs it to: every post accounted for (in ``fnd.posts``
or the quarantine), none twice, no landing file left behind, no orphan model version, and a
rerun (the Airflow retry) that completes. The faults are real: SIGKILL to a child process
running fnd's own code (``tests/fault_child.py``), ``pg_ctlcluster restart`` of the server,
a tmpfs of a few KiB mounted over the folder being written. README, "Fault tolerance",
summarises the suite.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from fnd_core.ingest.load import ingest_file, list_new_files
from fnd_core.pipeline import retrain, scoring
from fnd_core.settings import Settings
from fnd_core.stack.demo import generate_batch
from tests.helpers import ChampionRecipe, ingest_demo

pytestmark = [pytest.mark.slow, pytest.mark.faults]

REPO = Path(__file__).resolve().parents[1]
N_POSTS = 120
CHAMPION = ChampionRecipe(n_posts=N_POSTS, seed=22, epochs=2)


def run_child(spec: dict, *, wait: bool = True):
    cmd = [sys.executable, "-m", "tests.fault_child", json.dumps(spec)]
    child = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    if not wait:
        return child
    out, err = child.communicate(timeout=300)
    return child.returncode, out, err


def count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def assert_ingested_once(engine, landing: Path, n_posts: int) -> None:
    """Every post once, one loaded batch that knows its archive, nothing left to ingest."""
    assert count(engine, "select count(*) from fnd.posts") == n_posts
    assert count(engine, "select count(distinct post_id) from fnd.posts") == n_posts
    assert count(engine, "select count(*) from fnd.ingest_batches where status = 'loaded' "
                         "and archived_uri is not null") == 1  # fmt: skip
    assert list_new_files(str(landing), _no_settle()) == []  # no file stuck in landing
    assert len(list((landing / "archive").iterdir())) == 1


def _no_settle():
    return Settings(landing_settle_seconds=0)


def spec_for(settings, step: str, **extra) -> dict:
    return {"step": step, "url": settings.database_url, "home": str(settings.home),
            "run_id": "run-1", **extra}  # fmt: skip


@pytest.mark.parametrize(
    "kill_at", ["before_copy", "between_chunks", "after_copy", "after_commit", "after_move"]
)
def test_ingest_killed_at_each_step_then_retried(clean_db, settings, kill_at):
    landing = Path(settings.landing)
    batch = generate_batch(landing, N_POSTS, seed=21)
    spec = spec_for(settings, "ingest", file=str(batch.data_file), kill_at=kill_at, chunk_rows=20)
    rc, _, err = run_child(spec)
    assert rc == -signal.SIGKILL, err[-2000:]
    retry = ingest_file(clean_db, str(batch.data_file), settings, run_id="run-1")
    assert (retry.status, retry.n_accepted) == ("loaded", N_POSTS)  # the DAG announces them
    assert_ingested_once(clean_db, landing, N_POSTS)


@pytest.fixture
def settings(stable_settings: Settings) -> Settings:
    """At the path where ``champion`` restores its saved FND_HOME."""
    return stable_settings


def assert_scored_once(engine, version: str) -> None:
    n_posts = count(engine, "select count(*) from fnd.posts")
    assert count(engine, "select count(*) from fnd.predictions where model_version = :v",
                 v=version) == n_posts  # fmt: skip
    assert count(engine, "select count(distinct post_id) from fnd.predictions") == n_posts
    assert count(engine, "select count(*) from fnd.scoring_errors") == 0


@pytest.mark.parametrize("kill_at", ["before_write", "between_pages"])
def test_scoring_killed_mid_shard_then_retried(clean_db, settings, champion, kill_at):
    rc, _, err = run_child(spec_for(settings, "score", version=champion, kill_at=kill_at))
    assert rc == -signal.SIGKILL, err[-2000:]
    scoring.score_shard(clean_db, settings, model_version=champion, page_size=20)
    assert_scored_once(clean_db, champion)


@pytest.mark.parametrize("kill_at", ["before_register", "after_register"])
def test_training_killed_then_retried_leaves_one_version(clean_db, settings, kill_at):
    ingest_demo(clean_db, settings, N_POSTS, seed=23)
    snap = retrain.snapshot(clean_db)
    rc, _, err = run_child(spec_for(settings, "train", snap=snap, kill_at=kill_at))
    assert rc == -signal.SIGKILL, err[-2000:]
    rc, out, err = run_child(spec_for(settings, "train", snap=snap))  # Airflow's retry
    assert rc == 0, err[-2000:]
    version = json.loads(out.splitlines()[-1])["version"]
    assert count(clean_db, "select count(*) from fnd.model_versions") == 1
    evaluation = retrain.evaluate(clean_db, settings, version)
    decision = retrain.gate(evaluation, retrain.policy_from(settings), forced_by="faults")
    outcome = retrain.record_decision(clean_db, evaluation, decision, retrain.policy_from(settings))
    assert outcome["decision"] == "promote"


# Postgres restarted under a running step --------------------------------------------------

PG_CTL = shutil.which("pg_ctlcluster")


def restart_postgres() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart",
                    "-m", "fast"], check=True, timeout=120)  # fmt: skip


def _restart_under(child, pause_file: Path) -> tuple[int, str]:
    deadline = time.monotonic() + 120
    while not pause_file.exists():
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()[1][-2000:]
        time.sleep(0.2)
    restart_postgres()
    _, err = child.communicate(timeout=120)
    return child.returncode, err


needs_pg_ctl = pytest.mark.skipif(
    PG_CTL is None or not Path("/etc/postgresql").is_dir(),
    reason="restarting Postgres needs a local Debian cluster (pg_ctlcluster)",
)


@needs_pg_ctl
def test_postgres_restarted_mid_ingest(clean_db, settings, tmp_path):
    landing = Path(settings.landing)
    batch = generate_batch(landing, N_POSTS, seed=24)
    pause = tmp_path / "paused"
    spec = spec_for(settings, "ingest", file=str(batch.data_file), chunk_rows=20,
                    pause_at="between_chunks", pause_file=str(pause))  # fmt: skip
    rc, err = _restart_under(run_child(spec, wait=False), pause)
    assert rc != 0 and "OperationalError" in err, err[-2000:]  # the task fails, to be retried
    clean_db.dispose()  # the test's own pooled connections died with the server
    assert batch.data_file.exists()  # nothing committed, nothing moved
    ingest_file(clean_db, str(batch.data_file), settings, run_id="run-1")
    assert_ingested_once(clean_db, landing, N_POSTS)


@needs_pg_ctl
def test_postgres_restarted_mid_scoring(clean_db, settings, champion, tmp_path):
    pause = tmp_path / "paused"
    spec = spec_for(settings, "score", version=champion, pause_at="between_pages",
                    pause_file=str(pause))  # fmt: skip
    rc, err = _restart_under(run_child(spec, wait=False), pause)
    # Pages commit one by one and each takes a pre-pinged connection: the shard rides over
    # a restart between pages and finishes on its own.
    assert rc == 0, err[-2000:]
    clean_db.dispose()
    assert count(clean_db, "select count(*) from fnd.scoring_errors") == 0
    scoring.score_shard(clean_db, settings, model_version=champion, page_size=20)
    assert_scored_once(clean_db, champion)


# Disk full -------------------------------------------------------------------------------


@contextlib.contextmanager
def full_disk(folder: Path):
    """A 4 KiB tmpfs over ``folder``: the next file written there fails with ENOSPC."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(folder)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_disk_full_during_scoring_fails_the_shard_then_the_retry_scores_all(
    clean_db, settings, champion
):
    shutil.rmtree(settings.home / "feature_cache")  # scoring must write new feature shards
    with full_disk(settings.home / "feature_cache"), pytest.raises(OSError) as err:
        scoring.score_shard(clean_db, settings, model_version=champion, page_size=20)
    assert err.value.errno == errno.ENOSPC or "No space" in str(err.value)
    assert count(clean_db, "select count(*) from fnd.scoring_errors") == 0  # no post blamed
    scoring.score_shard(clean_db, settings, model_version=champion, page_size=20)
    assert_scored_once(clean_db, champion)


def test_disk_full_during_training_registers_nothing_then_the_retry_does(clean_db, settings):
    ingest_demo(clean_db, settings, N_POSTS, seed=25)
    snap = retrain.snapshot(clean_db)
    models = Path(settings.store) / "models"
    with full_disk(models), pytest.raises(OSError):
        retrain.train_candidate(clean_db, settings, snap, preset="tiny", epochs=2, run_id="r")
    assert count(clean_db, "select count(*) from fnd.model_versions") == 0
    candidate = retrain.train_candidate(
        clean_db, settings, snap, preset="tiny", epochs=2, run_id="r"
    )
    assert count(clean_db, "select count(*) from fnd.model_versions") == 1
    assert retrain.evaluate(clean_db, settings, candidate["version"])


# Runs racing -----------------------------------------------------------------------------


def test_two_ingests_of_the_same_files_at_once(clean_db, settings):
    landing = Path(settings.landing)
    batch = generate_batch(landing, N_POSTS, seed=26)
    spec = spec_for(settings, "ingest", file=str(batch.data_file), chunk_rows=20)
    children = [run_child({**spec, "run_id": f"run-{i}"}, wait=False) for i in (1, 2)]
    results = [(c.wait(timeout=300), c.stdout.read(), c.stderr.read()) for c in children]
    reports = [json.loads(out.splitlines()[-1]) for rc, out, _ in results if rc == 0]
    assert sorted(r["status"] for r in reports)[:1] == ["loaded"], results
    for rc, _, err in results:  # the loser reports "skipped" or finds the file gone
        assert rc == 0 or "FileNotFoundError" in err, err[-2000:]
    assert_ingested_once(clean_db, landing, N_POSTS)


def test_two_scoring_runs_at_once(clean_db, settings, champion):
    children = [run_child(spec_for(settings, "score", version=champion, run_id=f"s{i}"),
                          wait=False) for i in (1, 2)]  # fmt: skip
    for child in children:
        assert child.wait(timeout=300) == 0, child.stderr.read()[-2000:]
    assert_scored_once(clean_db, champion)
