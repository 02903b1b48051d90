"""
### fnd_landing_watch — start fnd_ingest when files land in a `gs://` landing zone

Runs continuously (one run at a time) when `FND_LANDING_DIR` is a `gs://` prefix:

1. **wait_for_landing_files**: the provider's `GCSObjectExistenceSensor` in **deferrable**
   mode: the waiting happens in the triggerer (an async listing every
   `FND_LANDING_POKE_SECONDS`), not in a worker slot. It matches what ingest takes: objects
   directly under the prefix whose name does not start with a dot (`archive/`, `failed/` and
   `images/` are not looked into);
2. **start_ingest**: triggers `fnd_ingest` on the landing zone and, deferred as well, waits for
   that run to end (so the same files never start a second run); then the next watch begins.

Credentials: the Airflow connection `FND_GCP_CONN_ID` (default `google_cloud_default`), the
same one `fnd_ingest` reads the files with. `fnd_ingest` keeps its cron (`FND_INGEST_SCHEDULE`)
as the backstop. With a local landing zone this DAG has no schedule and does nothing.

**Params**: `wait_for_ingest` (default on; off for a one-off manual run that only starts
ingest).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, chain, dag, task

from fnd_airflow.dag_support import COMMON_DAG_KWARGS, fnd_settings
from fnd_airflow.gcp import landing_location
from fnd_core import contracts

SETTINGS = fnd_settings()
WATCHED = landing_location(SETTINGS.landing)  # (bucket, glob), or None for a local zone
WATCH_TIMEOUT = timedelta(days=7)  # a quiet week ends the run (skipped); the next one starts


@dag(
    dag_id=contracts.LANDING_WATCH_DAG,
    schedule="@continuous" if WATCHED else None,
    doc_md=__doc__,
    tags=["fnd", "ingest", "gcp"],
    max_active_runs=1,
    render_template_as_native_obj=True,  # wait_for_ingest reaches the operator as a bool
    params={
        "wait_for_ingest": Param(
            True,
            type="boolean",
            title="Wait for the ingest run",
            description="Wait (deferred) until the triggered fnd_ingest run ends.",
        ),
    },
    **COMMON_DAG_KWARGS,
)
def fnd_landing_watch():
    if WATCHED is None:

        @task
        def nothing_to_watch() -> None:
            """A local landing zone: fnd_ingest's cron picks files up."""
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"landing zone {SETTINGS.landing} is not on gs://")

        nothing_to_watch()
        return

    # Imported only for a gs:// landing zone: the provider's GCS modules are not light.
    from airflow.providers.google.cloud.sensors.gcs import GCSObjectExistenceSensor

    bucket, glob = WATCHED
    wait = GCSObjectExistenceSensor(
        task_id="wait_for_landing_files",
        bucket=bucket,
        object=glob,
        use_glob=True,
        deferrable=True,
        google_cloud_conn_id=SETTINGS.gcp_conn_id,
        poke_interval=SETTINGS.landing_poke_seconds,
        timeout=WATCH_TIMEOUT.total_seconds(),
        soft_fail=True,
        execution_timeout=None,
    )
    start = TriggerDagRunOperator(
        task_id="start_ingest",
        trigger_dag_id=contracts.INGEST_DAG,
        conf={"path": SETTINGS.landing, "reason": "files landed (fnd_landing_watch)"},
        wait_for_completion="{{ params.wait_for_ingest }}",
        deferrable=True,
        poke_interval=max(10, int(SETTINGS.landing_poke_seconds)),
        allowed_states=["success", "failed"],  # a failed file is ingest's to report
        failed_states=[],
        execution_timeout=None,
    )
    chain(wait, start)


fnd_landing_watch()
