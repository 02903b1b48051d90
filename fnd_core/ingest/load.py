"""Ingest one landed file into Postgres: read → check rows → validate (GX) → load → archive.

Nothing is lost and nothing lands twice:
- every row read ends up in ``fnd.posts`` (accepted), ``fnd.quarantine`` (with its rule and
  reason) or counted as a duplicate (its post_id was already loaded);
- the file's content hash is unique in ``fnd.ingest_batches``: the same bytes again are a no-op;
- the batch, its posts, its quarantine and its validation run are written in one transaction;
- a file that cannot be parsed, or whose quarantined share passes the threshold, is recorded
  as failed with its reason and moved to ``failed/``; loaded files move to ``archive/``.

Duplicates and labels: a post already loaded is never inserted again and its text and image
never change. A label, though, may arrive later (a fact-check verdict for a post first seen
unlabelled) or be corrected: when a duplicate row carries a label that differs from the stored
one, the stored label is updated and ``label_updated_at`` set. The row still counts as a
duplicate; the number of such updates is reported as ``n_labels_updated``.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from fnd_core.ingest.quality import record_validation
from fnd_core.io import storage
from fnd_core.io.pgcopy import copy_into, create_stage, insert_from_stage
from fnd_core.resources import EXPECTATIONS_DIR
from fnd_core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

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
)
QUARANTINE_COLUMNS = ("batch_id", "row_number", "post_id", "rule", "reason", "raw")


@dataclass(frozen=True)
class IngestReport:
    """What happened to one file; small and JSON-able (it travels through XCom)."""

    uri: str
    status: str  # loaded | skipped (same bytes seen before) | failed
    batch_id: int | None = None
    format: str | None = None
    n_received: int = 0
    n_accepted: int = 0
    n_quarantined: int = 0
    n_duplicate: int = 0
    n_labels_updated: int = 0
    rules: dict[str, int] = field(default_factory=dict)
    validation_success: bool | None = None
    data_docs: str | None = None
    moved_to: str | None = None
    reason: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        head = f"{storage.basename(self.uri)}: {self.status}"
        if self.status == "skipped":
            return f"{head} ({self.reason})"
        counts = (
            f"received {self.n_received}, accepted {self.n_accepted}, "
            f"quarantined {self.n_quarantined}, duplicates {self.n_duplicate}"
        )
        tail = f" — {self.reason}" if self.reason else ""
        return f"{head}: {counts}{tail}"


class BatchRejectedError(RuntimeError):
    """The whole file was refused (unparseable, or too many bad rows); it is in failed/."""

    def __init__(self, report: IngestReport) -> None:
        super().__init__(report.summary())
        self.report = report


class PathNotAllowedError(ValueError):
    """A path given to ingest that is not in the landing zone (or a configured root)."""


def allowed_landing_path(path: str, settings: Settings, *, operator: bool = False) -> str:
    """``path`` if ingest may read (and then move) files there; else :class:`PathNotAllowedError`.

    Ingest *moves* what it reads (to ``archive/`` or ``failed/``): a path naming the model
    store could move a champion's artifact away. A path from a trigger form must lie in the
    landing zone or a root of ``FND_LANDING_ROOTS``; an ``operator`` at the shell (``fnd
    ingest PATH``) may name any other folder, never fnd's own store, Data Docs, feature cache
    or database folder. Local paths are compared after resolving links.
    """
    own = [settings.store, str(settings.data_docs), str(settings.home / "pgdata"),
           str(settings.home / "feature_cache")]  # fmt: skip
    inside_own = next(
        (f for f in own if storage.is_within(path, f) or storage.is_within(f, path)), None
    )
    if inside_own is not None:
        raise PathNotAllowedError(
            f"{path!r} holds fnd's own data ({inside_own}): ingest moves the files it reads, "
            "so it never reads there"
        )
    if operator:
        return path
    roots = [settings.landing, *(r.strip() for r in settings.landing_roots.split(",") if r.strip())]
    if any(storage.is_within(path, root) for root in roots):
        return path
    raise PathNotAllowedError(
        f"{path!r} is not inside the landing zone {settings.landing!r}"
        + (f" or FND_LANDING_ROOTS ({settings.landing_roots})" if settings.landing_roots else "")
        + ": a path from a trigger form may only name files there"
    )


def list_new_files(path: str, settings: Settings) -> list[str]:
    """The files waiting at ``path``: the path itself if it is a file, else the folder's files.

    Sub-folders (``archive/``, ``failed/``, ``images/``) are not looked into. Files still being
    written are left for the next run: a local file modified within the last
    ``FND_LANDING_SETTLE_SECONDS`` is looked at again once that window has passed, and taken
    only if its size and modification time did not move. (Writers that land files by atomic
    rename, or as hidden ``.name`` files renamed when complete, are never delayed by more than
    the window.) A ``gs://`` object only appears once its upload is complete.
    """
    endpoint = settings.gcs_endpoint
    if storage.exists(path, gcs_endpoint=endpoint) and not storage.is_dir(
        path, gcs_endpoint=endpoint
    ):
        files = [path]
    else:
        files = storage.list_files(path, gcs_endpoint=endpoint)
    return settled_files(files, settings.landing_settle_seconds)


def settled_files(files: list[str], window_s: float) -> list[str]:
    """``files`` without the local ones still changing (see :func:`list_new_files`)."""
    if window_s <= 0:
        return files
    now, fresh = time.time(), {}
    for uri in files:
        if storage.is_local(uri):
            seen = _stat(uri)
            if seen is not None and now - seen[1] < window_s:
                fresh[uri] = seen
    if fresh:
        time.sleep(max(window_s - (now - mtime) for _, mtime in fresh.values()))
    settled = []
    for uri in files:
        if uri in fresh and _stat(uri) != fresh[uri]:
            log.info("%s is still being written: left for the next run", uri)
            continue
        settled.append(uri)
    return settled


def _stat(uri: str) -> tuple[int, float] | None:
    try:
        info = os.stat(storage.local_path(uri))
    except FileNotFoundError:
        return None
    return info.st_size, info.st_mtime


def ingest_file(
    engine: Engine,
    uri: str,
    settings: Settings,
    *,
    run_id: str = "cli",
    fail_share: float | None = None,
) -> IngestReport:
    """Ingest one file end to end; raises :class:`BatchRejectedError` if it is refused.

    Memory stays flat with the file's size: rows are streamed in chunks of ``CHUNK_ROWS``;
    each chunk is checked, its accepted posts COPYed into a staging table and its bad rows
    into the quarantine, all in the batch's one transaction; only a few small columns per
    row are kept for the GX suite.

    Raises:
        BatchRejectedError: the file cannot be read as a whole, or too many rows are bad.
        FileChangedError: the file changed while it was read; nothing was written.
    """
    from fnd_core.ingest.readers import (
        UnreadableFileError,
        content_sha256,
        read_landing_file,
        refusal,
    )

    started = time.perf_counter()
    endpoint = settings.gcs_endpoint
    try:
        refused = refusal(uri, max_bytes=settings.max_landing_bytes, gcs_endpoint=endpoint)
        if refused:  # moved to failed/ unread: no content hash, so no batch row
            return _refuse_unreadable(engine, uri, None, refused, run_id, endpoint, started)
        landing = read_landing_file(uri, gcs_endpoint=endpoint)
    except UnreadableFileError as exc:
        sha = content_sha256(uri, gcs_endpoint=endpoint)
        return _refuse_unreadable(engine, uri, sha, exc.reason, run_id, endpoint, started)
    except FileNotFoundError:
        resumed = _resume(engine, uri, run_id, None, endpoint, started)
        if resumed is None:
            raise
        return resumed  # a retry after this run's first try had loaded and moved the file

    previous = _find_batch(engine, landing.content_sha256)
    if previous is not None:
        resumed = _resume(engine, uri, run_id, landing.content_sha256, endpoint, started)
        if resumed is not None:
            return resumed  # a retry after this run's first try had loaded the file
        return _skip_seen(uri, landing, previous, endpoint, started)

    log.info("%s: %s, %d bytes: checking rows", uri, landing.format, landing.size_bytes)
    threshold = settings.quarantine_fail_share if fail_share is None else fail_share
    try:
        with engine.begin() as conn:
            outcome = _load(conn, landing, settings, run_id, threshold)
    except UnreadableFileError as exc:  # e.g. Parquet data broken after the footer was read
        return _refuse_unreadable(
            engine, uri, landing.content_sha256, exc.reason, run_id, endpoint, started
        )
    except sa.exc.IntegrityError as exc:
        if "ingest_batches_content_is_unique" not in str(exc):
            raise
        # Another worker loaded the same bytes between our look-up and our insert.
        previous = _find_batch(engine, landing.content_sha256)
        return _skip_seen(uri, landing, previous, endpoint, started)
    return _finish(engine, landing, outcome, endpoint, started)


@dataclass
class _Outcome:
    """What loading one file wrote (the transaction has committed when it is read)."""

    batch_id: int
    n_received: int = 0
    n_staged: int = 0  # accepted rows, before duplicates of loaded posts are dropped
    n_accepted: int = 0
    n_quarantined: int = 0
    n_labels_updated: int = 0
    rules: Counter = field(default_factory=Counter)
    validation: dict[str, Any] = field(default_factory=dict)
    refused: str | None = None  # why the whole file was refused, when it was


CHUNK_ROWS = 2000  # rows checked, staged and released at a time


def _load(
    conn: Connection, landing: LandingFile, settings: Settings, run_id: str, threshold: float
) -> _Outcome:
    """One transaction: the batch row, then chunks staged, then the GX suite and the verdict."""
    out = _Outcome(batch_id=_insert_batch(conn, landing, run_id))
    stage = create_stage(conn, "fnd.posts")
    frames = [
        _stage_chunk(conn, stage, out, chunk, results)
        for chunk, results in _checked_chunks(landing, settings)
    ]
    out.validation = _validate(landing, _concat(frames), settings)
    share = out.n_quarantined / out.n_received if out.n_received else 0.0
    if share > threshold:
        rules = dict(out.rules.most_common())
        out.refused = (
            f"{out.n_quarantined} of {out.n_received} rows quarantined "
            f"({share:.0%} > threshold {threshold:.0%}); rules: {rules}"
        )
    else:
        out.n_accepted = insert_from_stage(
            conn, "fnd.posts", stage, POST_COLUMNS, conflict="(post_id) do nothing"
        )
        out.n_labels_updated = _update_labels(conn, stage, out.batch_id)
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
    return out


def _checked_chunks(landing: LandingFile, settings: Settings):
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
        gcs_endpoint=settings.gcs_endpoint,
        remote=RemoteImages(
            allowed_hosts(settings.remote_image_hosts), settings.remote_image_timeout_s
        ),
    )
    workers = settings.num_workers if settings.num_workers > 0 else (os.cpu_count() or 1)
    started, n = time.perf_counter(), 0
    for chunk in _chunks(landing.iter_rows(), CHUNK_ROWS):
        yield chunk, check_rows(chunk, ctx, workers=workers)
        n += len(chunk)
        log.info("%s: %d rows checked (%.0f rows/s)", landing.uri, n,
                 n / max(time.perf_counter() - started, 1e-9))  # fmt: skip


def _chunks(rows, size: int):
    chunk: list = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _stage_chunk(
    conn: Connection,
    stage: str,
    out: _Outcome,
    chunk: list[RawRow],
    results: list[AcceptedPost | RejectedRow],
):
    """COPY a chunk's accepted posts to the stage and its bad rows to the quarantine."""
    from fnd_core.ingest.rows import RejectedRow

    rejected = [r for r in results if isinstance(r, RejectedRow)]
    accepted = [r for r in results if not isinstance(r, RejectedRow)]
    copy_into(conn, stage, POST_COLUMNS, (_post_row(a, out.batch_id) for a in accepted))
    _insert_quarantine(conn, out.batch_id, rejected)
    out.n_received += len(results)
    out.n_staged += len(accepted)
    out.n_quarantined += len(rejected)
    out.rules.update(r.rule for r in rejected)
    return posts_frame(chunk, results)


def _post_row(a: AcceptedPost, batch_id: int) -> tuple:
    return (a.post_id, a.source, a.text, a.image_uri, a.image_sha256, a.image_width,
            a.image_height, a.created_at, a.label, batch_id,
            a.extra)  # fmt: skip


def _update_labels(conn: Connection, stage: str, batch_id: int) -> int:
    """Labels that arrived (or changed) for posts loaded by earlier batches."""
    return conn.execute(
        sa.text(
            "update fnd.posts p set label = s.label, label_updated_at = now() "
            f"from {stage} s where p.post_id = s.post_id "
            "and s.label is not null and p.label is distinct from s.label "
            "and p.batch_id <> :batch"
        ),
        {"batch": batch_id},
    ).rowcount


def _finish(
    engine: Engine, landing: LandingFile, out: _Outcome, endpoint: str | None, started: float
) -> IngestReport:
    """After the commit: move the file aside and report (raise, if it was refused)."""
    uri = landing.uri
    folder = "failed" if out.refused else "archive"
    moved = _move_aside(uri, folder, out.batch_id, endpoint, out.refused)
    if not out.refused:
        with engine.begin() as conn:
            conn.execute(
                sa.text("update fnd.ingest_batches set archived_uri = :m where batch_id = :b"),
                {"m": moved, "b": out.batch_id},
            )
    report = IngestReport(
        uri=uri,
        status="failed" if out.refused else "loaded",
        batch_id=out.batch_id,
        format=landing.format,
        n_received=out.n_received,
        n_accepted=out.n_accepted,
        n_quarantined=out.n_quarantined,
        n_duplicate=0 if out.refused else out.n_staged - out.n_accepted,
        n_labels_updated=out.n_labels_updated,
        rules=dict(out.rules.most_common()),
        validation_success=out.validation["success"],
        data_docs=out.validation["data_docs_path"],
        moved_to=moved,
        reason=out.refused,
        seconds=time.perf_counter() - started,
    )
    if out.refused:
        raise BatchRejectedError(report)
    log.info("%s (%.1fs)", report.summary(), report.seconds)
    return report


# Steps -----------------------------------------------------------------------------------


def _validate(landing: LandingFile, frame, settings: Settings) -> dict[str, Any]:
    """Run the GX ``posts`` suite over every row of the file (accepted and rejected)."""
    from fnd_core.ingest.quality import posts_parameters, validate_frame

    summary = validate_frame(
        frame,
        "posts",
        expectations_dir=EXPECTATIONS_DIR,
        data_docs_dir=settings.data_docs,
        batch_name=f"{storage.basename(landing.uri)}-{landing.content_sha256[:8]}",
        parameters=posts_parameters(settings),
        publish_to=settings.data_docs_uri,
    )
    return summary.to_json()


FRAME_COLUMNS = ("post_id", "text", "text_length", "image_ok", "image_pixels", "created_at",
                 "label", "label_raw")  # fmt: skip
_FRAME_TEXT_CHARS = 256  # the suite checks text for presence; its length has its own column


def posts_frame(rows: list[RawRow], results: list[AcceptedPost | RejectedRow]):
    """One row per row read, in the columns the ``posts`` suite expects.

    Texts are cut to a few hundred characters: the suite only asks whether a text is there
    (``text_length`` holds the full length), and the frame stays small for big files.
    """
    import pandas as pd

    from fnd_core.ingest.rows import AcceptedPost

    records = []
    for raw, verdict in zip(rows, results, strict=True):
        fields = raw.fields or {}
        ok = verdict if isinstance(verdict, AcceptedPost) else None
        text = ok.text if ok else _printable(fields.get("text"))
        label_raw = _printable(fields.get("label"))
        records.append(
            (
                ok.post_id if ok else _printable(_as_str(fields.get("id"))),
                text[:_FRAME_TEXT_CHARS] if isinstance(text, str) else None,
                len(text) if isinstance(text, str) else None,
                ok is not None or not verdict.rule.startswith("image"),
                ok.image_width * ok.image_height if ok else None,
                ok.created_at if ok else None,
                ok.label if ok else _label_or_none(label_raw),
                None if label_raw is None else str(label_raw),
            )
        )
    frame = pd.DataFrame.from_records(records, columns=list(FRAME_COLUMNS))
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True, errors="coerce")
    for column in ("label", "text_length", "image_pixels"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _concat(frames: list):
    import pandas as pd

    return pd.concat(frames, ignore_index=True) if frames else posts_frame([], [])


def _refuse_unreadable(
    engine: Engine,
    uri: str,
    sha: str | None,
    reason: str,
    run_id: str,
    endpoint: str | None,
    started: float,
) -> IngestReport:
    """A file that cannot be parsed at all: recorded as failed (when it could be hashed),
    moved aside with its reason, raised."""
    batch_id = None
    if sha is not None and _find_batch(engine, sha) is None:
        with engine.begin() as conn:
            batch_id = conn.execute(
                sa.text(
                    "insert into fnd.ingest_batches (source_uri, content_sha256, status, error, "
                    "finished_at, run_id) values (:u, :s, 'failed', :e, now(), :r) "
                    "returning batch_id"
                ),
                {"u": uri, "s": sha, "e": reason, "r": run_id},
            ).scalar_one()
    moved = _move_aside(uri, "failed", batch_id, endpoint, reason)
    report = IngestReport(
        uri=uri,
        status="failed",
        batch_id=batch_id,
        reason=f"unreadable file: {reason}",
        moved_to=moved,
        seconds=time.perf_counter() - started,
    )
    raise BatchRejectedError(report)


def _skip_seen(
    uri: str, landing: LandingFile, previous: tuple[int, str], endpoint, started: float
) -> IngestReport:
    """The same bytes were ingested before: change nothing, clear the file from landing."""
    batch_id, status = previous
    moved = _move_aside(uri, "archive" if status == "loaded" else "failed", batch_id, endpoint)
    return IngestReport(
        uri=uri,
        status="skipped",
        batch_id=batch_id,
        format=landing.format,
        reason=f"same content as batch {batch_id} ({status}); nothing written",
        moved_to=moved,
        seconds=time.perf_counter() - started,
    )


# Small helpers ---------------------------------------------------------------------------


def _insert_batch(conn: Connection, landing: LandingFile, run_id: str) -> int:
    return conn.execute(
        sa.text(
            "insert into fnd.ingest_batches (source_uri, content_sha256, format, run_id) "
            "values (:u, :s, :f, :r) returning batch_id"
        ),
        {"u": landing.uri, "s": landing.content_sha256, "f": landing.format, "r": run_id},
    ).scalar_one()


def _insert_quarantine(conn: Connection, batch_id: int, rejected: list[RejectedRow]) -> None:
    rows = [
        (
            batch_id,
            r.row_number,
            _storable(r.post_id),
            r.rule,
            _storable(r.reason),
            _storable(r.raw),
        )
        for r in rejected
    ]
    if rows:
        copy_into(conn, "fnd.quarantine", QUARANTINE_COLUMNS, rows)


def _resume(
    engine: Engine, uri: str, run_id: str, sha: str | None, endpoint, started: float
) -> IngestReport | None:
    """The report of a batch this very run loaded from ``uri`` before a crash, if there is one.

    A task retried after its first try committed the load (and perhaps moved the file) must
    report "loaded" with the batch's counts, so the DAG still announces the new posts; the
    archive move is finished if the first try did not get to it. A batch whose bookkeeping was
    completed (``archived_uri`` set) by another run is a genuine repeat: not resumed.
    """
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "select batch_id, format, n_received, n_accepted, n_quarantined, n_duplicate, "
                "archived_uri from fnd.ingest_batches where status = 'loaded' and run_id = :r "
                "and source_uri = :u and (cast(:s as text) is null or content_sha256 = :s) "
                "and (archived_uri is null or cast(:s as text) is null) "
                "order by batch_id desc limit 1"
            ),
            {"r": run_id, "u": uri, "s": sha},
        ).one_or_none()
    if row is None:
        return None
    batch_id, fmt, n_received, n_accepted, n_quarantined, n_duplicate, moved = row
    if moved is None:
        if storage.exists(uri, gcs_endpoint=endpoint):
            moved = _move_aside(uri, "archive", batch_id, endpoint)
        else:  # moved by the first try, which died before recording where
            name = f"batch{batch_id}-{storage.basename(uri)}"
            moved = storage.join(storage.parent(uri), "archive", name)
        with engine.begin() as conn:
            conn.execute(
                sa.text("update fnd.ingest_batches set archived_uri = :m where batch_id = :b"),
                {"m": moved, "b": batch_id},
            )
    log.info("%s: batch %d was loaded by an earlier try of run %s: resumed", uri, batch_id, run_id)
    return IngestReport(
        uri=uri,
        status="loaded",
        batch_id=batch_id,
        format=fmt,
        n_received=n_received,
        n_accepted=n_accepted,
        n_quarantined=n_quarantined,
        n_duplicate=n_duplicate,
        moved_to=moved,
        reason="resumed: loaded by an earlier try of this run",
        seconds=time.perf_counter() - started,
    )


def _find_batch(engine: Engine, sha: str) -> tuple[int, str] | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("select batch_id, status from fnd.ingest_batches where content_sha256 = :s"),
            {"s": sha},
        ).one_or_none()
    return None if row is None else (row[0], row[1])


def _move_aside(
    uri: str, folder: str, batch_id: int | None, endpoint: str | None, reason: str | None = None
) -> str | None:
    """Move ``uri`` into ``<its folder>/<folder>/``; never overwrite, never delete."""
    if not storage.exists(uri, gcs_endpoint=endpoint):
        return None
    name = storage.basename(uri)
    prefix = f"batch{batch_id}-" if batch_id is not None else f"{int(time.time())}-"
    target = storage.join(storage.parent(uri), folder, prefix + name)
    base, n = target, 0
    while storage.exists(target, gcs_endpoint=endpoint):  # the same file landed again
        n += 1
        target = f"{base}.{n}"
    moved = storage.move(uri, target, gcs_endpoint=endpoint)
    if reason:
        storage.write_bytes(target + ".reason.txt", (reason + "\n").encode(), gcs_endpoint=endpoint)
    return moved


def _storable(value: str | None) -> str | None:
    """Postgres text cannot hold NUL: show it as the escape ``\\x00`` (quarantine keeps raw)."""
    return None if value is None else value.replace("\x00", "\\x00")


def _storable_json(value: Any) -> Any:
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, list):
        return [_storable_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _storable_json(v) for k, v in value.items()}
    return value


def _printable(value: Any) -> Any:
    """Strings of rejected rows may hold undecodable bytes (surrogates): escape them for GX."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _as_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _label_or_none(value: Any) -> int | None:
    """The row checks' label parser; an invalid label is None here (GX sees ``label_raw``)."""
    from fnd_core.ingest.rows import InvalidField, parse_label

    try:
        return parse_label(value)
    except InvalidField:
        return None
