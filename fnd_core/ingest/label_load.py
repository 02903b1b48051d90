"""The one transaction that loads a label file: batch row, rows checked, GX suite, labels.

A label file (``fnd label PATH``, or a file in ``labels/`` under the landing zone) goes through
the same landing rules as a post file (:mod:`~fnd_core.ingest.load`): its bytes are hashed and
recorded once, it is archived or set aside into ``failed/`` with its reason, a bad row is
quarantined with its rule and never sinks the file, and the GX suite ``labels`` is its
data-quality report. What differs is where the rows go: appended to ``fnd.labels`` (a label
the same source already gave for the post is a duplicate, so a resent file counts nothing
twice), and ``posts.label`` derived again for the posts they name. A label for a post fnd
does not hold yet is kept (``fnd.pending_labels``) and applies when the post lands.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from fnd_core.ingest.label_rows import AcceptedLabel, check_label_rows
from fnd_core.ingest.label_store import refresh_current_labels, sync_db_settings
from fnd_core.ingest.rows import RejectedRow
from fnd_core.ingest.staging import (
    CHUNK_ROWS,
    LoadOutcome,
    insert_batch,
    insert_quarantine,
    record_outcome,
    refusal_reason,
    row_chunks,
)
from fnd_core.io.pgcopy import copy_into, create_stage
from fnd_core.io.storage import basename, printable
from fnd_core.resources import EXPECTATIONS_DIR

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Connection

    from fnd_core.ingest.readers import LandingFile, RawRow
    from fnd_core.settings import Settings

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("post_id", "label", "source", "labelled_at")
FRAME_COLUMNS = ("post_id", "label", "label_raw", "source", "labelled_at")
_FRAME_CHARS = 256  # a rejected row's values are cut to this in the suite's frame


def load_label_batch(
    conn: Connection, landing: LandingFile, settings: Settings, run_id: str, threshold: float
) -> LoadOutcome:
    """One transaction: the batch row, the rows checked and staged, the suite, the labels."""
    out = LoadOutcome(batch_id=insert_batch(conn, landing, run_id))
    received_at = conn.execute(sa.text("select now()")).scalar_one()  # the labels' received_at
    stage = create_stage(conn, "fnd.labels", LABEL_COLUMNS)
    seen: dict[str, int] = {}
    frames = []
    for chunk in row_chunks(landing.iter_rows(), CHUNK_ROWS):
        results = check_label_rows(chunk, seen, received_at)
        accepted = [r for r in results if isinstance(r, AcceptedLabel)]
        rejected = [(raw, r) for raw, r in zip(chunk, results, strict=True)
                    if isinstance(r, RejectedRow)]  # fmt: skip
        copy_into(conn, stage, LABEL_COLUMNS,
                  ((a.post_id, a.label, a.source, a.labelled_at) for a in accepted))  # fmt: skip
        insert_quarantine(conn, out.batch_id, rejected)
        out.n_received += len(results)
        out.n_staged += len(accepted)
        out.n_quarantined += len(rejected)
        out.rules.update(r.rule for _, r in rejected)
        frames.append(labels_frame(chunk, results))
    out.validation = _validate(landing, frames, settings)
    out.refused = refusal_reason(out, threshold)
    if not out.refused:
        sync_db_settings(conn, settings)
        out.n_accepted, out.n_pending = _append(conn, stage, out.batch_id)
        out.n_labels_updated = refresh_current_labels(conn, stage, out.batch_id)
        log.info("%s: %d label(s) appended (%d for posts not ingested yet: pending), %d "
                 "post(s) changed label", printable(landing.uri), out.n_accepted,
                 out.n_pending, out.n_labels_updated)  # fmt: skip
    record_outcome(conn, out, run_id)
    return out


def _append(conn: Connection, stage: str, batch_id: int) -> tuple[int, int]:
    """Append the staged labels the same source has not already given for the post, with the
    same labelled_at; returns (labels appended, of which for posts not ingested yet)."""
    row = conn.execute(
        sa.text(
            "with ins as (insert into fnd.labels (post_id, label, source, labelled_at, batch_id) "
            f"select s.post_id, s.label, s.source, s.labelled_at, :batch from {stage} s "
            "where not exists (select 1 from fnd.labels l where l.post_id = s.post_id "
            "and l.source = s.source and l.label = s.label "
            "and l.labelled_at is not distinct from s.labelled_at) "
            "returning post_id) "
            "select count(*), count(*) filter (where not exists "
            "(select 1 from fnd.posts p where p.post_id = ins.post_id)) from ins"
        ),
        {"batch": batch_id},
    ).one()
    return int(row[0]), int(row[1])


def labels_frame(rows: list[RawRow], results: list[AcceptedLabel | RejectedRow]) -> pd.DataFrame:
    """One row per row read, in the columns the ``labels`` suite expects."""
    import pandas as pd

    from fnd_core.ingest.field_parsers import InvalidField, parse_label

    records: list[tuple[Any, ...]] = []
    for raw, verdict in zip(rows, results, strict=True):
        fields = raw.fields or {}
        if isinstance(verdict, AcceptedLabel):
            records.append((verdict.post_id, verdict.label, _cut(fields.get("label")),
                            verdict.source, verdict.labelled_at))  # fmt: skip
            continue
        try:
            label = parse_label(fields.get("label"))
        except InvalidField:
            label = None
        records.append((_cut(fields.get("post_id")), label, _cut(fields.get("label")),
                        _cut(fields.get("source")), None))  # fmt: skip
    frame = pd.DataFrame.from_records(records, columns=list(FRAME_COLUMNS))
    frame["labelled_at"] = pd.to_datetime(frame["labelled_at"], utc=True, errors="coerce")
    frame["label"] = frame["label"].astype("Int64")
    return frame


def _validate(landing: LandingFile, frames: list[pd.DataFrame], settings: Settings) -> dict:
    import pandas as pd

    from fnd_core.ingest.quality import validate_frame

    frame = pd.concat(frames, ignore_index=True) if frames else labels_frame([], [])
    return validate_frame(
        frame,
        "labels",
        expectations_dir=EXPECTATIONS_DIR,
        data_docs_dir=settings.data_docs,
        batch_name=f"{printable(basename(landing.uri))}-{landing.content_sha256[:8]}",
        publish_to=settings.data_docs_uri,
    ).to_json()


def _cut(value: Any) -> str | None:
    """A rejected row's value as short printable text (the frame never holds a whole row)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text[:_FRAME_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")
