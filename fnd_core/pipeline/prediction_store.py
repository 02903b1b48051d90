"""Scoring's side of Postgres: which posts are still unscored, read page by page, and the
verdicts written back in bulk, idempotently.

Kept apart from the shard loop (:mod:`fnd_core.pipeline.scoring`) so the SQL that makes
scoring exactly-once lives in one place: the anti-join that selects unscored posts (served by
the ``(model_version, post_id)`` index), the keyset pages in post_id order, and one
transaction per page (COPY into a staging table, then INSERT … ON CONFLICT).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from fnd_core.io.pgcopy import upsert_via_staging

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from fnd_core.model.examples import PostExample

PREDICTION_COLUMNS = ("post_id", "model_version", "p_fake", "label", "threshold", "run_id")
ERROR_COLUMNS = ("post_id", "model_version", "error", "run_id")
# Shard of a post: a stable hash of its id (md5 is the same on every Postgres version).
_SHARD_SQL = "(('x' || substr(md5(p.post_id), 1, 8))::bit(32)::bigint % :n_shards)"
_UNSCORED = (
    "not exists (select 1 from fnd.predictions pr "
    "where pr.model_version = :v and pr.post_id = p.post_id) "
    "and not exists (select 1 from fnd.scoring_errors se "
    "where se.model_version = :v and se.post_id = p.post_id)"
)


def todo_per_shard(
    engine: Engine, version: str, n_shards: int, rescore_all: bool
) -> dict[int, int]:
    """Posts left to score by ``version`` (all posts when ``rescore_all``), per shard."""
    sql = (
        f"select {_SHARD_SQL} as shard, count(*) from fnd.posts p where "
        + ("true" if rescore_all else _UNSCORED)
        + " group by 1"
    )
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(sql), {"v": version, "n_shards": n_shards}).all())


def next_page(
    engine: Engine,
    version: str,
    shard: int,
    n_shards: int,
    rescore_all: bool,
    after: str,
    page_size: int,
) -> list[PostExample]:
    """The shard's next ``page_size`` posts to score, in post_id order after ``after``."""
    from fnd_core.model.examples import PostExample

    sql = (
        "select p.post_id, p.text, p.image_uri, p.image_sha256, p.label "
        f"from fnd.posts p where {_SHARD_SQL} = :shard and p.post_id > :after and "
        + ("true" if rescore_all else _UNSCORED)
        + " order by p.post_id limit :limit"
    )
    params = {"v": version, "n_shards": n_shards, "shard": shard, "after": after,
              "limit": page_size}  # fmt: skip
    with engine.connect() as conn:
        return [PostExample(*row) for row in conn.execute(sa.text(sql), params).all()]


def write_page(
    engine: Engine,
    version: str,
    threshold: float,
    scored: list[tuple[str, float]],
    errors: list[tuple[str, str]],
    run_id: str,
    rescore_all: bool,
) -> None:
    """One transaction per page: predictions ((post_id, p_fake) pairs) and errors, idempotent."""
    rows = _prediction_rows(version, threshold, scored, run_id)
    conflict = "(post_id, model_version) do nothing"
    if rescore_all:
        conflict = (
            "(post_id, model_version) do update set p_fake = excluded.p_fake, "
            "label = excluded.label, threshold = excluded.threshold, "
            "scored_at = now(), run_id = excluded.run_id"
        )
    with engine.begin() as conn:
        if rows:
            upsert_via_staging(conn, "fnd.predictions", PREDICTION_COLUMNS, rows, conflict=conflict)
        if errors:
            upsert_via_staging(
                conn,
                "fnd.scoring_errors",
                ERROR_COLUMNS,
                [(post_id, version, error, run_id) for post_id, error in errors],
                conflict="(post_id, model_version) do update set error = excluded.error, "
                "occurred_at = now(), run_id = excluded.run_id",
            )
        if rescore_all and rows:
            # A post that scores now no longer has an error for this version.
            conn.execute(
                sa.text(
                    "delete from fnd.scoring_errors where model_version = :v "
                    "and post_id = any(:ids)"
                ),
                {"v": version, "ids": [r[0] for r in rows]},
            )


def _prediction_rows(
    version: str, threshold: float, scored: list[tuple[str, float]], run_id: str
) -> list[tuple]:
    """``fnd.predictions`` rows; the label decided on the values as stored."""
    import numpy as np

    # The table stores float4: decide the label on the stored values, so the row always
    # satisfies predictions_label_matches_threshold.
    t32 = float(np.float32(threshold))
    rows = []
    for post_id, p in scored:
        p32 = float(np.float32(p))
        rows.append((post_id, version, p32, "fake" if p32 >= t32 else "real", t32, run_id))
    return rows
