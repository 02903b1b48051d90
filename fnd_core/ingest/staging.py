"""The one transaction that loads a landing file: batch row, chunks staged, GX suite, verdict.

Rows are streamed in chunks of ``CHUNK_ROWS``: each chunk is checked, its accepted posts are
COPYed into a staging table and its bad rows into ``fnd.quarantine``, all in the batch's one
transaction; only a few small columns per row are kept for the GX ``posts`` suite. Once every
chunk is in, the suite runs and the quarantined share decides: the staged posts go into
``fnd.posts`` (a post already loaded is never inserted again), the labels its rows carry into
``fnd.labels``, and ``posts.label`` is derived again for its posts (a label that arrived for a
post loaded before, or one that was waiting for it: :mod:`~fnd_core.ingest.label_store`), or
the whole file is refused. What happens before the transaction (is the file
readable, was it seen) and after the commit (move it aside, report) is
:mod:`~fnd_core.ingest.load` and :mod:`~fnd_core.ingest.batches`.

The fault-injection suite (``tests/fault_child.py``) patches ``copy_into``,
``record_validation`` and ``CHUNK_ROWS`` on this module: they are looked up here at call time.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from fnd_core.ingest.label_store import (
    append_post_file_labels,
    refresh_current_labels,
    sync_db_settings,
)
from fnd_core.ingest.posts_validation import concat_frames, posts_frame, validate_posts
from fnd_core.ingest.validation_results import record_validation
from fnd_core.io.pgcopy import copy_into, create_stage, insert_from_stage
from fnd_core.io.storage import printable
from fnd_core.settings import Settings

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Connection

    from fnd_core.ingest.readers import LandingFile, RawRow
    from fnd_core.ingest.rows import AcceptedPost, RejectedRow

log = logging.getLogger(__name__)

POST_COLUMNS = (
    "post_id",
    "source",
    "text",
    "image_uri",
    "image_sha256",
    "image_width",
    "image_height",
    "created_at",
    "label",
    "batch_id",
    "extra",
    "image_phashes",
)
QUARANTINE_COLUMNS = ("batch_id", "row_number", "post_id", "rule", "reason", "raw",
                      "raw_n_bytes", "raw_sha256", "raw_byte_offset")  # fmt: skip
CHUNK_ROWS = 2000  # rows checked, staged and released at a time...
CHUNK_BYTES = 32 * 1024 * 1024  # ...or fewer, once their bytes in the file reach this
_ESCAPED_NUL = re.compile(r"(?<!\\)(\\\\)*\\u0000")  # NUL as JSON writes it (jsonb refuses it)


@dataclass
class LoadOutcome:
    """What loading one file wrote (the transaction has committed when it is read)."""

    batch_id: int
    n_received: int = 0
    n_staged: int = 0  # accepted rows, before duplicates of loaded posts are dropped
    n_accepted: int = 0
    n_quarantined: int = 0
    n_labels_updated: int = 0
    n_pending: int = 0  # labels appended for posts not ingested yet (a label file's)
    rules: Counter = field(default_factory=Counter)
    validation: dict[str, Any] = field(default_factory=dict)
    refused: str | None = None  # why the whole file was refused, when it was


def load_batch(
    conn: Connection, landing: LandingFile, settings: Settings, run_id: str, threshold: float
) -> LoadOutcome:
    """One transaction: the batch row, then chunks staged, then the GX suite and the verdict."""
    out = LoadOutcome(batch_id=insert_batch(conn, landing, run_id))
    stage = create_stage(conn, "fnd.posts")
    frames = [
        _stage_chunk(conn, stage, out, chunk, results)
        for chunk, results in _checked_chunks(landing, settings)
    ]
    out.validation = validate_posts(landing, concat_frames(frames), settings)
    out.refused = refusal_reason(out, threshold)
    if not out.refused:
        out.n_accepted = insert_from_stage(
            conn, "fnd.posts", stage, POST_COLUMNS, conflict="(post_id) do nothing"
        )
        sync_db_settings(conn, settings)
        append_post_file_labels(conn, stage, out.batch_id)
        out.n_labels_updated = refresh_current_labels(conn, stage, out.batch_id)
    record_outcome(conn, out, run_id)
    return out


def refusal_reason(out: LoadOutcome, threshold: float) -> str | None:
    """Why the whole file is refused: its quarantined share passes ``threshold``; else None."""
    share = out.n_quarantined / out.n_received if out.n_received else 0.0
    if share <= threshold:
        return None
    return (
        f"{out.n_quarantined} of {out.n_received} rows quarantined "
        f"({share:.0%} > threshold {threshold:.0%}); rules: {dict(out.rules.most_common())}"
    )


def record_outcome(conn: Connection, out: LoadOutcome, run_id: str) -> None:
    """The file's GX validation run and its batch row's final counts and status."""
    validation = {**out.validation, "results": _storable_json(out.validation["results"])}
    record_validation(conn, validation, run_id=run_id, batch_id=out.batch_id)
    conn.execute(
        sa.text(
            "update fnd.ingest_batches set status = :s, error = :e, n_received = :r, "
            "n_accepted = :a, n_quarantined = :q, n_duplicate = :d, finished_at = now() "
            "where batch_id = :b"
        ),
        {"s": "failed" if out.refused else "loaded", "e": out.refused, "r": out.n_received,
         "a": out.n_accepted, "q": out.n_quarantined,
         "d": 0 if out.refused else out.n_staged - out.n_accepted, "b": out.batch_id},
    )  # fmt: skip


def _checked_chunks(
    landing: LandingFile, settings: Settings
) -> Iterator[tuple[list[RawRow], list[AcceptedPost | RejectedRow]]]:
    """(raw rows, verdicts) for each chunk of ``CHUNK_ROWS`` rows, images stored as checked."""
    from fnd_core.ingest.images import ImageStore, RemoteImages
    from fnd_core.ingest.remote import allowed_hosts
    from fnd_core.ingest.rows import RowContext, check_rows

    ctx = RowContext.for_file(
        landing,
        ImageStore(settings.store, gcs_endpoint=settings.gcs_endpoint),
        max_text_chars=settings.max_text_chars,
        max_image_pixels=settings.max_image_pixels,
        max_image_bytes=settings.max_image_bytes,
        max_image_decoded_bytes=settings.max_image_decoded_bytes,
        gcs_endpoint=settings.gcs_endpoint,
        remote=RemoteImages(
            allowed_hosts(settings.remote_image_hosts), settings.remote_image_timeout_s
        ),
        picture_hashes=settings.picture_evidence,
    )
    workers = max(1, settings.image_decode_threads)  # fixed: memory must not grow with cores
    started, n = time.perf_counter(), 0
    for chunk in row_chunks(landing.iter_rows(), CHUNK_ROWS):
        yield chunk, check_rows(chunk, ctx, workers=workers)
        n += len(chunk)
        log.info("%s: %d rows checked (%.0f rows/s)", printable(landing.uri), n,
                 n / max(time.perf_counter() - started, 1e-9))  # fmt: skip


def row_chunks(rows: Iterable[RawRow], size: int) -> Iterator[list[RawRow]]:
    """Rows in chunks of ``size`` rows, or fewer once they hold ``CHUNK_BYTES`` of the file."""
    chunk: list[RawRow] = []
    held = 0
    for row in rows:
        chunk.append(row)
        held += row.n_bytes
        if len(chunk) == size or held >= CHUNK_BYTES:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def _stage_chunk(
    conn: Connection,
    stage: str,
    out: LoadOutcome,
    chunk: list[RawRow],
    results: list[AcceptedPost | RejectedRow],
) -> pd.DataFrame:
    """COPY a chunk's accepted posts to the stage and its bad rows to the quarantine."""
    from fnd_core.ingest.rows import RejectedRow

    results = [storable_post(r) if not isinstance(r, RejectedRow) else r for r in results]
    rejected = [(raw, r) for raw, r in zip(chunk, results, strict=True)
                if isinstance(r, RejectedRow)]  # fmt: skip
    accepted = [r for r in results if not isinstance(r, RejectedRow)]
    copy_into(conn, stage, POST_COLUMNS, (_post_row(a, out.batch_id) for a in accepted))
    insert_quarantine(conn, out.batch_id, rejected)
    out.n_received += len(results)
    out.n_staged += len(accepted)
    out.n_quarantined += len(rejected)
    out.rules.update(r.rule for _, r in rejected)
    return posts_frame(chunk, results)


def _post_row(a: AcceptedPost, batch_id: int) -> tuple:
    return (a.post_id, a.source, a.text, a.image_uri, a.image_sha256, a.image_width,
            a.image_height, a.created_at, a.label, batch_id, a.extra,
            bigint_array(a.image_phashes))  # fmt: skip


def bigint_array(values: tuple[int, ...] | None) -> str | None:
    """A Postgres ``bigint[]`` literal for COPY (None: NULL)."""
    return None if values is None else "{" + ",".join(str(int(v)) for v in values) + "}"


def insert_batch(conn: Connection, landing: LandingFile, run_id: str) -> int:
    return conn.execute(
        sa.text(
            "insert into fnd.ingest_batches (source_uri, content_sha256, format, run_id) "
            "values (:u, :s, :f, :r) returning batch_id"
        ),
        {
            "u": printable(landing.uri),
            "s": landing.content_sha256,
            "f": landing.format,
            "r": run_id,
        },  # fmt: skip
    ).scalar_one()


def insert_quarantine(
    conn: Connection, batch_id: int, rejected: list[tuple[RawRow, RejectedRow]]
) -> None:
    """The rejected rows: rule, reason, the row's excerpt and where the whole row is."""
    rows = [
        (batch_id, r.row_number, _storable(r.post_id), r.rule, _storable(r.reason),
         _storable(raw.raw), raw.n_bytes, raw.sha256, raw.byte_offset)
        for raw, r in rejected
    ]  # fmt: skip
    if rows:
        copy_into(conn, "fnd.quarantine", QUARANTINE_COLUMNS, rows)


def storable_post(post: AcceptedPost) -> AcceptedPost | RejectedRow:
    """``post``, or its row quarantined (``value_unstorable``) when Postgres could not store
    a value of it: the last check, so no value a field check missed sinks the file's COPY."""
    from fnd_core.ingest.rows import RejectedRow

    try:
        extra = json.dumps(post.extra, ensure_ascii=False, allow_nan=False)
        for value in (post.post_id, post.source, post.text, post.image_uri, extra):
            value.encode("utf-8")
            if "\x00" in value or _ESCAPED_NUL.search(value):
                raise ValueError("a NUL character")
    except (ValueError, TypeError, RecursionError) as exc:  # UnicodeEncodeError is a ValueError
        kind = "invalid Unicode (a lone surrogate)" if isinstance(exc, UnicodeError) else exc
        reason = f"a value Postgres cannot store: {str(kind)[:200]}"
        return RejectedRow(post.row_number, "", "value_unstorable", reason, post.post_id)
    return post


def _storable(value: str | None) -> str | None:
    """Text Postgres can store: NUL as the escape ``\\x00``, a lone surrogate as ``\\udXXX``."""
    if value is None:
        return None
    return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _storable_json(value: Any) -> Any:
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, list):
        return [_storable_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _storable_json(v) for k, v in value.items()}
    return value
