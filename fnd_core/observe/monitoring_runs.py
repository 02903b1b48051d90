"""What fnd recorded for one Airflow run: the facts a failure alert is built from.

Split from :mod:`fnd_core.observe.monitoring` (what every page shares): no page shows this;
:mod:`fnd_core.observe.notify` reads it when a task fails. Batches are described as on the
data quality page (:func:`~fnd_core.observe.monitoring_quality.rules_of_batches`) and models
as on the leaderboard (the view ``fnd.model_leaderboard``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fnd_core.observe.monitoring import query_rows
from fnd_core.observe.monitoring_quality import rules_of_batches

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


@dataclass(frozen=True)
class RunRecords:
    """What fnd recorded for one Airflow run: the facts a failure alert is built from."""

    batches: list[dict[str, Any]] = field(default_factory=list)
    failed_validations: list[dict[str, Any]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)


def run_records(engine: Engine, run_id: str, *, source_uri: str | None = None) -> RunRecords:
    """The batches (with quarantine rules), failed validations and models of one run.

    Args:
        run_id: the Airflow run id written into fnd's tables.
        source_uri: only the batch of this landed file (a mapped ingest task's file).
    """
    with engine.connect() as conn:
        batches = query_rows(
            conn,
            "select batch_id, source_uri, status, error, n_received, n_accepted, "
            "n_quarantined, n_duplicate, archived_uri from fnd.ingest_batches "
            "where run_id = :run and (cast(:uri as text) is null or source_uri = :uri) "
            "order by batch_id desc limit 20",
            run=run_id,
            uri=source_uri,
        )
        ids = [b["batch_id"] for b in batches]
        rules = rules_of_batches(conn, ids)
        validations = query_rows(
            conn,
            "select suite, batch_id, batch_name, n_evaluated_rows, data_docs_uri, "
            "jsonb_path_query_array(results, '$[*] ? (@.success == false)') "
            "as failed_expectations from fnd.validation_runs "
            "where run_id = :run and not success "
            "and (cast(:uri as text) is null or batch_id = any(cast(:ids as bigint[]))) "
            "order by validation_id desc limit 20",
            run=run_id,
            uri=source_uri,
            ids=ids,
        )
        models = query_rows(
            conn,
            "select version, status, gate_decision, gate_reason, forced_by, "
            "test_accuracy::float8 as test_accuracy from fnd.model_leaderboard "
            "where training_run_id = :run order by created_at desc",
            run=run_id,
        )
    for batch in batches:
        batch["quarantine_rules"] = rules.get(batch["batch_id"], [])
    return RunRecords(batches, validations, models)
