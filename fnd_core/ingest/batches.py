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

import dataclasses
import hashlib
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, overload

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
    n_pending: int = 0  # labels for posts not ingested yet (label files)
    kind: str = "posts"  # posts | labels
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
        if self.kind == "labels":
            counts += f", pending {self.n_pending}, posts relabelled {self.n_labels_updated}"
        tail = f" — {self.reason}" if self.reason else ""
        return f"{head}: {counts}{tail}"


class BatchRejectedError(RuntimeError):
    """The whole file was refused (unparseable, or too many bad rows); it is in failed/."""

    def __init__(self, report: IngestReport) -> None:
        super().__init__(report.summary())
        self.report = report


def finish_batch(
    engine: Engine,
    landing: LandingFile,
    out: LoadOutcome,
    endpoint: str | None,
    started: float,
    root: str | None = None,
) -> IngestReport:
    """After the commit: move the file aside and report (raise, if it was refused or could
    not be moved: a loaded file left in landing is a fault to show, not to hide)."""
    uri = landing.uri
    folder = "failed" if out.refused else "archive"
    moved, problem = _move(uri, folder, out.batch_id, endpoint, out.refused, root)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "update fnd.ingest_batches set archived_uri = :m, "
                "error = coalesce(error || '; ', '') || :p where batch_id = :b"
                if problem else
                "update fnd.ingest_batches set archived_uri = :m where batch_id = :b"
            ),
            {"m": _shown(moved), "b": out.batch_id, "p": problem},
        )  # fmt: skip
    reason = "; ".join(r for r in (out.refused, problem) if r) or None
    report = IngestReport(
        uri=_shown(uri),
        status="failed" if out.refused else "loaded",
        batch_id=out.batch_id,
        format=landing.format,
        n_received=out.n_received,
        n_accepted=out.n_accepted,
        n_quarantined=out.n_quarantined,
        n_duplicate=0 if out.refused else out.n_staged - out.n_accepted,
        n_labels_updated=out.n_labels_updated,
        n_pending=out.n_pending,
        kind="labels" if (landing.format or "").startswith("labels-") else "posts",
        rules=dict(out.rules.most_common()),
        validation_success=out.validation["success"],
        data_docs=out.validation["data_docs_path"],
        moved_to=_shown(moved),
        reason=reason,
        seconds=time.perf_counter() - started,
    )
    if reason:
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
    root: str | None = None,
) -> IngestReport:
    """A file that cannot be read, or whose reading failed: recorded as a failed batch with
    its reason (unless the same bytes were recorded before), moved aside, raised.

    An entry set aside unread (a link, FIFO, device, oversized file) has no content hash: it
    is recorded with none, once (a later run finding it again, because it could not be
    moved, reuses that row).
    """
    shown, reason = _shown(uri), storage.printable(reason)  # storable, whatever it quotes
    batch_id = None  # the same bytes recorded before: nothing new to record
    if sha is None or find_batch(engine, sha) is None:
        batch_id = _record_failed(engine, shown, sha, reason, run_id)
    moved, problem = _move(uri, "failed", batch_id, endpoint, reason, root)
    if batch_id is not None:
        with engine.begin() as conn:
            conn.execute(
                sa.text("update fnd.ingest_batches set archived_uri = :m, error = :e "
                        "where batch_id = :b and status = 'failed'"),
                {"m": _shown(moved), "e": "; ".join(filter(None, (reason, problem))),
                 "b": batch_id},
            )  # fmt: skip
    report = IngestReport(
        uri=shown,
        status="failed",
        batch_id=batch_id,
        reason=f"unreadable file: {reason}" + (f"; {problem}" if problem else ""),
        moved_to=_shown(moved),
        seconds=time.perf_counter() - started,
    )
    raise BatchRejectedError(report)


def _record_failed(engine: Engine, shown: str, sha: str | None, reason: str, run_id: str) -> int:
    with engine.begin() as conn:
        if sha is None:
            earlier = conn.execute(
                sa.text("select batch_id from fnd.ingest_batches where source_uri = :u and "
                        "content_sha256 is null and archived_uri is null "
                        "order by batch_id desc limit 1"),
                {"u": shown},
            ).scalar()  # fmt: skip
            if earlier is not None:
                return earlier
        return conn.execute(
            sa.text(
                "insert into fnd.ingest_batches (source_uri, content_sha256, status, error, "
                "finished_at, run_id) values (:u, :s, 'failed', :e, now(), :r) "
                "returning batch_id"
            ),
            {"u": shown, "s": sha, "e": reason, "r": run_id},
        ).scalar_one()


def skip_seen(
    uri: str,
    landing: LandingFile,
    previous: tuple[int, str],
    endpoint: str | None,
    started: float,
    root: str | None = None,
) -> IngestReport:
    """The same bytes were ingested before: change nothing, clear the file from landing."""
    batch_id, status = previous
    folder = "archive" if status == "loaded" else "failed"
    moved, problem = _move(uri, folder, batch_id, endpoint, None, root)
    report = IngestReport(
        uri=_shown(uri),
        status="skipped",
        batch_id=batch_id,
        format=landing.format,
        reason=f"same content as batch {batch_id} ({status}); nothing written"
        + (f"; {problem}" if problem else ""),
        moved_to=_shown(moved),
        seconds=time.perf_counter() - started,
    )
    if problem:
        raise BatchRejectedError(dataclasses.replace(report, status="failed"))
    return report


def resume(
    engine: Engine,
    uri: str,
    run_id: str,
    sha: str | None,
    endpoint: str | None,
    started: float,
    root: str | None = None,
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
            {"r": run_id, "u": _shown(uri), "s": sha},
        ).one_or_none()
    if row is None:
        return None
    batch_id, fmt, n_received, n_accepted, n_quarantined, n_duplicate, moved = row
    if moved is None:
        if storage.lexists(uri, gcs_endpoint=endpoint):
            moved = move_aside(uri, "archive", batch_id, endpoint, root=root)
        else:  # moved by the first try, which died before recording where
            name = f"batch{batch_id}-{storage.basename(uri)}"
            moved = storage.join(storage.parent(uri), "archive", name)
        with engine.begin() as conn:
            conn.execute(
                sa.text("update fnd.ingest_batches set archived_uri = :m where batch_id = :b"),
                {"m": _shown(moved), "b": batch_id},
            )
    log.info("%s: batch %d was loaded by an earlier try of run %s: resumed", _shown(uri),
             batch_id, run_id)  # fmt: skip
    return IngestReport(
        uri=_shown(uri),
        status="loaded",
        batch_id=batch_id,
        format=fmt,
        n_received=n_received,
        n_accepted=n_accepted,
        n_quarantined=n_quarantined,
        n_duplicate=n_duplicate,
        kind="labels" if (fmt or "").startswith("labels-") else "posts",
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
    uri: str,
    folder: str,
    batch_id: int | None,
    endpoint: str | None,
    reason: str | None = None,
    *,
    root: str | None = None,
) -> str | None:
    """Move ``uri`` into ``<its folder>/<folder>/``; never overwrite, never delete.

    ``root``: the landing root; no link below it is followed (:func:`storage.move`), so a
    ``failed`` or ``archive`` that is a link is refused (:class:`~fnd_core.io.localfs.
    UnsafePathError`) and nothing moves. The reason goes beside the file, never through a link.
    """
    if not storage.lexists(uri, gcs_endpoint=endpoint):
        return None
    name = storage.basename(uri)
    prefix = f"batch{batch_id}-" if batch_id is not None else f"{int(time.time())}-"
    target = storage.join(storage.parent(uri), folder, _fitting(prefix + name))
    base, n = target, 0
    while storage.lexists(target, gcs_endpoint=endpoint):  # the same file landed again
        n += 1
        target = f"{base}.{n}"
    moved = storage.move(uri, target, gcs_endpoint=endpoint, root=root)
    if reason:
        note = target + ".reason.txt"
        try:
            storage.write_new(note, (reason + "\n").encode("utf-8", "backslashreplace"),
                              root=root or storage.parent(uri), gcs_endpoint=endpoint)  # fmt: skip
        except OSError as exc:  # the reason is in fnd.ingest_batches anyway
            log.warning("%s: reason not written beside it: %s", _shown(note), exc)
    return moved


_NAME_ROOM = 255 - len(".reason.txt") - len(".99")  # NAME_MAX, less what may be appended


def _fitting(name: str) -> str:
    """``name`` cut to fit a file system's 255-byte names with what may be appended to it (a
    landing name may already be 255 bytes long); a hash of the whole name keeps it unique."""
    raw = os.fsencode(name)
    if len(raw) <= _NAME_ROOM:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:12].encode()
    return os.fsdecode(raw[: _NAME_ROOM - len(digest) - 1] + b"~" + digest)


def _move(
    uri: str,
    folder: str,
    batch_id: int | None,
    endpoint: str | None,
    reason: str | None,
    root: str | None,
) -> tuple[str | None, str | None]:
    """(where ``uri`` went, None), or (None, why it could not be moved): refused, recorded."""
    try:
        return move_aside(uri, folder, batch_id, endpoint, reason, root=root), None
    except (OSError, ValueError) as exc:
        problem = storage.printable(f"not moved to {folder}/: {exc}")
        log.error("%s: %s", _shown(uri), problem)
        return None, problem


@overload
def _shown(uri: str) -> str: ...
@overload
def _shown(uri: None) -> None: ...
@overload
def _shown(uri: str | None) -> str | None: ...
def _shown(uri: str | None) -> str | None:
    """A URI as recorded and reported: printable, whatever bytes its name holds."""
    return None if uri is None else storage.printable(uri)
