"""The scores page's queries: posts per day, champion vs previous champion, flagged posts, drift.

Split from :mod:`fnd_core.observe.monitoring` (what every page shares). Posts per day are the
view ``fnd.daily_summary`` (UTC calendar days, ``sql/012``), read for a window of days. The
other queries walk posts newest first through the index on ``coalesce(created_at,
ingested_at)`` (``sql/005``) and probe ``fnd.predictions`` by its primary key, so their cost
follows the window asked for, not the size of the tables.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from fnd_core.observe.monitoring import (
    MAX_BINS,
    MAX_DAYS,
    MAX_RECENT_POSTS,
    check_page,
    query_rows,
    tune_for_page,
)
from fnd_core.observe.monitoring_models import current_champions

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

# A post's day is fnd.daily_summary's: the UTC calendar day of its publication, else of its
# ingestion (sql/012). The newest day is one probe of the index on that same expression
# (posts_day_utc_idx); the window's days are then asked of the view, and the planner pushes
# the condition on `day` into it, where the same index answers it.
_LAST_DAY = (
    "select max((coalesce(created_at, ingested_at) at time zone 'UTC')::date) from fnd.posts"
)
_DAILY = """
with per_day as (
    select day, n_posts, n_scored, n_fake, fake_share
    from fnd.daily_summary
    where day between cast(:first_day as date) and cast(:last_day as date)
)
select
    d.day::date as day,
    coalesce(per_day.n_posts, 0) as n_posts,
    coalesce(per_day.n_scored, 0) as n_scored,
    coalesce(per_day.n_fake, 0) as n_fake,
    per_day.fake_share::float8 as fake_share
from generate_series(cast(:first_day as date), cast(:last_day as date), interval '1 day') as d (day)
left join per_day on per_day.day = d.day::date
order by d.day
"""


def daily_volume(engine: Engine, *, days: int = 30) -> dict:
    """Posts per UTC day and the champion's fake share, for the ``days`` up to the newest post.

    The rows are ``fnd.daily_summary``'s. The window ends on the newest post's day, so a quiet
    week still shows the last days that had posts. The champion named and the one the view
    counts are read in one snapshot. Cost: a few index probes per post in the window.

    Args:
        days: window length in days (1..MAX_DAYS).

    Returns:
        ``{"champion": version or None, "days": [{day, n_posts, n_scored, n_fake,
        fake_share}]}``, one entry per calendar day (days without posts show zeros);
        ``fake_share`` (rounded to 4 places by the view) is None on days with nothing scored.
    """
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, got {days}")
    with engine.connect() as conn:
        conn.execution_options(isolation_level="REPEATABLE READ")  # one snapshot for both
        tune_for_page(conn, probes=True)
        champion = current_champions(conn).champion
        last_day = conn.execute(sa.text(_LAST_DAY)).scalar_one()
        if last_day is None:
            return {"champion": champion, "days": []}
        first_day = last_day - timedelta(days=days - 1)
        rows = query_rows(conn, _DAILY, first_day=first_day, last_day=last_day)
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
        tune_for_page(conn, probes=True)
        versions = current_champions(conn)
        result: dict[str, Any] = {
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
    pr.scored_at,
    e.match_post_id,
    e.match_label,
    e.match_distance,
    e.matched,
    e.match_fake_posts,
    e.match_real_posts,
    e.novelty
from fnd.posts p
join fnd.predictions pr
    on pr.post_id = p.post_id and pr.model_version = :champion and pr.label = 'fake'
left join fnd.prediction_evidence e
    on e.post_id = pr.post_id and e.model_version = pr.model_version
order by coalesce(p.created_at, p.ingested_at) desc, p.post_id desc
limit :limit offset :offset
"""


def latest_flagged_fake(
    engine: Engine, *, limit: int = 20, offset: int = 0, champion: str | None = None
) -> dict[str, Any]:
    """The newest posts the champion flags fake, with their text, image hash and evidence
    (the nearest labelled picture, ``fnd.prediction_evidence``).

    No total is counted (it would read every prediction); ``has_more`` says whether a next
    page exists.
    """
    limit, offset = check_page(limit, offset)
    with engine.connect() as conn:
        tune_for_page(conn, probes=True)
        champion = champion or current_champions(conn).champion
        items = []
        if champion is not None:
            items = query_rows(conn, _FLAGGED, champion=champion, limit=limit + 1, offset=offset)
    if offset and not items:
        raise ValueError(f"offset {offset} is beyond the flagged posts there are")
    return {
        "champion": champion,
        "items": items[:limit],
        "limit": limit,
        "offset": offset,
        "has_more": len(items) > limit,
    }


_NOVELTY = """
with recent as (
    select pr.post_id, pr.run_id, pr.scored_at
    from fnd.predictions pr
    where pr.model_version = :champion
    order by pr.scored_at desc
    limit :window
), measured as (
    select r.run_id, r.scored_at, e.novelty
    from recent r
    left join fnd.prediction_evidence e
        on e.post_id = r.post_id and e.model_version = :champion
), runs as (
    select run_id, max(scored_at) as last_scored, count(*) as n_posts,
           count(novelty) as n_measured,
           percentile_cont(0.5) within group (order by novelty) as median,
           avg((novelty >= :far)::int) as far_share
    from measured group by run_id order by last_scored desc limit :runs
), bins as (
    select m.run_id, width_bucket(m.novelty, 0, 100.000001, :bins) as bin, count(*) as n
    from measured m join runs using (run_id)
    where m.novelty is not null group by 1, 2
)
select
    (select coalesce(json_agg(runs order by last_scored desc), '[]') from runs) as runs,
    (select coalesce(json_agg(json_build_object('run_id', run_id, 'bin', bin, 'n', n)), '[]')
     from bins) as bins
"""
FAR = 95.0  # novelty at or above which a verdict is "far from anything learnt"


def novelty_by_run(
    engine: Engine, *, runs: int = 2, window: int = 20_000, bins: int = 10
) -> dict[str, Any]:
    """How far the champion's newest runs lay from its training topics: per run, the posts,
    the median novelty and the share at or above :data:`FAR`, and a histogram of novelty.

    Reads the champion's newest ``window`` verdicts (the ``scored_at`` index), so its cost does
    not grow with the table.

    Returns:
        ``{"champion", "far", "runs": [{run_id, last_scored, n_posts, n_measured, median,
        far_share}], "bins": [{lo, hi, <run_id>: count}]}``.
    """
    if not 1 <= bins <= MAX_BINS:
        raise ValueError(f"bins must be between 1 and {MAX_BINS}, got {bins}")
    with engine.connect() as conn:
        tune_for_page(conn, probes=True)
        champion = current_champions(conn).champion
        out: dict[str, Any] = {"champion": champion, "far": FAR, "runs": [], "bins": []}
        if champion is None:
            return out
        found, counts = conn.execute(
            sa.text(_NOVELTY),
            {"champion": champion, "window": window, "runs": runs, "bins": bins, "far": FAR},
        ).one()
    out["runs"] = [r | {"last_scored": datetime.fromisoformat(r["last_scored"])} for r in found]
    out["bins"] = [
        {"lo": 100 * i / bins, "hi": 100 * (i + 1) / bins} | {r["run_id"]: 0 for r in found}
        for i in range(bins)
    ]
    for row in counts:
        out["bins"][row["bin"] - 1][row["run_id"]] = row["n"]
    return out


def drift_reports(engine: Engine, *, limit: int = 30) -> list[dict[str, Any]]:
    """The newest drift reports (``fnd.drift_summary``), oldest first, for a time series."""
    with engine.connect() as conn:
        return query_rows(
            conn,
            "select * from (select report_id, computed_at, kind, subject, model_version, "
            "n_posts, flagged, image_auc, text_auc, image_auc_bar, text_auc_bar, "
            "predicted_fake_share, estimated_fake_share, "
            "train_fake_share, unseen_image_share, undecided_share, reasons "
            "from fnd.drift_summary order by report_id desc limit :limit) newest "
            "order by report_id",
            limit=limit,
        )


def image_uri(engine: Engine, image_sha256: str) -> str | None:
    """Where the image store keeps the image with this content hash; None if no post has it."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text("select image_uri from fnd.posts where image_sha256 = :s limit 1"),
            {"s": image_sha256},
        ).scalar_one_or_none()
