"""The data quality page's queries: validation runs, ingest batches, their quarantined rows.

Split from :mod:`fnd_core.observe.monitoring` (what every page shares) so each page's SQL
reads on its own. The failure alerts reuse :func:`rules_of_batches` and
:func:`failed_expectation_names`: a failed batch is described there as it is here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from fnd_core.observe.monitoring import MAX_CELL_CHARS, Page, check_offset, check_page, query_rows

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

_VALIDATION_FILTER = """
from fnd.validation_runs v
where (cast(:run_id as text) is null or v.run_id = :run_id)
  and (cast(:suite as text) is null or v.suite = :suite)
  and (cast(:batch_id as bigint) is null or v.batch_id = :batch_id)
  and (cast(:success as boolean) is null or v.success = :success)
"""

_VALIDATION_PAGE = f"""
with page as (
    select v.*
    {_VALIDATION_FILTER}
    order by v.validated_at desc, v.validation_id desc
    limit :limit offset :offset
)
select
    page.validation_id,
    page.validated_at,
    page.suite,
    page.batch_id,
    page.batch_name,
    page.success,
    page.n_evaluated_rows,
    (page.statistics ->> 'evaluated_expectations')::int as n_expectations,
    (page.statistics ->> 'unsuccessful_expectations')::int as n_failed_expectations,
    jsonb_path_query_array(page.results, '$[*] ? (@.success == false)') as failed_expectations,
    page.data_docs_uri,
    page.gx_version,
    page.run_id,
    b.source_uri,
    b.status as batch_status,
    left(b.error, :cell) as batch_error,
    b.n_received,
    b.n_accepted,
    b.n_quarantined,
    b.n_duplicate,
    b.archived_uri
from page
left join fnd.ingest_batches b on b.batch_id = page.batch_id
order by page.validated_at desc, page.validation_id desc
"""

_RULES_OF_BATCHES = """
select batch_id, rule, count(*) as n_rows, left(min(reason), :cell) as example_reason
from fnd.quarantine
where batch_id = any(cast(:batch_ids as bigint[]))
group by batch_id, rule
order by batch_id, n_rows desc, rule
"""


def validation_runs(
    engine: Engine,
    *,
    run_id: str | None = None,
    suite: str | None = None,
    batch_id: int | None = None,
    success: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """Validation runs, newest first, each with its batch, failed expectations and quarantine.

    Args:
        run_id: only runs of this Airflow run id (or ``cli``).
        suite: only this suite (``posts``, ``training_set``).
        batch_id: only the runs of this ingest batch.
        success: only successful (True) or failed (False) runs.

    Returns:
        A :class:`Page`; each item carries ``failed_expectations`` (the per-expectation
        results that failed, as stored) and ``quarantine_rules`` (``[{rule, n_rows,
        example_reason}]`` of its batch, most frequent first).
    """
    limit, offset = check_page(limit, offset)
    params = {"run_id": run_id, "suite": suite, "batch_id": batch_id, "success": success}
    with engine.connect() as conn:
        total = conn.execute(sa.text(f"select count(*) {_VALIDATION_FILTER}"), params).scalar_one()
        check_offset(offset, total)
        items = query_rows(
            conn, _VALIDATION_PAGE, limit=limit, offset=offset, cell=MAX_CELL_CHARS, **params
        )
        by_batch = rules_of_batches(conn, [i["batch_id"] for i in items])
    for item in items:
        item["quarantine_rules"] = by_batch.get(item["batch_id"], [])
    return Page(items, total, limit, offset)


def rules_of_batches(
    conn: Connection, batch_ids: Iterable[int | None]
) -> dict[int, list[dict[str, Any]]]:
    """Per batch, the rules its rows broke: ``{batch_id: [{rule, n_rows, example_reason}]}``,
    most frequent first; batches without quarantined rows are absent."""
    ids = sorted({b for b in batch_ids if b is not None})
    by_batch: dict[int, list[dict[str, Any]]] = {}
    for r in query_rows(conn, _RULES_OF_BATCHES, batch_ids=ids, cell=MAX_CELL_CHARS) if ids else []:
        by_batch.setdefault(r.pop("batch_id"), []).append(r)
    return by_batch


def ingest_batch(engine: Engine, batch_id: int) -> dict[str, Any] | None:
    """One ingest batch (a landed file) with its counts and outcome; None if unknown."""
    with engine.connect() as conn:
        rows = query_rows(
            conn,
            "select batch_id, source_uri, content_sha256, format, status, n_received, "
            "n_accepted, n_quarantined, n_duplicate, left(error, :cell) as error, archived_uri, "
            "started_at, finished_at, run_id from fnd.ingest_batches where batch_id = :b",
            b=batch_id,
            cell=MAX_CELL_CHARS,
        )
    return rows[0] if rows else None


def quarantine_rules(engine: Engine, batch_id: int) -> list[dict[str, Any]]:
    """The rules a batch's rows broke: ``[{rule, n_rows, example_reason}]``, most first."""
    with engine.connect() as conn:
        return rules_of_batches(conn, [batch_id]).get(batch_id, [])


def quarantined_rows(
    engine: Engine, batch_id: int, *, rule: str | None = None, limit: int = 50, offset: int = 0
) -> Page:
    """A batch's quarantined rows in file order, optionally of one rule only: each row's
    excerpt (cut to ``MAX_CELL_CHARS``), its length, sha256 and byte offset in the file."""
    limit, offset = check_page(limit, offset)
    where = "where batch_id = :b and (cast(:rule as text) is null or rule = :rule)"
    params = {"b": batch_id, "rule": rule}
    with engine.connect() as conn:
        total = conn.execute(
            sa.text(f"select count(*) from fnd.quarantine {where}"), params
        ).scalar_one()
        check_offset(offset, total)
        items = query_rows(
            conn,
            "select row_number, left(post_id, :cell) as post_id, rule, "
            "left(reason, :cell) as reason, left(raw, :cell) as raw, "
            "coalesce(raw_n_bytes, octet_length(raw)) as raw_n_bytes, raw_sha256, "
            "raw_byte_offset, quarantined_at "
            f"from fnd.quarantine {where} order by row_number limit :limit offset :offset",
            limit=limit,
            offset=offset,
            cell=MAX_CELL_CHARS,
            **params,
        )
    return Page(items, total, limit, offset)


def data_docs_relative_path(data_docs_uri: str | None, data_docs_dir: str | Path) -> str | None:
    """The path of a run's Data Docs page relative to the docs folder, for serving it.

    The worker that validated stores an absolute path; the API server may see the same docs
    folder under another path (another container), so a page outside ``data_docs_dir`` is
    located by GX's own layout (``validations/<suite>/...``). Returns None when neither fits.
    """
    if not data_docs_uri:
        return None
    path = data_docs_uri.removeprefix("file://")
    root = os.path.abspath(os.fspath(data_docs_dir))
    absolute = os.path.abspath(path)
    if absolute.startswith(root + os.sep):
        return Path(os.path.relpath(absolute, root)).as_posix()
    marker = "/validations/"
    if marker in path:
        return "validations/" + path.rsplit(marker, 1)[1]
    return None


def failed_expectation_names(failed: Iterable[dict[str, Any]]) -> list[str]:
    """``expect_x(column): 3 unexpected`` for each failed expectation result, for people."""
    names = []
    for r in failed:
        column = f"({r['column']})" if r.get("column") else ""
        detail = ""
        if r.get("unexpected_count") is not None:
            detail = f": {r['unexpected_count']} unexpected"
        elif r.get("observed_value") is not None:
            detail = f": observed {r['observed_value']}"
        names.append(f"{r.get('expectation_type', '?')}{column}{detail}")
    return names
