"""A landing file's fate outside the load transaction: its batch row, its move, its report.

Every way a file can end is here, apart from the transaction that loads it
(:mod:`~fnd_core.ingest.staging`): after the commit the file moves to ``archive/`` (or
``failed/`` with its reason) and the batch records where; a file that cannot be parsed is
recorded as failed and moved aside unread; the same bytes again change nothing; and the retry
of a task that died after its commit picks the batch up again (:func:`resume`) instead of
loading it twice. Each ends in an :class:`IngestReport`, or :class:`BatchRejectedError` carrying
one.

The fault-injection suite (``tests/fault_child.py``) patches :func:`move_aside` on this module:
every move goes through that name here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from fnd_core.io import storage

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from fnd_core.ingest.readers import LandingFile
    from fnd_core.ingest.staging import LoadOutcome

log = logging.getLogger(__name__)


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


def finish_batch(
    engine: Engine, landing: LandingFile, out: LoadOutcome, endpoint: str | None, started: float
) -> IngestReport:
    """After the commit: move the file aside and report (raise, if it was refused)."""
    uri = landing.uri
    folder = "failed" if out.refused else "archive"
    moved = move_aside(uri, folder, out.batch_id, endpoint, out.refused)
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


def refuse_unreadable(
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
    if sha is not None and find_batch(engine, sha) is None:
        with engine.begin() as conn:
            batch_id = conn.execute(
                sa.text(
                    "insert into fnd.ingest_batches (source_uri, content_sha256, status, error, "
                    "finished_at, run_id) values (:u, :s, 'failed', :e, now(), :r) "
                    "returning batch_id"
                ),
                {"u": uri, "s": sha, "e": reason, "r": run_id},
            ).scalar_one()
    moved = move_aside(uri, "failed", batch_id, endpoint, reason)
    report = IngestReport(
        uri=uri,
        status="failed",
        batch_id=batch_id,
        reason=f"unreadable file: {reason}",
        moved_to=moved,
        seconds=time.perf_counter() - started,
    )
    raise BatchRejectedError(report)


def skip_seen(
    uri: str, landing: LandingFile, previous: tuple[int, str], endpoint, started: float
) -> IngestReport:
    """The same bytes were ingested before: change nothing, clear the file from landing."""
    batch_id, status = previous
    moved = move_aside(uri, "archive" if status == "loaded" else "failed", batch_id, endpoint)
    return IngestReport(
        uri=uri,
        status="skipped",
        batch_id=batch_id,
        format=landing.format,
        reason=f"same content as batch {batch_id} ({status}); nothing written",
        moved_to=moved,
        seconds=time.perf_counter() - started,
    )


def resume(
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
            moved = move_aside(uri, "archive", batch_id, endpoint)
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


def find_batch(engine: Engine, sha: str) -> tuple[int, str] | None:
    """The batch (id, status) already recorded for these bytes, if there is one."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("select batch_id, status from fnd.ingest_batches where content_sha256 = :s"),
            {"s": sha},
        ).one_or_none()
    return None if row is None else (row[0], row[1])


def move_aside(
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
