"""At most one retraining or sweep at a time: the lease row against Postgres, the CLI's
refusal, and the whole-run paths holding it."""

from __future__ import annotations

import os
import socket
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from fnd_core.pipeline import retrain, training_lease
from fnd_core.pipeline.training_lease import LeaseHeldError, LeaseLostError
from fnd_core.settings import Settings
from tests.helpers import run_fnd

HOUR = timedelta(hours=1)


def expire(engine, holder: str) -> None:
    """What the passing of FND_TRAINING_LEASE_HOURS does to a holder that stopped renewing."""
    with engine.begin() as conn:
        conn.execute(sa.text("update fnd.training_lease set expires_at = now() - interval '1 s'"
                             " where holder = :h"), {"h": holder})  # fmt: skip


def test_one_holder_at_a_time_and_a_second_claim_says_who_holds_it(clean_db):
    first = training_lease.claim(clean_db, "fnd_retrain/nightly", HOUR)
    assert first.holder == "fnd_retrain/nightly" and first.taken_over_from is None
    assert training_lease.try_claim(clean_db, "fnd_sweep/manual", HOUR) is None
    with pytest.raises(LeaseHeldError, match=r"holds the training lease: fnd_retrain/nightly "):
        training_lease.claim(clean_db, "fnd_sweep/manual", HOUR)
    # the holder claiming again (a retried task) keeps its lease and when it took it
    again = training_lease.claim(clean_db, "fnd_retrain/nightly", HOUR)
    assert again.acquired_at == first.acquired_at and again.expires_at >= first.expires_at
    # a release by another holder changes nothing; the holder's frees it for the next run
    assert not training_lease.release(clean_db, "fnd_sweep/manual")
    assert training_lease.current(clean_db).holder == "fnd_retrain/nightly"
    assert training_lease.release(clean_db, "fnd_retrain/nightly")
    assert training_lease.current(clean_db) is None
    assert training_lease.claim(clean_db, "fnd_sweep/manual", HOUR).holder == "fnd_sweep/manual"


def test_a_dead_holders_lease_is_taken_over_once_expired_and_its_steps_stop(clean_db):
    training_lease.claim(clean_db, "fnd_sweep/killed", HOUR)
    assert training_lease.try_claim(clean_db, "fnd_retrain/next", HOUR) is None  # still live
    expire(clean_db, "fnd_sweep/killed")
    taken = training_lease.claim(clean_db, "fnd_retrain/next", HOUR)
    assert taken.holder == "fnd_retrain/next" and taken.taken_over_from == "fnd_sweep/killed"
    # the old run comes back to life (a worker that was only partitioned): it must not train on
    with pytest.raises(LeaseLostError, match=r"fnd_sweep/killed no longer holds .* fnd_retrain"):
        training_lease.renew(clean_db, "fnd_sweep/killed", HOUR)
    renewed = training_lease.renew(clean_db, "fnd_retrain/next", 2 * HOUR)
    assert renewed.expires_at > taken.expires_at and renewed.acquired_at == taken.acquired_at


def test_a_killed_cli_command_on_this_host_is_taken_over_at_once(clean_db):
    """`fnd train` killed with SIGKILL gives nothing back; the next command need not wait the
    lease out: its process is gone. A live process's lease, or another host's, is held."""
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = f"cli/train/{socket.gethostname()}/{gone.stdout.strip()}"
    training_lease.claim(clean_db, dead, HOUR)
    taken = training_lease.claim(clean_db, "cli/sweep/here/1", HOUR)
    assert taken.holder == "cli/sweep/here/1" and taken.taken_over_from == dead
    training_lease.release(clean_db, "cli/sweep/here/1")
    for alive in (f"cli/train/{socket.gethostname()}/{os.getpid()}", "cli/train/elsewhere/1"):
        training_lease.claim(clean_db, alive, HOUR)
        with pytest.raises(LeaseHeldError):
            training_lease.claim(clean_db, "cli/sweep/here/1", HOUR)
        training_lease.release(clean_db, alive)


def test_racing_claims_leave_exactly_one_holder(clean_db):
    barrier = threading.Barrier(8)
    won: list[str] = []

    def racer(i: int) -> None:
        barrier.wait()
        if training_lease.try_claim(clean_db, f"racer/{i}", HOUR) is not None:
            won.append(f"racer/{i}")

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and training_lease.current(clean_db).holder == won[0]


def test_held_gives_the_lease_back_when_the_block_fails(clean_db):
    with (
        pytest.raises(RuntimeError, match="fitting blew up"),
        training_lease.held(clean_db, "cli/train/host/1", HOUR),
    ):
        assert training_lease.current(clean_db).holder == "cli/train/host/1"
        raise RuntimeError("fitting blew up")
    assert training_lease.current(clean_db) is None


def test_whole_run_training_refuses_while_another_run_holds_the_lease(clean_db, db_url, tmp_path):
    settings = Settings(home=tmp_path, database_url=db_url)
    training_lease.claim(clean_db, "fnd_sweep/manual__2026", HOUR)
    with pytest.raises(LeaseHeldError, match="fnd_sweep/manual__2026"):
        retrain.run(clean_db, settings)
    assert training_lease.current(clean_db).holder == "fnd_sweep/manual__2026"  # untouched
    training_lease.release(clean_db, "fnd_sweep/manual__2026")
    # free: the run takes it (nothing labelled here, so nothing is trained) and gives it back
    assert retrain.run(clean_db, settings) == {"skipped": retrain.NO_LABELLED_POSTS}
    assert training_lease.current(clean_db) is None


def test_the_lease_settings_must_be_positive():
    with pytest.raises(ValueError, match="FND_TRAINING_LEASE_HOURS=0.0: must be"):
        _ = Settings(training_lease_hours=0.0).training_lease_ttl
    assert Settings().training_lease_wait == timedelta(hours=12)


def test_fnd_train_and_sweep_exit_75_naming_the_holder(clean_db, db_url: str, tmp_path: Path):
    env = {"FND_DATABASE_URL": db_url, "FND_HOME": str(tmp_path)}
    training_lease.claim(clean_db, "fnd_retrain/scheduled__2026-12-07", HOUR)
    for command in ("train", "sweep"):
        refused = run_fnd(command, env=env, check=False)
        assert refused.returncode == 75, refused.stderr
        assert "fnd_retrain/scheduled__2026-12-07" in refused.stderr
        assert "at most one retraining or model search" in refused.stderr
    assert training_lease.current(clean_db).holder == "fnd_retrain/scheduled__2026-12-07"
