"""Landing files: identify one (format, content hash, size), then stream its rows.

This is where a landing file is opened: its format comes from its extension, its bytes are
hashed (the batch's identity) and its header checked before any row is looked at, and once its
rows have been streamed the second read is checked against the hash. The rows themselves come
from the format readers: :mod:`~fnd_core.ingest.text_readers` (JSONL, CSV, Fakeddit TSV) and
:mod:`~fnd_core.ingest.parquet_reader`, all producing the one shape of
:mod:`~fnd_core.ingest.raw_rows`.

A reader never judges a row's content (that is :mod:`fnd_core.ingest.rows`); it only splits the
file into rows, measures each (byte offset, length, sha256, and an excerpt kept for the
quarantine: the whole row stays in the file), and maps the format's columns onto one shape:
``id``, ``text``, ``image``, ``created_utc``, ``label`` and ``extra``. A row it cannot parse (a
broken JSON line, invalid UTF-8, a CSV row with the wrong number of columns) becomes a
:class:`RawRow` with an ``error``: one bad row never sinks the file. Only a file that cannot be
read as a whole raises :class:`UnreadableFileError`.

``raw`` is the start of the row as received (``FND_QUARANTINE_EXCERPT_BYTES``), made storable in
Postgres ``text``: invalid UTF-8 bytes appear as ``\\xNN`` escapes and NUL bytes as ``\\x00``.
Landing files are opened only if they are regular files themselves (never through a link).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Generator, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from fnd_core.ingest.parquet_reader import parquet_rows
from fnd_core.ingest.raw_rows import BLOCK_BYTES, RawRow, RowLimits, UnreadableFileError
from fnd_core.ingest.text_readers import iter_rows
from fnd_core.io import localfs, storage

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "FAKEDDIT_IMAGE_DIRS",
    "FORMATS_BY_SUFFIX",
    "FileChangedError",
    "LandingFile",
    "RawRow",
    "RowLimits",
    "UnreadableFileError",
    "content_sha256",
    "detect_format",
    "file_kind",
    "parse_landing_bytes",
    "read_landing_file",
    "refusal",
]

FORMATS_BY_SUFFIX = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".tsv": "fakeddit",
}
FAKEDDIT_IMAGE_DIRS = ("images", "public_image_set")
LABEL_FORMATS = ("jsonl", "csv")  # a label file: post_id, label, source, labelled_at
LABELS_FOLDER = "labels"  # label files land in <landing>/labels/


class FileChangedError(RuntimeError):
    """The file's bytes changed while it was read (still being written, or replaced).

    Nothing read from it may be kept: the rows read no longer match the content hash that
    identifies the batch. The file stays where it is for the next run.
    """


@dataclass(frozen=True)
class LandingFile:
    """A landing file's identity (content hash, size, format); its rows are streamed.

    The file is read twice, never held whole: :func:`read_landing_file` hashes it, then
    :meth:`iter_rows` parses it block by block (JSONL and CSV by line, Parquet by record
    batch) and checks, once the last row is read, that the bytes were the ones hashed.
    """

    uri: str
    format: str
    folder: str
    content_sha256: str
    size_bytes: int
    fakeddit_image_dir: str = FAKEDDIT_IMAGE_DIRS[0]
    gcs_endpoint: str | None = None
    limits: RowLimits = RowLimits()

    @property
    def source(self) -> str:
        """``<format>:<file name>``, the value of ``posts.source`` (printable: a name's bytes
        that are not UTF-8 as ``\\xNN``)."""
        return f"{self.format}:{storage.printable(storage.basename(self.uri))}"

    def iter_rows(self) -> Iterator[RawRow]:
        """The rows, streamed; raises :class:`FileChangedError` at the end if the bytes moved.

        Raises:
            UnreadableFileError: a header or Parquet footer that cannot be used (on the first
                row asked for).
        """
        with _open(self.uri, self.gcs_endpoint) as f:
            if self.format == "parquet":
                yield from parquet_rows(f, self.limits)
                f.seek(0)
                digest, size, _ = _digest(f)
            else:
                hashing = _HashingReader(f)
                buffered = io.BufferedReader(hashing, BLOCK_BYTES)
                yield from iter_rows(buffered, self.format, self.fakeddit_image_dir, self.limits)
                digest, size = hashing.finish()
        if (digest, size) != (self.content_sha256, self.size_bytes):
            raise FileChangedError(
                f"{self.uri} changed while it was read ({self.size_bytes} bytes hashed, "
                f"{size} read): left in place for the next run"
            )

    @property
    def rows(self) -> list[RawRow]:
        """Every row in a list: for small files and tests (ingest streams :meth:`iter_rows`)."""
        return list(self.iter_rows())


def detect_format(uri: str, kind: str = "posts") -> str:
    """The landing format from the file's extension (case-insensitive); a label file's
    (``kind="labels"``: JSONL or CSV only) is ``labels-jsonl`` or ``labels-csv``."""
    name = storage.basename(uri).lower()
    suffixes = {s: f for s, f in FORMATS_BY_SUFFIX.items()
                if kind == "posts" or f in LABEL_FORMATS}  # fmt: skip
    for suffix, fmt in suffixes.items():
        if name.endswith(suffix):
            return fmt if kind == "posts" else f"labels-{fmt}"
    known = ", ".join(suffixes)
    what = "label file" if kind == "labels" else "file"
    raise UnreadableFileError(f"unknown {what} type {name!r}: expected one of {known}")


def file_kind(uri: str) -> str:
    """``labels`` for a file in a ``labels/`` folder (fact-checkers' labels), else ``posts``."""
    return "labels" if storage.basename(storage.parent(uri)) == LABELS_FOLDER else "posts"


def read_landing_file(
    uri: str,
    *,
    gcs_endpoint: str | None = None,
    limits: RowLimits | None = None,
    kind: str = "posts",
) -> LandingFile:
    """Hash a landing file (local path or ``gs://`` URI) and check its header; rows come later.

    Memory stays flat whatever the file's size: the bytes are hashed in blocks, and the
    header (CSV, TSV) or footer (Parquet) is checked now, so a file refused as a whole is
    refused before any row is looked at.

    ``kind``: ``posts`` (a post file) or ``labels`` (a label file).

    Raises:
        UnreadableFileError: unknown extension, empty file, no header or required columns
            missing, not a Parquet file.
        FileNotFoundError: there is no such file.
    """
    fmt = detect_format(uri, kind)
    with _open(uri, gcs_endpoint) as f:
        digest, size, blank = _digest(f)
    if blank:
        raise UnreadableFileError(f"file is empty ({size} bytes)")
    folder = storage.parent(uri)
    landing = LandingFile(
        uri=uri,
        format=fmt,
        folder=folder,
        content_sha256=digest,
        size_bytes=size,
        fakeddit_image_dir=_fakeddit_image_dir(folder, gcs_endpoint) if fmt == "fakeddit"
        else FAKEDDIT_IMAGE_DIRS[0],
        gcs_endpoint=gcs_endpoint,
        limits=limits or RowLimits(),
    )  # fmt: skip
    if not fmt.endswith("jsonl"):  # parse the header (or footer) and at most one row, then stop
        probe = _rows_of(landing)
        next(probe, None)
        probe.close()
    return landing


def refusal(uri: str, *, max_bytes: int, gcs_endpoint: str | None = None) -> str | None:
    """Why ``uri`` must not be read at all (checked without opening it), or None.

    A landing "file" may be a device, a FIFO, a folder, a link or a file too big to be a
    batch: reading ``/dev/zero`` never ends, a link may point out of the landing zone, loop or
    point nowhere. None is followed or opened (``lstat`` only); each is set aside as itself.
    """
    if storage.is_local(uri):
        info = os.lstat(storage.local_path(uri))
        if stat.S_ISLNK(info.st_mode):
            return "a symbolic link: links in the landing zone are never followed"
        if not stat.S_ISREG(info.st_mode):
            kind = localfs.kind_of(info.st_mode)
            return f"not a regular file (a {kind}: a device, pipe or folder is never read)"
        size = info.st_size
    else:
        fs, path = storage.filesystem(uri, gcs_endpoint=gcs_endpoint)
        size = fs.size(path)
    if size is not None and size > max_bytes:
        return f"{size} bytes, over FND_MAX_LANDING_BYTES ({max_bytes}): not read"
    return None


def content_sha256(uri: str, *, gcs_endpoint: str | None = None) -> str:
    """sha256 of a file's bytes, read in blocks."""
    with _open(uri, gcs_endpoint) as f:
        return _digest(f)[0]


def _rows_of(landing: LandingFile) -> Generator[RawRow, None, None]:
    """The rows without the final content check (for a probe that stops early)."""
    with _open(landing.uri, landing.gcs_endpoint) as f:
        if landing.format == "parquet":
            yield from parquet_rows(f, landing.limits)
        else:
            yield from iter_rows(f, landing.format, landing.fakeddit_image_dir, landing.limits)


def _open(uri: str, gcs_endpoint: str | None) -> AbstractContextManager[IO[bytes]]:
    """A landing file opened for reading: locally only a regular file itself, never a link."""
    return storage.open_read(uri, gcs_endpoint=gcs_endpoint, regular_only=True)


def parse_landing_bytes(
    data: bytes, fmt: str, *, fakeddit_image_dir: str = "images"
) -> list[RawRow]:
    """Split a file's bytes into rows (the I/O-free form of :meth:`LandingFile.iter_rows`)."""
    if not data.strip():
        raise UnreadableFileError(f"file is empty ({len(data)} bytes)")
    if fmt == "parquet":
        return list(parquet_rows(io.BytesIO(data)))
    return list(iter_rows(io.BytesIO(data), fmt, fakeddit_image_dir))


class _HashingReader(io.RawIOBase):
    """A read-only stream that hashes what passes through it (to check a second read)."""

    def __init__(self, inner: IO[bytes]) -> None:
        super().__init__()
        self._inner, self._sha, self._size = inner, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer)
        data = self._inner.read(len(view))
        view[: len(data)] = data
        self._sha.update(data)
        self._size += len(data)
        return len(data)

    def finish(self) -> tuple[str, int]:
        """Hash whatever the parser left unread, then the digest and the size seen."""
        while block := self._inner.read(BLOCK_BYTES):
            self._sha.update(block)
            self._size += len(block)
        return self._sha.hexdigest(), self._size


def _digest(stream: IO[bytes]) -> tuple[str, int, bool]:
    """sha256, size and whether every byte is whitespace, read block by block."""
    sha, size, blank = hashlib.sha256(), 0, True
    while block := stream.read(BLOCK_BYTES):
        sha.update(block)
        size += len(block)
        blank = blank and not block.strip()
    return sha.hexdigest(), size, blank


def _fakeddit_image_dir(folder: str, gcs_endpoint: str | None) -> str:
    """``images/`` beside the TSV, else Fakeddit's own ``public_image_set/``."""
    for name in FAKEDDIT_IMAGE_DIRS:
        if storage.is_dir(storage.join(folder, name), gcs_endpoint=gcs_endpoint):
            return name
    return FAKEDDIT_IMAGE_DIRS[0]
