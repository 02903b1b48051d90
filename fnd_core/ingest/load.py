"""Ingest one landed file into Postgres: read → check rows → validate (GX) → load → archive.

Nothing is lost and nothing lands twice:
- every row read ends up in ``fnd.posts`` (accepted), ``fnd.quarantine`` (with its rule and
  reason) or counted as a duplicate (its post_id was already loaded);
- the file's content hash is unique in ``fnd.ingest_batches``: the same bytes again are a no-op;
- the batch, its posts, its quarantine and its validation run are written in one transaction;
- a file that cannot be parsed, or whose quarantined share passes the threshold, is recorded
  as failed with its reason and moved to ``failed/``; loaded files move to ``archive/``.

Duplicates and labels: a post already loaded is never inserted again and its text and image
never change. A label, though, may arrive later or be corrected: in a label file (``fnd
label``, ``labels/`` in the landing zone; :mod:`~fnd_core.ingest.label_load`), or in a
duplicate post row whose label differs. Either way it is appended to ``fnd.labels`` and
``posts.label`` derived again (:mod:`~fnd_core.ingest.label_store`); the number of posts whose
label changed is reported as ``n_labels_updated``.

This module is the entry point: which files wait in landing (:func:`list_new_files`), which
paths ingest may touch at all (:func:`allowed_landing_path`), and :func:`ingest_file`, which
takes one file through its steps. The steps have their own modules: the load transaction in
:mod:`~fnd_core.ingest.staging`, the batch bookkeeping, archive and ``failed/`` moves and the
report in :mod:`~fnd_core.ingest.batches`.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

import psycopg2
import sqlalchemy as sa

from fnd_core.ingest.batches import (
    BatchRejectedError,
    IngestReport,
    find_batch,
    finish_batch,
    refuse_unreadable,
    resume,
    skip_seen,
)
from fnd_core.ingest.staging import load_batch
from fnd_core.io import localfs, storage
from fnd_core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "BatchRejectedError",
    "IngestReport",
    "PathNotAllowedError",
    "allowed_landing_path",
    "ingest_file",
    "landing_root",
    "list_new_files",
    "settled_files",
    "waiting_files",
]

log = logging.getLogger(__name__)
# Faults of the database, not of a file (COPY goes through psycopg2 directly, unwrapped).
_NOT_THE_FILES = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError,
                  psycopg2.OperationalError, psycopg2.InterfaceError)  # fmt: skip


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
    """The entries waiting at ``path``: the path itself if it is not a folder, else the
    folder's entries (sub-folders and hidden ``.*`` names excepted).

    Every other entry is listed, whatever it is: a link (looping, dangling or not), a FIFO, a
    socket or a device is never followed or opened here (``lstat`` only), and
    :func:`ingest_file` sets it aside, recorded, into ``failed/``. Sub-folders (``archive/``,
    ``failed/``, ``images/``) are not looked into. Files still being written are left for the
    next run: a local file modified within the last ``FND_LANDING_SETTLE_SECONDS`` is looked
    at again once that window has passed, and taken only if its size and modification time
    did not move. A ``gs://`` object only appears once its upload is complete.
    """
    endpoint = settings.gcs_endpoint
    if storage.is_local(path):
        local = storage.local_path(path)
        kind = localfs.entry_kind(local) if os.path.lexists(local) else None
        if kind is None:
            return []
        if kind != "folder" and not (kind == "symlink" and os.path.isdir(local)):
            return settled_files([path], settings.landing_settle_seconds)
    elif storage.exists(path, gcs_endpoint=endpoint) and not storage.is_dir(
        path, gcs_endpoint=endpoint
    ):
        return [path]
    files = [uri for uri, _ in storage.list_entries(path, gcs_endpoint=endpoint)]
    return settled_files(files, settings.landing_settle_seconds)


def waiting_files(path: str, settings: Settings) -> list[str]:
    """The entries waiting at ``path`` (:func:`list_new_files`), then those of its ``labels/``
    folder (fact-checkers' label files) when it has one: a real folder, never a link."""
    from fnd_core.ingest.readers import LABELS_FOLDER

    files = list_new_files(path, settings)
    labels = storage.join(path, LABELS_FOLDER)
    if storage.is_local(labels):
        local = storage.local_path(labels)
        if not (os.path.lexists(local) and localfs.entry_kind(local) == "folder"):
            return files
    elif not storage.is_dir(labels, gcs_endpoint=settings.gcs_endpoint):
        return files
    return files + list_new_files(labels, settings)


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
            log.info("%s is still being written: left for the next run", storage.printable(uri))
            continue
        settled.append(uri)
    return settled


def _stat(uri: str) -> tuple[int, float] | None:
    """Size and mtime of the entry itself (a link's own, never its target's)."""
    try:
        info = os.lstat(storage.local_path(uri))
    except FileNotFoundError:
        return None
    return info.st_size, info.st_mtime


def landing_root(uri: str, settings: Settings) -> str:
    """The root below which no link is followed when ``uri`` is moved aside: the landing zone
    (or the ``FND_LANDING_ROOTS`` root) holding it, as written, else the file's own folder."""
    roots = [settings.landing, *(r.strip() for r in settings.landing_roots.split(",") if r.strip())]
    for root in roots:
        if storage.is_local(root) and storage.is_within(uri, root, resolve_links=False):
            return root
    return storage.parent(uri)


def ingest_file(
    engine: Engine,
    uri: str,
    settings: Settings,
    *,
    run_id: str = "cli",
    fail_share: float | None = None,
    kind: str | None = None,
) -> IngestReport:
    """Ingest one file end to end; raises :class:`BatchRejectedError` if it is set aside.

    ``kind``: ``posts`` or ``labels`` (a label file: :mod:`~fnd_core.ingest.label_load`); by
    default a file in a ``labels/`` folder is a label file, any other a post file.

    Memory stays flat with the file's size: rows are streamed in chunks of ``CHUNK_ROWS``
    (:mod:`~fnd_core.ingest.staging`); each chunk is checked, its accepted posts COPYed into a
    staging table and its bad rows into the quarantine, all in the batch's one transaction;
    only a few small columns per row are kept for the GX suite.

    Whatever goes wrong with this one file (its parser, a decoder, COPY refusing a value) sets
    it aside: recorded as a failed batch with the error, moved to ``failed/``, raised as
    :class:`BatchRejectedError`; the next file is not affected. Only faults that are not the
    file's (the database unreachable) propagate, for the caller to retry.

    Raises:
        BatchRejectedError: the file was set aside (or loaded but could not be moved).
        FileChangedError: the file changed while it was read; nothing was written.
    """
    from fnd_core.ingest.readers import FileChangedError, content_sha256, file_kind

    started, endpoint = time.perf_counter(), settings.gcs_endpoint
    root = landing_root(uri, settings)
    kind = kind or file_kind(uri)
    if kind not in ("posts", "labels"):
        raise ValueError(f"kind must be posts or labels, not {kind!r}")
    try:
        return _ingest(engine, uri, settings, run_id, fail_share, started, root, kind)
    except (BatchRejectedError, FileChangedError, FileNotFoundError):
        raise
    except _NOT_THE_FILES:
        raise  # the database, not the file: the task is retried
    except Exception as exc:  # noqa: BLE001 — any fault of this one file sets it aside
        if not storage.lexists(uri, gcs_endpoint=endpoint):
            raise  # already moved: nothing left to set aside (a retry resumes the batch)
        try:
            sha = content_sha256(uri, gcs_endpoint=endpoint)
        except Exception:  # noqa: BLE001 — unreadable too: recorded without a hash
            sha = None
        committed = sha is not None and (find_batch(engine, sha) or (0, ""))[1] == "loaded"
        if committed:
            raise  # its load committed: a retry resumes it (fnd_core.ingest.batches.resume)
        log.exception("%s: set aside after %s", storage.printable(uri), type(exc).__name__)
        reason = f"{type(exc).__name__}: {storage.printable(str(exc))[:500]}"
        return refuse_unreadable(engine, uri, sha, reason, run_id, endpoint, started, root)


def _ingest(
    engine: Engine,
    uri: str,
    settings: Settings,
    run_id: str,
    fail_share: float | None,
    started: float,
    root: str,
    kind: str,
) -> IngestReport:
    from fnd_core.ingest.label_load import load_label_batch
    from fnd_core.ingest.readers import (
        RowLimits,
        UnreadableFileError,
        content_sha256,
        read_landing_file,
        refusal,
    )

    endpoint = settings.gcs_endpoint
    limits = RowLimits(settings.max_row_bytes, settings.quarantine_excerpt_bytes)
    try:
        refused = refusal(uri, max_bytes=settings.max_landing_bytes, gcs_endpoint=endpoint)
        if refused:  # moved to failed/ unread: no content hash
            return refuse_unreadable(engine, uri, None, refused, run_id, endpoint, started, root)
        landing = read_landing_file(uri, gcs_endpoint=endpoint, limits=limits, kind=kind)
    except UnreadableFileError as exc:
        sha = content_sha256(uri, gcs_endpoint=endpoint)
        return refuse_unreadable(engine, uri, sha, exc.reason, run_id, endpoint, started, root)
    except FileNotFoundError:
        resumed = resume(engine, uri, run_id, None, endpoint, started, root)
        if resumed is None:
            raise
        return resumed  # a retry after this run's first try had loaded and moved the file

    previous = find_batch(engine, landing.content_sha256)
    if previous is not None:
        resumed = resume(engine, uri, run_id, landing.content_sha256, endpoint, started, root)
        if resumed is not None:
            return resumed  # a retry after this run's first try had loaded the file
        return skip_seen(uri, landing, previous, endpoint, started, root)

    log.info("%s: %s, %d bytes: checking rows", storage.printable(uri), landing.format,
             landing.size_bytes)  # fmt: skip
    threshold = settings.quarantine_fail_share if fail_share is None else fail_share
    load = load_label_batch if kind == "labels" else load_batch
    try:
        with engine.begin() as conn:
            outcome = load(conn, landing, settings, run_id, threshold)
    except UnreadableFileError as exc:  # e.g. Parquet data broken after the footer was read
        return refuse_unreadable(
            engine, uri, landing.content_sha256, exc.reason, run_id, endpoint, started, root
        )
    except sa.exc.IntegrityError as exc:
        if "ingest_batches_content_is_unique" not in str(exc):
            raise
        # Another worker loaded the same bytes between our look-up and our insert.
        previous = find_batch(engine, landing.content_sha256)
        if previous is None:  # the conflicting batch is gone again (deleted): not a repeat
            raise
        return skip_seen(uri, landing, previous, endpoint, started, root)
    return finish_batch(engine, landing, outcome, endpoint, started, root)
