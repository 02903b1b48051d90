"""A hand-computed example of verdicts and the labels that came after them.

Ten verdicts of one champion (``VERSION``) in the UTC week of ``WEEK``, written straight into
fnd.predictions as the scorer writes them, and the labels eight of those posts (demo posts of
seed 5) get later: the realized figures can be counted by hand (tests/test_labels.py), and the
ingest DAG's label path checked on them (tests/airflow/test_pipeline_dags.py).
"""

from __future__ import annotations

import json

import sqlalchemy as sa

WEEK = "2026-11-23"  # a Monday
VERSION = "m-hand"

# The hand-computed example: ten verdicts in the week of 2026-11-23, eight labels a week later.
P_FAKE = {
    "s5-000000": 0.9, "s5-000001": 0.8, "s5-000002": 0.7, "s5-000003": 0.6,
    "s5-000004": 0.4, "s5-000005": 0.3, "s5-000006": 0.2, "s5-000007": 0.1,
    "s5-000008": 0.55, "s5-000009": 0.45,
}  # fmt: skip
TRUTH = {  # 1 fake, 0 real; s5-000008 and s5-000009 stay unlabelled
    "s5-000000": 1, "s5-000001": 1, "s5-000002": 0, "s5-000003": 1,
    "s5-000004": 1, "s5-000005": 0, "s5-000006": 0, "s5-000007": 0,
}  # fmt: skip


def add_version(engine, version: str = VERSION, *, gate_by_post: float = 0.8) -> None:
    """A champion whose gate recorded ``gate_by_post`` (balanced accuracy, counted by post)."""
    metrics = {"cv": {"estimate": gate_by_post, "counted_by": "posts", "metric":
                      "balanced_accuracy"}}  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            sa.text("insert into fnd.model_versions (version, status, preset, metrics, "
                    "artifact_uri, artifact_sha256) values (:v, 'champion', 'tiny', "
                    "cast(:m as jsonb), '/nowhere', repeat('0', 64))"),
            {"v": version, "m": json.dumps(metrics)},
        )  # fmt: skip


def add_verdicts(
    engine, verdicts: dict[str, float], *, at: str | None = f"{WEEK} 10:00+00"
) -> None:
    """Verdicts given at ``at`` (None: now; threshold 0.5), as the scorer writes them."""
    with engine.begin() as conn:
        for post_id, p in verdicts.items():
            conn.execute(
                sa.text("insert into fnd.predictions (post_id, model_version, p_fake, label, "
                        "threshold, scored_at) values (:id, :v, :p, :l, 0.5, "
                        "coalesce(cast(:at as timestamptz), now()))"),
                {"id": post_id, "v": VERSION, "p": p, "l": "fake" if p >= 0.5 else "real",
                 "at": at},
            )  # fmt: skip
