"""Labels in the database: appended to ``fnd.labels``, and ``posts.label`` derived from them.

``fnd.labels`` keeps every label received (append-only: the table refuses UPDATE and DELETE).
``posts.label`` is derived, never written from a file directly: the latest label received
from the most trusted source (``FND_LABEL_TRUST_ORDER``; SQL function ``fnd.labels_as_of``,
which the training snapshot also reads at its own moment). Both writers use this module: a
label file (:mod:`~fnd_core.ingest.label_load`) and a post file whose rows carry labels
(:mod:`~fnd_core.ingest.staging`). The settings the database itself reads (the trust order,
the views' thresholds) are written to ``fnd.settings`` here before either derives anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from fnd_core.ingest.label_rows import POST_FILE_SOURCE

_IDS_PER_STATEMENT = 10_000  # post ids per UPDATE: a literal array, planned with them in view

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from fnd_core.settings import Settings


def sync_db_settings(conn: Connection, settings: Settings) -> None:
    """Write the settings views and SQL functions read into ``fnd.settings`` (when changed)."""
    trust = ",".join(s.strip() for s in settings.label_trust_order.split(",") if s.strip())
    values = {
        "label_trust_order": trust,
        "realized_min_labels_per_class": str(settings.realized_min_labels_per_class),
    }
    for name, value in values.items():
        conn.execute(
            sa.text(
                "insert into fnd.settings (name, value) values (:n, :v) on conflict (name) do "
                "update set value = excluded.value, set_at = now() "
                "where fnd.settings.value is distinct from excluded.value"
            ),
            {"n": name, "v": value},
        )


def append_post_file_labels(conn: Connection, stage: str, batch_id: int) -> int:
    """Record the labels a post file's rows carry (``source = post_file``): each one that
    differs from the last label the post files gave that post, so a post file sent again adds
    nothing. Returns the labels appended."""
    return conn.execute(
        sa.text(
            "insert into fnd.labels (post_id, label, source, batch_id) "
            f"select s.post_id, s.label, :src, :batch from {stage} s "
            "where s.label is not null and s.label is distinct from ("
            "  select l.label from fnd.labels l where l.post_id = s.post_id and l.source = :src "
            "  order by l.received_at desc, l.label_id desc limit 1)"
        ),
        {"src": POST_FILE_SOURCE, "batch": batch_id},
    ).rowcount


def refresh_current_labels(conn: Connection, stage: str, batch_id: int) -> int:
    """Derive ``posts.label`` again for the posts named in ``stage``; returns how many posts
    loaded by earlier batches changed label (their ``label_updated_at`` is set).

    The ids go to ``fnd.labels_as_of`` as a literal array, so only their labels are read
    (an index scan), whatever the size of ``fnd.labels``."""
    ids = conn.execute(sa.text(f"select distinct post_id from {stage}")).scalars().all()
    changed = 0
    for start in range(0, len(ids), _IDS_PER_STATEMENT):
        rows = conn.execute(
            sa.text(
                "update fnd.posts p set label = c.label, label_updated_at = "
                "  case when p.batch_id = :batch then p.label_updated_at else now() end "
                "from fnd.labels_as_of(null, :ids) c where p.post_id = c.post_id "
                "and p.label is distinct from c.label returning p.batch_id"
            ),
            {"batch": batch_id, "ids": ids[start : start + _IDS_PER_STATEMENT]},
        ).all()
        changed += sum(1 for (b,) in rows if b != batch_id)
    return changed
