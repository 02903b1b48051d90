"""What every training DAG shares before and around its fitting: the gate's form fields, the
snapshot and its validation, and the training lease (at most one retraining or sweep at once).

``fnd_retrain`` and ``fnd_sweep`` both start here; :mod:`fnd_airflow.gate_tasks` is where they
end. The lease (:mod:`fnd_core.pipeline.training_lease`) is a setup task that waits for it and
a teardown task that gives it back however the run ends; each fitting step renews it first
(:func:`hold_training_lease`), so a run whose lease expired and was taken over stops instead of
training beside the new holder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Param, get_current_context, task

from fnd_airflow.dag_support import fnd_engine, fnd_settings
from fnd_core import contracts

if TYPE_CHECKING:
    from airflow.sdk import PokeReturnValue

LEASE_POKE_SECONDS = 60


def gate_params(figure: str) -> dict[str, Param]:
    """The form's audited gate overrides (``gate_tasks._policy`` reads them)."""
    return {
        "min_accuracy": Param(
            None,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            title=f"Gate: floor on {figure}",
            description="Empty: FND_GATE_MIN_ACCURACY. A value set here is audited.",
        ),
        "force_promote": Param(
            False,
            type="boolean",
            title="Force promotion",
            description="Promote even if the gate rejects. Audited: your user name is recorded.",
        ),
    }


def lease_holder() -> str:
    """This DAG run's name in ``fnd.training_lease``."""
    context = get_current_context()
    return f"{context['dag'].dag_id}/{context['run_id']}"


def hold_training_lease() -> None:
    """Renew this run's lease before a fitting step; fail the task (no retry) when it was lost."""
    from airflow.sdk.exceptions import AirflowFailException

    from fnd_core.pipeline import training_lease

    try:
        training_lease.renew(fnd_engine(), lease_holder(), fnd_settings().training_lease_ttl)
    except training_lease.LeaseLostError as exc:
        raise AirflowFailException(str(exc)) from exc


def claim_training_lease() -> Any:
    """The setup task: wait (rescheduled, not holding a worker slot) until this run holds the
    lease, at most FND_TRAINING_LEASE_WAIT_HOURS; each wait logs who holds it."""

    wait = fnd_settings().training_lease_wait.total_seconds()

    @task.sensor(
        task_id=contracts.CLAIM_LEASE_TASK,
        poke_interval=min(LEASE_POKE_SECONDS, max(1.0, wait / 4)),
        timeout=wait,
        mode="reschedule",
        retries=0,
    )
    def claim_lease() -> PokeReturnValue:
        import logging

        from airflow.sdk import PokeReturnValue

        from fnd_core.pipeline import training_lease

        engine, holder = fnd_engine(), lease_holder()
        lease = training_lease.try_claim(engine, holder, fnd_settings().training_lease_ttl)
        log = logging.getLogger("fnd")
        if lease is None:
            held = training_lease.current(engine)
            log.info("waiting for the training lease: %s", held.describe() if held else "free")
            return PokeReturnValue(is_done=False)
        if lease.taken_over_from:
            log.warning("took the training lease over from %s, whose lease had expired",
                        lease.taken_over_from)  # fmt: skip
        log.info("training lease: %s", lease.describe())
        return PokeReturnValue(is_done=True, xcom_value={"holder": lease.holder,
                               "taken_over_from": lease.taken_over_from})  # fmt: skip

    return claim_lease()


def release_training_lease(claimed: Any, after: list[Any]) -> None:
    """The teardown: give the lease back once ``after`` (the run's last tasks) are done,
    whether they succeeded or not; it runs whenever ``claimed`` succeeded."""

    @task(task_id=contracts.RELEASE_LEASE_TASK, retries=2)
    def release_lease() -> bool:
        from fnd_core.pipeline import training_lease

        return training_lease.release(fnd_engine(), lease_holder())

    after >> release_lease().as_teardown(setups=claimed)


def snapshot_tasks() -> tuple[Any, Any]:
    """snapshot → validate_snapshot; the snapshot's XComArg and the validation's. No labelled
    posts yet: the run is skipped, not failed."""

    @task
    def snapshot() -> dict:
        """Freeze the labelled posts; skip the whole run (not fail) when there are none yet."""
        from airflow.sdk.exceptions import AirflowSkipException

        from fnd_core.pipeline import retrain

        snap = retrain.snapshot(fnd_engine(), fnd_settings().train_max_posts)
        if snap["n_labelled"] == 0:
            raise AirflowSkipException(retrain.NO_LABELLED_POSTS)
        return snap

    @task(task_id=contracts.VALIDATE_SNAPSHOT_TASK, retries=0)
    def validate_snapshot(snap: Any) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from fnd_core.pipeline import retrain

        try:
            return retrain.validate_snapshot(
                fnd_engine(), fnd_settings(), snap, run_id=get_current_context()["run_id"]
            )
        except retrain.SnapshotInvalidError as exc:
            raise AirflowFailException(str(exc)) from exc

    snap = snapshot()
    return snap, validate_snapshot(snap)
