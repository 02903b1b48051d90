"""The training snapshot: "the labelled posts ingested up to ``as_of``", frozen and validated.

The first steps of retraining. A snapshot is small JSON (a timestamp, counts, an optional cap
on posts), so it passes between Airflow tasks; every later step re-reads exactly its posts
from Postgres (:func:`load_examples`) instead of passing data between tasks. Kept apart from
training so what a model was trained on is defined, and validated (GX ``training_set``), in
one place.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from fnd_core.model.splits.grouping import leak_groups
from fnd_core.resources import EXPECTATIONS_DIR
from fnd_core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from fnd_core.model.examples import PostExample

log = logging.getLogger(__name__)


class SnapshotInvalidError(RuntimeError):
    """The training snapshot failed its data-quality suite; nothing was trained."""


def load_examples(
    engine: Engine,
    *,
    as_of: datetime | None = None,
    labelled_only: bool = True,
    max_posts: int | None = None,
) -> list[PostExample]:
    """Posts as model examples, ordered by post_id (deterministic training input).

    ``max_posts`` keeps the newest ones (by ingestion, then post_id): what bounds a
    retraining's memory. Labels are read as they stood at ``as_of`` (``fnd.labels_as_of``): a
    label received while a retraining runs changes nothing in it. ``group`` and ``topic`` come
    from the landing file's optional ``group`` and ``topic`` (else ``event``) columns, kept in
    ``posts.extra``.
    """
    from fnd_core.model.examples import PostExample

    query = (
        "select * from (select p.post_id, p.text, p.image_uri, p.image_sha256, l.label, "
        "'train', p.extra ->> 'group', coalesce(p.extra ->> 'topic', p.extra ->> 'event'), "
        "extract(epoch from p.created_at)::float8 from fnd.posts p "
        "left join fnd.labels_as_of(cast(:as_of as timestamptz)) l on l.post_id = p.post_id "
        "where (cast(:as_of as timestamptz) is null or p.ingested_at <= :as_of)"
        + (" and l.label is not null" if labelled_only else "")
        + " order by p.ingested_at desc, p.post_id desc limit :limit) newest order by post_id"
    )
    with engine.connect() as conn:
        rows = conn.execute(sa.text(query), {"as_of": as_of, "limit": max_posts}).all()
    return [PostExample(*row) for row in rows]


def snapshot(engine: Engine, max_posts: int | None = None) -> dict[str, Any]:
    """Freeze the training data as "the newest ``max_posts`` labelled posts ingested up to
    now" (all of them without a cap); returns its summary."""
    with engine.connect() as conn:
        as_of = conn.execute(sa.text("select now()")).scalar_one()
        row = conn.execute(
            sa.text(
                "select count(*), min(p.ingested_at), max(p.ingested_at), "
                "count(*) filter (where l.label = 1) "
                "from fnd.posts p join fnd.labels_as_of(:as_of) l on l.post_id = p.post_id "
                "where p.ingested_at <= :as_of"
            ),
            {"as_of": as_of},
        ).one()
    n, first, last, n_fake = row
    summary = {
        "as_of": as_of.isoformat(),
        "n_labelled": n,
        "n_fake": n_fake,
        "window": [first.isoformat() if first else None, last.isoformat() if last else None],
        "max_posts": max_posts,
        "n_used": n if max_posts is None else min(n, max_posts),
    }
    if max_posts is not None and n > max_posts:
        log.warning(
            "%d labelled posts; training on the newest %d (FND_TRAIN_MAX_POSTS)", n, max_posts
        )
    log.info("training snapshot: %s", summary)
    return summary


def validate_snapshot(
    engine: Engine, settings: Settings, snap: dict[str, Any], *, run_id: str = "cli"
) -> dict[str, Any]:
    """Run the ``training_set`` suite on the snapshot; record it; raise if it fails."""

    import pandas as pd

    from fnd_core.ingest.quality import record_validation, validate_frame

    examples = load_examples(
        engine, as_of=datetime.fromisoformat(snap["as_of"]), max_posts=snap.get("max_posts")
    )
    frame = pd.DataFrame(
        {
            "post_id": [e.post_id for e in examples],
            "text": [e.text for e in examples],
            "image_sha256": [e.image_sha256 for e in examples],
            "label": pd.array([e.label for e in examples], dtype="Int64"),
            "leak_group": leak_groups(examples),
        }
    )
    name = f"snapshot-{snap['as_of'][:19].replace(':', '')}"
    summary = validate_frame(
        frame,
        "training_set",
        expectations_dir=EXPECTATIONS_DIR,
        data_docs_dir=settings.data_docs,
        batch_name=name,
        parameters={"min_groups": settings.cv_folds},
        publish_to=settings.data_docs_uri,
    ).to_json()
    with engine.begin() as conn:
        record_validation(conn, summary, run_id=run_id)
    if not summary["success"]:
        failed = [
            f"{r['expectation_type']}({r['column'] or ''}) observed {r['observed_value']}"
            for r in summary["results"]
            if not r["success"]
        ]
        raise SnapshotInvalidError(
            f"training snapshot {name} failed the training_set suite: {'; '.join(failed)}"
        )
    return {"batch_name": name, "success": True, "data_docs": summary["data_docs_path"]}
