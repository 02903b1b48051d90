"""The models page's queries: the leaderboard, a version's artifact, the champions.

Split from :mod:`fnd_core.observe.monitoring` (what every page shares). The leaderboard is the
view ``fnd.model_leaderboard`` (``sql/003``, columns added by ``sql/006`` and ``sql/012``),
the one analysts query, read here rather than re-derived from ``fnd.model_versions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from fnd_core.observe.monitoring import Page, check_offset, check_page, query_rows

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

_LEADERBOARD_FILTER = """
from fnd.model_leaderboard
where (cast(:run_id as text) is null or training_run_id = :run_id)
  and (cast(:version as text) is null or version = :version)
"""

# The view's metrics are numeric (exact, for analysts); a page wants JSON-ready floats.
_LEADERBOARD_PAGE = f"""
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
    test_accuracy::float8 as test_accuracy,
    test_precision::float8 as test_precision,
    test_recall::float8 as test_recall,
    test_f1::float8 as test_f1,
    test_roc_auc::float8 as test_roc_auc,
    test_confusion,
    val_accuracy::float8 as val_accuracy,
    threshold::float8 as threshold,
    gate_decision,
    gate_reason,
    forced_by,
    compared_with,
    gate_checks,
    gate_metric,
    gate_estimate::float8 as gate_estimate,
    gate_estimate_fold_std::float8 as gate_estimate_fold_std,
    gate_counted_by,
    gate_estimate_by_post::float8 as gate_estimate_by_post,
    gate_estimate_by_story::float8 as gate_estimate_by_story,
    gate_interval_low::float8 as gate_interval_low,
    gate_interval_high::float8 as gate_interval_high,
    gate_split_policy,
    kind,
    n_topics,
    topic_source,
    class_support,
    selection,
    cv_folds,
    cv_repeats,
    baseline_text_lr::float8 as baseline_text_lr,
    baseline_prior::float8 as baseline_prior,
    champion_recipe_estimate::float8 as champion_recipe_estimate,
    leak,
    floor_set_by,
    promoted_at,
    retired_at,
    artifact_uri,
    artifact_sha256,
    training_run_id
{_LEADERBOARD_FILTER}
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
        total = conn.execute(sa.text(f"select count(*) {_LEADERBOARD_FILTER}"), params).scalar_one()
        check_offset(offset, total)
        items = query_rows(conn, _LEADERBOARD_PAGE, limit=limit, offset=offset, **params)
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


@dataclass(frozen=True)
class Champions:
    """The current champion and the one it replaced (None before the first / second)."""

    champion: str | None
    previous: str | None


def champions(engine: Engine) -> Champions:
    """The champion, and the most recently retired version (the previous champion)."""
    with engine.connect() as conn:
        return current_champions(conn)


def current_champions(conn: Connection) -> Champions:
    """:func:`champions` within a transaction the caller holds (one snapshot for a page)."""
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


_CALIBRATION = """
select least(width_bucket(pr.first_p_fake, 0, 1, 10), 10) as bin, count(*) as n,
       avg(pr.first_p_fake)::float8 as mean_p, avg(p.label)::float8 as fake_share
from fnd.predictions pr
join fnd.posts p on p.post_id = pr.post_id
where pr.model_version = :v and p.label is not null
  and not exists (select 1 from fnd.labels l
                  where l.post_id = pr.post_id and l.received_at <= pr.first_scored_at)
group by 1 order by 1
"""


def production_performance(engine: Engine, version: str) -> dict:
    """A version in production: its weeks (``fnd.realized_performance``: realized beside the
    label-free estimate) and its calibration bins (first verdicts against the labels that
    came after them; hindsight excluded, as in the view)."""
    from fnd_core.observe.performance import realized

    with engine.connect() as conn:
        bins = [dict(r) for r in conn.execute(sa.text(_CALIBRATION), {"v": version}).mappings()]
    return {"weeks": realized(engine, model_version=version), "calibration": bins}


_SWEEPS = """
select sweep_id, run_id, started_at, finished_at, status, budget, n_candidates, winner,
       selection, version, space_sha256
from fnd.sweeps order by started_at desc, sweep_id desc limit :limit
"""
_SWEEP_CANDIDATES = """
select sweep_id, candidate, config, status, estimate, estimate_spread, estimate_by_story,
       interval_low, interval_high, recall_real, recall_fake, error, seconds
from fnd.sweep_candidates where sweep_id = any(:ids)
order by sweep_id, estimate desc nulls last, candidate
"""


def sweeps(engine: Engine, *, limit: int = 3) -> list[dict]:
    """The newest model searches, each with its candidates best first and the parameters it
    varied (what the page plots the estimate against)."""
    with engine.connect() as conn:
        found = [dict(r) for r in conn.execute(sa.text(_SWEEPS), {"limit": limit}).mappings()]
        rows = conn.execute(
            sa.text(_SWEEP_CANDIDATES), {"ids": [s["sweep_id"] for s in found]}
        ).mappings()
        by_sweep: dict[str, list[dict]] = {}
        for row in rows:
            by_sweep.setdefault(row["sweep_id"], []).append(dict(row))
    for s in found:
        s["candidates"] = by_sweep.get(s["sweep_id"], [])
        values: dict[str, set[str]] = {}
        for c in s["candidates"]:
            for name, value in c["config"].items():
                values.setdefault(name, set()).add(repr(value))
        s["varied"] = sorted(name for name, seen in values.items() if len(seen) > 1)
    return found
