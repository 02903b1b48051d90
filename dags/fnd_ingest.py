"""
### fnd_ingest — landing zone → validated posts in Postgres

Every file that lands (JSONL, CSV, Parquet or Fakeddit TSV; local folder or `gs://`) is read,
checked row by row, validated with the Great Expectations suite `posts`, and loaded into
`fnd.posts` in one transaction. Bad rows go to `fnd.quarantine` with their reason; a file whose
quarantined share passes the threshold fails loudly and moves to `failed/`. Loaded files move
to `archive/`; the same bytes landing again are a no-op.

One mapped task per new file. When rows were added, the asset `fnd://posts` is updated, which
schedules `fnd_score`, and each loaded batch is compared with the champion's training data
(`fnd.drift_summary`; a flagged batch alerts).

Every entry found ends accounted for: loaded, skipped (same bytes as before), or set aside
into `failed/` with its reason in `fnd.ingest_batches` (a link, a FIFO, an unreadable file,
one whose reading failed for any reason). A set-aside file's task fails at once, without
retries; the good files' posts are still announced; and the last task, `check_nothing_set_aside`,
fails the run, so a run that set anything aside shows red.

**Params**: `path` (a folder or one file; empty = the landing zone), `fail_share`
(quarantined share above which a file fails; empty = `FND_QUARANTINE_FAIL_SHARE`).
"""

from __future__ import annotations

from airflow.sdk import Asset, Param, TriggerRule, chain, dag, get_current_context, task

from fnd_airflow.dag_support import (
    COMMON_DAG_KWARGS,
    POSTS_ASSET_URI,
    fnd_alert,
    fnd_engine,
    fnd_settings,
)
from fnd_core import contracts

POSTS = Asset(POSTS_ASSET_URI)


@dag(
    dag_id=contracts.INGEST_DAG,
    schedule=fnd_settings().ingest_schedule,
    doc_md=__doc__,
    tags=["fnd", "ingest"],
    max_active_runs=1,
    params={
        "path": Param(
            None,
            type=["null", "string"],
            title="Path",
            description="Folder or file inside the landing zone (or FND_LANDING_ROOTS) to "
            "ingest, local or gs://. Empty: the whole landing zone.",
        ),
        "fail_share": Param(
            None,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            title="Fail threshold",
            description="Quarantined share above which a file fails. Empty: the setting.",
        ),
    },
    **COMMON_DAG_KWARGS,
)
def fnd_ingest():
    @task
    def find_new_files() -> list[str]:
        """List the data files waiting in the landing zone (or the given path inside it)."""
        from airflow.sdk.exceptions import AirflowFailException

        from fnd_core.ingest.load import PathNotAllowedError, allowed_landing_path, list_new_files

        params = get_current_context()["params"]
        settings = fnd_settings()
        try:
            path = allowed_landing_path(params.get("path") or settings.landing, settings)
        except PathNotAllowedError as exc:
            raise AirflowFailException(str(exc)) from exc
        from fnd_core.io.storage import portable

        files = [portable(uri) for uri in list_new_files(path, settings)]  # XCom-safe names
        print(f"{len(files)} new file(s): {files}")
        return files

    @task(task_id=contracts.INGEST_FILE_TASK, map_index_template="{{ file_name }}")
    def ingest_file(uri: str) -> dict:
        """Read, check, validate and load one file; fails loudly if the file is rejected."""
        from airflow.sdk.exceptions import AirflowFailException

        from fnd_core.ingest.load import BatchRejectedError
        from fnd_core.ingest.load import ingest_file as ingest
        from fnd_core.io.storage import from_portable

        context = get_current_context()
        context["file_name"] = uri.rsplit("/", 1)[-1]  # shown as the map index in the UI
        try:
            report = ingest(
                fnd_engine(),
                from_portable(uri),
                fnd_settings(),
                run_id=context["run_id"],
                fail_share=context["params"].get("fail_share"),
            )
        except BatchRejectedError as exc:
            # Set aside (its content, its kind, or its reading failed): retrying cannot help.
            raise AirflowFailException(str(exc)) from exc
        return report.to_json()

    @task.short_circuit(trigger_rule=TriggerRule.ALL_DONE)
    def any_posts_added(reports: list[dict | None]) -> bool:
        """Sum up the run; only continue (and update the asset) when posts were added."""
        done = [r for r in reports if r]
        added = sum(r["n_accepted"] for r in done)
        print(f"{len(done)} file(s) loaded, {added} post(s) added")
        return added > 0

    @task(outlets=[POSTS])
    def announce_posts() -> None:
        """Mark the posts asset updated: fnd_score runs next."""

    @task(trigger_rule=TriggerRule.ALL_DONE)  # the good files' batches, whatever the bad ones did
    def check_batch_drift(reports: list[dict | None]) -> list[dict]:
        """Each loaded batch against the champion's training snapshot, stored in
        fnd.drift_reports (inputs only: it is not scored yet; the features it encodes are
        cached for scoring). A flagged batch is alerted on. No champion: nothing to compare."""
        from fnd_core.observe import drift

        engine, settings = fnd_engine(), fnd_settings()
        context = get_current_context()
        summaries = []
        for r in reports:
            if not r or r["status"] != "loaded" or not r["n_accepted"]:
                continue
            report = drift.measure(engine, settings, kind="batch", subject=str(r["batch_id"]))
            if report is None:
                continue
            drift.record(engine, report, context["run_id"])
            print(report.summary())
            if report.flagged:
                fnd_alert(context, f"fnd: drift in batch {r['batch_id']} ({r['uri']})",
                          report.reasons)  # fmt: skip
            summaries.append({"batch_id": r["batch_id"], "flagged": report.flagged})
        return summaries

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def check_nothing_set_aside(files: list[str], reports: list[dict | None]) -> None:
        """Fail the run when any file found was set aside (or never reported): the run shows
        red while the good files' posts are loaded and announced."""
        from airflow.sdk.exceptions import AirflowFailException

        from fnd_core.ingest.run_outcome import recorded_reasons, set_aside, summary_lines

        aside = set_aside(files, list(reports))
        if aside:
            known = recorded_reasons(fnd_engine(), get_current_context()["run_id"])
            lines = summary_lines({uri: known.get(uri, "") for uri in aside})
            raise AirflowFailException("\n".join(lines))
        print(f"{len(files)} file(s) found, every one loaded or skipped")

    files = find_new_files()
    reports = ingest_file.expand(uri=files)
    chain(any_posts_added(reports), [announce_posts(), check_batch_drift(reports)])
    check_nothing_set_aside(files, reports)


fnd_ingest()
