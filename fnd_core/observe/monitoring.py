"""Read-side queries behind fnd's monitoring pages: data quality, models, scores, failures.

All the SQL of the Airflow plugin (and of the failure alerts) lives here, so route handlers
stay free of it and each query is tested against Postgres. Every query is bounded: lists are
paginated with a capped ``limit``, and anything computed over many rows (daily volume, fake
share, p_fake histograms) is aggregated in SQL. The scores queries walk posts newest first
through the index on ``coalesce(created_at, ingested_at)`` (``sql/005``) and probe
``fnd.predictions`` by its primary key, so their cost follows the window asked for, not the
size of the tables.

Results are plain dicts of JSON-ready values (floats, ints, strings, datetimes), ready for a
template or a JSON response.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

MAX_LIMIT = 500  # the most rows one page may ask for
MAX_DAYS = 92  # the longest daily window (a quarter): its cost grows with the posts in it
MAX_RECENT_POSTS = 100_000  # the most recent posts a histogram comparison may look at
MAX_BINS = 100


@dataclass(frozen=True)
class Page:
    """One page of a longer list: its rows, the total matching, and where it starts."""

    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int

    @property
    def has_next(self) -> bool:
        return self.offset + len(self.items) < self.total

    def to_json(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
        }


def check_page(limit: int, offset: int) -> tuple[int, int]:
    """A valid (limit, offset): limit within 1..MAX_LIMIT, offset not negative."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise ValueError(f"offset must not be negative, got {offset}")
    return limit, offset


def _rows(conn: Connection, sql: str, **params: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in conn.execute(sa.text(sql), params)]


# Data quality ---------------------------------------------------------------------------

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
    b.error as batch_error,
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
select batch_id, rule, count(*) as n_rows, min(reason) as example_reason
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
        items = _rows(conn, _VALIDATION_PAGE, limit=limit, offset=offset, **params)
        batch_ids = sorted({i["batch_id"] for i in items if i["batch_id"] is not None})
        rules = _rows(conn, _RULES_OF_BATCHES, batch_ids=batch_ids) if batch_ids else []
    by_batch: dict[int, list[dict[str, Any]]] = {}
    for r in rules:
        by_batch.setdefault(r.pop("batch_id"), []).append(r)
    for item in items:
        item["quarantine_rules"] = by_batch.get(item["batch_id"], [])
    return Page(items, total, limit, offset)


def ingest_batch(engine: Engine, batch_id: int) -> dict[str, Any] | None:
    """One ingest batch (a landed file) with its counts and outcome; None if unknown."""
    with engine.connect() as conn:
        rows = _rows(
            conn,
            "select batch_id, source_uri, content_sha256, format, status, n_received, "
            "n_accepted, n_quarantined, n_duplicate, error, archived_uri, started_at, "
            "finished_at, run_id from fnd.ingest_batches where batch_id = :b",
            b=batch_id,
        )
    return rows[0] if rows else None


def quarantine_rules(engine: Engine, batch_id: int) -> list[dict[str, Any]]:
    """The rules a batch's rows broke: ``[{rule, n_rows, example_reason}]``, most first."""
    with engine.connect() as conn:
        rows = _rows(conn, _RULES_OF_BATCHES, batch_ids=[batch_id])
    for r in rows:
        del r["batch_id"]
    return rows


def quarantined_rows(
    engine: Engine, batch_id: int, *, rule: str | None = None, limit: int = 50, offset: int = 0
) -> Page:
    """A batch's quarantined rows verbatim, in file order, optionally of one rule only."""
    limit, offset = check_page(limit, offset)
    where = "where batch_id = :b and (cast(:rule as text) is null or rule = :rule)"
    params = {"b": batch_id, "rule": rule}
    with engine.connect() as conn:
        total = conn.execute(
            sa.text(f"select count(*) from fnd.quarantine {where}"), params
        ).scalar_one()
        items = _rows(
            conn,
            "select row_number, post_id, rule, reason, raw, quarantined_at "
            f"from fnd.quarantine {where} order by row_number limit :limit offset :offset",
            limit=limit,
            offset=offset,
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


# Models ---------------------------------------------------------------------------------

_LEADERBOARD = """
select
    version,
    status,
    created_at,
    preset,
    data_window_start,
    data_window_end,
    n_train_rows,
    n_val_rows,
    n_test_rows,
    (metrics -> 'test' ->> 'accuracy')::float8 as test_accuracy,
    (metrics -> 'test' ->> 'precision')::float8 as test_precision,
    (metrics -> 'test' ->> 'recall')::float8 as test_recall,
    (metrics -> 'test' ->> 'f1')::float8 as test_f1,
    (metrics -> 'test' ->> 'roc_auc')::float8 as test_roc_auc,
    metrics -> 'test' -> 'confusion_matrix' as test_confusion,
    (metrics -> 'val' ->> 'accuracy')::float8 as val_accuracy,
    (metrics -> 'val' ->> 'threshold')::float8 as threshold,
    gate ->> 'decision' as gate_decision,
    gate ->> 'reason' as gate_reason,
    coalesce(forced_by, gate ->> 'forced_by') as forced_by,
    gate -> 'evaluation' -> 'champion' ->> 'version' as compared_with,
    gate -> 'checks' as gate_checks,
    coalesce(gate ->> 'metric', metrics -> 'cv' ->> 'metric') as gate_metric,
    coalesce((gate ->> 'estimate')::float8, (metrics -> 'cv' ->> 'estimate')::float8)
        as gate_estimate,
    (metrics -> 'cv' ->> 'fold_std')::float8 as gate_estimate_fold_std,
    metrics -> 'cv' ->> 'n_folds' as cv_folds,
    metrics -> 'cv' ->> 'n_repeats' as cv_repeats,
    (metrics -> 'baselines' -> 'text_lr' ->> 'estimate')::float8 as baseline_text_lr,
    (metrics -> 'baselines' -> 'prior' ->> 'estimate')::float8 as baseline_prior,
    (metrics -> 'champion_recipe' -> 'cv' ->> 'estimate')::float8 as champion_recipe_estimate,
    metrics -> 'leak' as leak,
    gate ->> 'floor_set_by' as floor_set_by,
    promoted_at,
    retired_at,
    artifact_uri,
    artifact_sha256,
    training_run_id
from fnd.model_versions
where (cast(:run_id as text) is null or training_run_id = :run_id)
  and (cast(:version as text) is null or version = :version)
order by created_at desc, version desc
limit :limit offset :offset
"""


def model_leaderboard(
    engine: Engine,
    *,
    run_id: str | None = None,
    version: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page:
    """Every model version, newest first: test metrics, gate decision and reason, artifact.

    Args:
        run_id: only versions trained by this Airflow run.
        version: only this version.
    """
    limit, offset = check_page(limit, offset)
    params = {"run_id": run_id, "version": version}
    with engine.connect() as conn:
        total = conn.execute(
            sa.text(
                "select count(*) from fnd.model_versions "
                "where (cast(:run_id as text) is null or training_run_id = :run_id) "
                "and (cast(:version as text) is null or version = :version)"
            ),
            params,
        ).scalar_one()
        items = _rows(conn, _LEADERBOARD, limit=limit, offset=offset, **params)
    return Page(items, total, limit, offset)


def model_artifact(engine: Engine, version: str) -> tuple[str, str] | None:
    """(artifact_uri, artifact_sha256) of a version; None if unknown or without artifact."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "select artifact_uri, artifact_sha256 from fnd.model_versions "
                "where version = :v and artifact_uri is not null and artifact_sha256 is not null"
            ),
            {"v": version},
        ).one_or_none()
    return None if row is None else (row[0], row[1])


# Scores ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Champions:
    """The current champion and the one it replaced (None before the first / second)."""

    champion: str | None
    previous: str | None


def champions(engine: Engine) -> Champions:
    """The champion, and the most recently retired version (the previous champion)."""
    with engine.connect() as conn:
        return _champions(conn)


def _champions(conn: Connection) -> Champions:
    champion = conn.execute(
        sa.text("select version from fnd.model_versions where status = 'champion'")
    ).scalar_one_or_none()
    previous = conn.execute(
        sa.text(
            "select version from fnd.model_versions where status = 'retired' "
            "order by retired_at desc nulls last, created_at desc limit 1"
        )
    ).scalar_one_or_none()
    return Champions(champion, previous)


# Days are UTC calendar days of coalesce(created_at, ingested_at) (publication time, else
# ingestion time), as in the view fnd.daily_summary. The window's first instant is computed
# first, so the planner sees a constant and estimates the window's size from statistics.
_LAST_POST = "select max(coalesce(created_at, ingested_at)) from fnd.posts"
_DAILY = """
with recent as (
    select p.post_id, (coalesce(p.created_at, p.ingested_at) at time zone 'UTC')::date as day
    from fnd.posts p
    where coalesce(p.created_at, p.ingested_at) >= :since
),
per_day as (
    select
        r.day,
        count(*) as n_posts,
        count(pr.post_id) as n_scored,
        count(*) filter (where pr.label = 'fake') as n_fake
    from recent r
    left join fnd.predictions pr
        on pr.post_id = r.post_id and pr.model_version = :champion
    group by r.day
)
select
    d.day::date as day,
    coalesce(per_day.n_posts, 0) as n_posts,
    coalesce(per_day.n_scored, 0) as n_scored,
    coalesce(per_day.n_fake, 0) as n_fake,
    per_day.n_fake::float8 / nullif(per_day.n_scored, 0) as fake_share
from generate_series(cast(:first_day as date), cast(:last_day as date), interval '1 day') as d (day)
left join per_day on per_day.day = d.day::date
order by d.day
"""


def _interactive(conn: Connection, *, probes: bool = False) -> None:
    """Tune this read transaction for a page: no JIT, and (``probes``) join by index probes.

    JIT compilation costs 0.1-1 s, more than these queries take. A window's posts are joined
    to their predictions by primary-key probes, whose cost grows with the window only; left
    to itself the planner often hash-joins the whole predictions table instead, whose cost
    grows with every post and every model version (measured: 2-3x slower at 1M predictions).
    """
    conn.exec_driver_sql("set local jit = off")
    if probes:
        conn.exec_driver_sql("set local enable_hashjoin = off")
        conn.exec_driver_sql("set local enable_mergejoin = off")


def daily_volume(engine: Engine, *, days: int = 30, champion: str | None = None) -> dict:
    """Posts per day and the champion's fake share, for the ``days`` up to the newest post.

    The window ends on the newest post's day, so a quiet week still shows the last days that
    had posts. Cost: about one primary-key probe per post in the window.

    Args:
        days: window length in days (1..MAX_DAYS).
        champion: the model whose verdicts count; default the current champion.

    Returns:
        ``{"champion": version or None, "days": [{day, n_posts, n_scored, n_fake,
        fake_share}]}``, one entry per calendar day (days without posts show zeros);
        ``fake_share`` is None on days with nothing scored.
    """
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, got {days}")
    with engine.connect() as conn:
        _interactive(conn, probes=True)
        champion = champion or _champions(conn).champion
        last = conn.execute(sa.text(_LAST_POST)).scalar_one()
        if last is None:
            return {"champion": champion, "days": []}
        last_day = last.astimezone(UTC).date()
        first_day = last_day - timedelta(days=days - 1)
        since = datetime.combine(first_day, time.min, tzinfo=UTC)
        rows = _rows(
            conn,
            _DAILY,
            since=since,
            first_day=first_day,
            last_day=last_day,
            champion=champion,
        )
    return {"champion": champion, "days": rows}


# The newest `window` posts (index order), the champion's and the previous champion's verdicts
# on them (primary-key probes), the first `n` posts both scored: one sample, two histograms.
_COMPARISON = """
with recent as (
    select post_id, coalesce(created_at, ingested_at) as at
    from fnd.posts
    order by coalesce(created_at, ingested_at) desc
    limit :window
),
pairs as materialized (
    select c.p_fake as champion_p, c.label as champion_label,
           prev.p_fake as previous_p, prev.label as previous_label
    from recent r
    join fnd.predictions c on c.post_id = r.post_id and c.model_version = :champion
    left join fnd.predictions prev
        on prev.post_id = r.post_id and prev.model_version = :previous
    where cast(:previous as text) is null or prev.post_id is not null
    order by r.at desc, r.post_id desc
    limit :n
),
summary as (
    select
        count(*) as n_posts,
        avg(champion_p) as champion_mean,
        avg(previous_p) as previous_mean,
        avg((champion_label = 'fake')::int) as champion_fake_share,
        avg((previous_label = 'fake')::int) as previous_fake_share,
        avg((champion_label = previous_label)::int) as agreement
    from pairs
),
bins as (
    select 'champion' as model, least(width_bucket(champion_p, 0, 1, :bins), :bins) as bin,
           count(*) as n
    from pairs group by 2
    union all
    select 'previous', least(width_bucket(previous_p, 0, 1, :bins), :bins), count(*)
    from pairs where previous_p is not null group by 2
)
select
    (select row_to_json(summary) from summary) as summary,
    (select coalesce(json_agg(json_build_object('model', model, 'bin', bin, 'n', n)), '[]')
     from bins) as bins
"""


def score_comparison(
    engine: Engine, *, n_posts: int = 5000, window: int = 20_000, bins: int = 20
) -> dict[str, Any]:
    """The champion's p_fake histogram next to the previous champion's, on the same posts.

    The sample is the newest posts (by publication, else ingestion time) that both models
    scored: the first ``n_posts`` of the newest ``window`` posts. Without a previous
    champion, only the champion's histogram is filled.

    Returns:
        ``{"champion", "previous", "n_posts", "bins": [{lo, hi, champion, previous}],
        "champion_mean", "previous_mean", "champion_fake_share", "previous_fake_share",
        "agreement"}`` (agreement: share of posts both label alike).
    """
    if not 1 <= bins <= MAX_BINS:
        raise ValueError(f"bins must be between 1 and {MAX_BINS}, got {bins}")
    if not 1 <= n_posts <= window <= MAX_RECENT_POSTS:
        raise ValueError(
            f"need 1 <= n_posts <= window <= {MAX_RECENT_POSTS}, got {n_posts} and {window}"
        )
    with engine.connect() as conn:
        _interactive(conn, probes=True)
        versions = _champions(conn)
        result = {
            "champion": versions.champion,
            "previous": versions.previous,
            "n_posts": 0,
            "bins": _empty_bins(bins),
        }
        if versions.champion is None:
            return result
        summary, counts = conn.execute(
            sa.text(_COMPARISON),
            {
                "champion": versions.champion,
                "previous": versions.previous,
                "window": window,
                "n": n_posts,
                "bins": bins,
            },
        ).one()
    for row in counts:
        result["bins"][row["bin"] - 1][row["model"]] = row["n"]
    return {**result, **summary}


def _empty_bins(bins: int) -> list[dict[str, Any]]:
    return [
        {"lo": round(i / bins, 6), "hi": round((i + 1) / bins, 6), "champion": 0, "previous": 0}
        for i in range(bins)
    ]


_FLAGGED = """
select
    p.post_id,
    p.text,
    p.image_sha256,
    p.created_at,
    p.ingested_at,
    p.label as true_label,
    pr.p_fake,
    pr.threshold,
    pr.scored_at
from fnd.posts p
join fnd.predictions pr
    on pr.post_id = p.post_id and pr.model_version = :champion and pr.label = 'fake'
order by coalesce(p.created_at, p.ingested_at) desc, p.post_id desc
limit :limit offset :offset
"""


def drift_reports(engine: Engine, *, limit: int = 30) -> list[dict[str, Any]]:
    """The newest drift reports (``fnd.drift_summary``), oldest first, for a time series."""
    with engine.connect() as conn:
        rows = _rows(
            conn,
            "select * from (select report_id, computed_at, kind, subject, model_version, "
            "n_posts, flagged, image_auc, text_auc, image_auc_bar, text_auc_bar, "
            "predicted_fake_share, "
            "train_fake_share, unseen_image_share, undecided_share, reasons "
            "from fnd.drift_summary order by report_id desc limit :limit) newest "
            "order by report_id",
            limit=limit,
        )
    return rows


def latest_flagged_fake(
    engine: Engine, *, limit: int = 20, offset: int = 0, champion: str | None = None
) -> dict[str, Any]:
    """The newest posts the champion flags fake, with their text and image hash.

    No total is counted (it would read every prediction); ``has_more`` says whether a next
    page exists.
    """
    limit, offset = check_page(limit, offset)
    with engine.connect() as conn:
        _interactive(conn, probes=True)
        champion = champion or _champions(conn).champion
        items = []
        if champion is not None:
            items = _rows(conn, _FLAGGED, champion=champion, limit=limit + 1, offset=offset)
    return {
        "champion": champion,
        "items": items[:limit],
        "limit": limit,
        "offset": offset,
        "has_more": len(items) > limit,
    }


def image_uri(engine: Engine, image_sha256: str) -> str | None:
    """Where the image store keeps the image with this content hash; None if no post has it."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text("select image_uri from fnd.posts where image_sha256 = :s limit 1"),
            {"s": image_sha256},
        ).scalar_one_or_none()


# Failures -------------------------------------------------------------------------------


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
        batches = _rows(
            conn,
            "select batch_id, source_uri, status, error, n_received, n_accepted, "
            "n_quarantined, n_duplicate, archived_uri from fnd.ingest_batches "
            "where run_id = :run and (cast(:uri as text) is null or source_uri = :uri) "
            "order by batch_id desc limit 20",
            run=run_id,
            uri=source_uri,
        )
        ids = [b["batch_id"] for b in batches]
        rules = _rows(conn, _RULES_OF_BATCHES, batch_ids=ids) if ids else []
        validations = _rows(
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
        models = _rows(
            conn,
            "select version, status, gate ->> 'decision' as gate_decision, "
            "gate ->> 'reason' as gate_reason, coalesce(forced_by, gate ->> 'forced_by') "
            "as forced_by, (metrics -> 'test' ->> 'accuracy')::float8 as test_accuracy "
            "from fnd.model_versions where training_run_id = :run order by created_at desc",
            run=run_id,
        )
    for batch in batches:
        batch["quarantine_rules"] = [
            {"rule": r["rule"], "n_rows": r["n_rows"], "example_reason": r["example_reason"]}
            for r in rules
            if r["batch_id"] == batch["batch_id"]
        ]
    return RunRecords(batches, validations, models)


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
