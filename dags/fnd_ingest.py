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

Fact-checkers' label files (CSV or JSONL: `post_id`, `label`, optional `source`, `labelled_at`)
land in `labels/` under the landing zone and are ingested by the same task (GX suite `labels`,
bad rows quarantined). After labels land, the champion's realized performance
(`fnd.realized_performance`) is checked: a week whose realized balanced accuracy falls below the
gate's estimate alerts and updates `fnd://drift` (retraining follows under
FND_DRIFT_TRIGGERS_RETRAIN).

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
    DRIFT_ASSET_URI,
    POSTS_ASSET_URI,
    fnd_alert,
    fnd_engine,
    fnd_settings,
)
from fnd_core import contracts

POSTS = Asset(POSTS_ASSET_URI)
DRIFT = Asset(DRIFT_ASSET_URI)


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
        """List the data files waiting in the landing zone (or the given path inside it), then
        the label files in its labels/ folder."""
        from airflow.sdk.exceptions import AirflowFailException

        from fnd_core.ingest.load import PathNotAllowedError, allowed_landing_path, waiting_files

        params = get_current_context()["params"]
        settings = fnd_settings()
        try:
            path = allowed_landing_path(params.get("path") or settings.landing, settings)
        except PathNotAllowedError as exc:
            raise AirflowFailException(str(exc)) from exc
        from fnd_core.io.storage import portable

        files = [portable(uri) for uri in waiting_files(path, settings)]  # XCom-safe names
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
        added = sum(r["n_accepted"] for r in done if r.get("kind", "posts") == "posts")
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

    @task(trigger_rule=TriggerRule.ALL_DONE)  # the good files' labels, whatever the bad ones did
    def check_realized_performance(reports: list[dict | None]) -> list[dict]:
        """After labels land: the champion's realized balanced accuracy per week against its
        gate's estimate (fnd.realized_performance); each week that falls short alerts once."""
        from fnd_core.observe.performance import check_realized

        if not any(r and r.get("kind") == "labels" and r["n_accepted"] for r in reports):
            return []
        context = get_current_context()
        alerts = check_realized(fnd_engine(), fnd_settings(), run_id=context["run_id"])
        for alert in alerts:
            fnd_alert(context, alert.title, alert.lines)
        print(f"{len(alerts)} realized-performance alert(s)")
        return [a.to_json() for a in alerts]

    @task(outlets=[DRIFT])
    def request_retrain_on_labels(alerts: list[dict]) -> str:
        """Update fnd://drift when the labels showed the champion doing worse than its gate
        said (fnd_retrain follows when FND_DRIFT_TRIGGERS_RETRAIN is set); skipped otherwise."""
        from airflow.sdk.exceptions import AirflowSkipException

        if not alerts:
            raise AirflowSkipException("no realized-performance alert")
        return "; ".join(a["title"] for a in alerts)

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
    request_retrain_on_labels(check_realized_performance(reports))
    check_nothing_set_aside(files, reports)


fnd_ingest()
