"""Landing-file readers: JSONL, CSV, Parquet and Fakeddit TSV into rows of raw fields.

A reader never judges a row's content (that is :mod:`fnd_core.ingest.rows`); it only splits the
file into rows, keeps each row verbatim for the quarantine, and maps the format's columns onto
one shape: ``id``, ``text``, ``image``, ``created_utc``, ``label`` and ``extra``. A row it cannot
parse (a broken JSON line, invalid UTF-8, a CSV row with the wrong number of columns) becomes a
:class:`RawRow` with an ``error``: one bad row never sinks the file. Only a file that cannot be
read as a whole raises :class:`UnreadableFileError`.

``raw`` is the row as received, made storable in Postgres ``text``: invalid UTF-8 bytes appear
as ``\\xNN`` escapes and NUL bytes as ``\\x00``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from fnd_core.io import storage

FORMATS_BY_SUFFIX = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".tsv": "fakeddit",
}
# Canonical field names every reader produces; everything else goes to ``extra``.
CANONICAL_FIELDS = ("id", "text", "image", "created_utc", "label")
_CONSUMED = frozenset(CANONICAL_FIELDS) | {"title"}
FAKEDDIT_IMAGE_DIRS = ("images", "public_image_set")
_FAKEDDIT_NUMERIC = ("score", "num_comments", "upvote_ratio", "3_way_label", "6_way_label")
_FAKEDDIT_LABELS = {"0": 1, "1": 0, "0.0": 1, "1.0": 0}  # Fakeddit 0 = fake -> ours 1 = fake
_BOM = "\ufeff"
_SURROGATE = re.compile("[\udc80-\udcff]")
# One JSONL line or CSV field may hold this much; a longer one is a row error, read but not
# held. Well above any text limit, so an over-long text is still judged by rows.py.
MAX_ROW_BYTES = 16 * 1024 * 1024
_RAW_KEPT = 1024 * 1024  # a row's raw text kept for the quarantine, at most
_BLOCK = 1024 * 1024
_PARQUET_BATCH_ROWS = 4096


class UnreadableFileError(ValueError):
    """The file as a whole cannot be read (it goes to ``failed/`` with ``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RawRow:
    """One row as read.

    Attributes:
        row_number: 1-based; the line number for JSONL, the data-row number (header
            excluded) for CSV, TSV and Parquet.
        raw: the row verbatim (line, CSV record text, or the Parquet row as JSON).
        fields: canonical fields (see module doc) when the row could be split, else None.
        error: why the row cannot be used, when it cannot.
        error_rule: the stable rule code of ``error`` (``parse_error``, ``invalid_utf8``...).
    """

    row_number: int
    raw: str
    fields: dict[str, Any] | None
    error: str | None = None
    error_rule: str | None = None


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

    @property
    def source(self) -> str:
        """``<format>:<file name>``, the value of ``posts.source``."""
        return f"{self.format}:{storage.basename(self.uri)}"

    def iter_rows(self) -> Iterator[RawRow]:
        """The rows, streamed; raises :class:`FileChangedError` at the end if the bytes moved.

        Raises:
            UnreadableFileError: a header or Parquet footer that cannot be used (on the first
                row asked for).
        """
        with storage.open_read(self.uri, gcs_endpoint=self.gcs_endpoint) as f:
            if self.format == "parquet":
                yield from _parquet_rows(f)
                f.seek(0)
                digest, size, _ = _digest(f)
            else:
                hashing = _HashingReader(f)
                buffered = io.BufferedReader(hashing, _BLOCK)
                yield from iter_rows(buffered, self.format, self.fakeddit_image_dir)
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


def detect_format(uri: str) -> str:
    """The landing format from the file's extension (case-insensitive)."""
    name = storage.basename(uri).lower()
    for suffix, fmt in FORMATS_BY_SUFFIX.items():
        if name.endswith(suffix):
            return fmt
    known = ", ".join(FORMATS_BY_SUFFIX)
    raise UnreadableFileError(f"unknown file type {name!r}: expected one of {known}")


def read_landing_file(uri: str, *, gcs_endpoint: str | None = None) -> LandingFile:
    """Hash a landing file (local path or ``gs://`` URI) and check its header; rows come later.

    Memory stays flat whatever the file's size: the bytes are hashed in blocks, and the
    header (CSV, TSV) or footer (Parquet) is checked now, so a file refused as a whole is
    refused before any row is looked at.

    Raises:
        UnreadableFileError: unknown extension, empty file, no header or required columns
            missing, not a Parquet file.
        FileNotFoundError: there is no such file.
    """
    fmt = detect_format(uri)
    with storage.open_read(uri, gcs_endpoint=gcs_endpoint) as f:
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
    )  # fmt: skip
    if fmt != "jsonl":  # parse the header (or footer) and at most one row, then stop
        probe = _rows_of(landing)
        next(probe, None)
        probe.close()
    return landing


def refusal(uri: str, *, max_bytes: int, gcs_endpoint: str | None = None) -> str | None:
    """Why ``uri`` must not be read at all (checked without opening it), or None.

    A landing "file" may be a device, a FIFO, a folder, a link to somewhere else or a file
    too big to be a batch: reading ``/dev/zero`` never ends, and a link out of the landing
    folder would load another folder's data. Links are followed only within their folder.
    """
    if storage.is_local(uri):
        path = storage.local_path(uri)
        if not storage.is_within(path, storage.parent(path)):
            return "a link pointing outside the landing folder (not followed)"
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file (a device, pipe or folder is never read)"
        size = info.st_size
    else:
        fs, path = storage.filesystem(uri, gcs_endpoint=gcs_endpoint)
        size = fs.size(path)
    if size is not None and size > max_bytes:
        return f"{size} bytes, over FND_MAX_LANDING_BYTES ({max_bytes}): not read"
    return None


def content_sha256(uri: str, *, gcs_endpoint: str | None = None) -> str:
    """sha256 of a file's bytes, read in blocks."""
    with storage.open_read(uri, gcs_endpoint=gcs_endpoint) as f:
        return _digest(f)[0]


def _rows_of(landing: LandingFile) -> Iterator[RawRow]:
    """The rows without the final content check (for a probe that stops early)."""
    with storage.open_read(landing.uri, gcs_endpoint=landing.gcs_endpoint) as f:
        if landing.format == "parquet":
            yield from _parquet_rows(f)
        else:
            yield from iter_rows(f, landing.format, landing.fakeddit_image_dir)


def parse_landing_bytes(
    data: bytes, fmt: str, *, fakeddit_image_dir: str = "images"
) -> list[RawRow]:
    """Split a file's bytes into rows (the I/O-free form of :meth:`LandingFile.iter_rows`)."""
    if not data.strip():
        raise UnreadableFileError(f"file is empty ({len(data)} bytes)")
    if fmt == "parquet":
        return list(_parquet_rows(io.BytesIO(data)))
    return list(iter_rows(io.BytesIO(data), fmt, fakeddit_image_dir))


def iter_rows(stream: IO[bytes], fmt: str, fakeddit_image_dir: str = "images") -> Iterator[RawRow]:
    """Rows of a line-based format (``jsonl``, ``csv``, ``fakeddit``) read from ``stream``."""
    if fmt == "jsonl":
        return _jsonl_rows(stream)
    if fmt == "csv":
        return _delimited_rows(stream, ",", _csv_fields, _check_columns)
    if fmt == "fakeddit":

        def fields(record: dict[str, str]) -> dict[str, Any]:
            return _fakeddit_fields(record, fakeddit_image_dir)

        return _delimited_rows(stream, "\t", fields, _check_fakeddit_header)
    raise UnreadableFileError(f"unknown format {fmt!r}")


class _HashingReader(io.RawIOBase):
    """A read-only stream that hashes what passes through it (to check a second read)."""

    def __init__(self, inner: IO[bytes]) -> None:
        super().__init__()
        self._inner, self._sha, self._size = inner, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        self._sha.update(data)
        self._size += len(data)
        return len(data)

    def finish(self) -> tuple[str, int]:
        """Hash whatever the parser left unread, then the digest and the size seen."""
        while block := self._inner.read(_BLOCK):
            self._sha.update(block)
            self._size += len(block)
        return self._sha.hexdigest(), self._size


def _digest(stream: IO[bytes]) -> tuple[str, int, bool]:
    """sha256, size and whether every byte is whitespace, read block by block."""
    sha, size, blank = hashlib.sha256(), 0, True
    while block := stream.read(_BLOCK):
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


# Field mapping -----------------------------------------------------------------------------
def _canonical(record: dict[str, Any]) -> dict[str, Any]:
    """JSONL / CSV / Parquet columns -> canonical fields; ``title`` stands in for empty text."""
    fields = {name: record.get(name) for name in CANONICAL_FIELDS}
    extra = {k: v for k, v in record.items() if k not in _CONSUMED}
    title = record.get("title")
    if _blank(fields["text"]) and not _blank(title):
        fields["text"] = title
    elif "title" in record:
        extra["title"] = title
    fields["extra"] = extra
    return fields


def _csv_fields(record: dict[str, str]) -> dict[str, Any]:
    return _canonical(record)


def _fakeddit_fields(record: dict[str, str], image_dir: str) -> dict[str, Any]:
    """Fakeddit columns -> canonical fields: text = clean_title or title, label inverted."""
    post_id = (record.get("id") or "").strip()
    clean_title, title = record.get("clean_title"), record.get("title")
    text = clean_title if not _blank(clean_title) else title
    has_image = (record.get("hasImage") or "True").strip().lower() not in ("false", "0")
    raw_label = (record.get("2_way_label") or "").strip()
    extra: dict[str, Any] = {}
    for key, value in record.items():
        if key in ("id", "created_utc", "hasImage", "") or value in ("", None):
            continue
        if key == ("clean_title" if text is clean_title else "title"):
            continue
        extra[key] = _number(value) if key in _FAKEDDIT_NUMERIC else value
    return {
        "id": record.get("id"),
        "text": text,
        "image": f"{image_dir}/{post_id}.jpg" if post_id and has_image else None,
        "created_utc": record.get("created_utc"),
        "label": _FAKEDDIT_LABELS.get(raw_label, raw_label),
        "extra": extra,
    }


def _number(value: str) -> int | float | str:
    """A Fakeddit numeric column as a number when it is one (kept as text otherwise)."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# JSONL ---------------------------------------------------------------------------------------
def _jsonl_rows(stream: IO[bytes]) -> Iterator[RawRow]:
    """One row per line, read with a cap: a line over ``MAX_ROW_BYTES`` is a row error."""
    for number, line in enumerate(_capped_lines(stream), start=1):
        if isinstance(line, _Overlong):
            yield RawRow(number, _storable(line.head, True), None,
                         f"row is longer than {MAX_ROW_BYTES} bytes ({line.size} bytes)",
                         "row_too_long")  # fmt: skip
            continue
        if number == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")
        line = line.removesuffix(b"\n").removesuffix(b"\r")
        if not line.strip():
            continue
        yield _jsonl_row(number, line)


@dataclass(frozen=True)
class _Overlong:
    """Stands for a line longer than the cap: its first bytes and its full size."""

    head: bytes
    size: int


def _capped_lines(stream: IO[bytes]) -> Iterator[bytes | _Overlong]:
    """Lines of ``stream``; one longer than ``MAX_ROW_BYTES`` is read to its end, not held."""
    while line := stream.readline(MAX_ROW_BYTES + 1):
        if len(line) <= MAX_ROW_BYTES or line.endswith(b"\n"):
            yield line
            continue
        size = len(line)
        while rest := stream.readline(_BLOCK):
            size += len(rest)
            if rest.endswith(b"\n"):
                break
        yield _Overlong(line[:_RAW_KEPT], size)


def _jsonl_row(number: int, line: bytes) -> RawRow:
    try:
        text, invalid_utf8 = line.decode("utf-8"), False
    except UnicodeDecodeError:
        text, invalid_utf8 = line.decode("utf-8", "surrogateescape"), True
    raw = _storable(line, invalid_utf8)
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return RawRow(number, raw, None, f"invalid JSON: {exc}", "parse_error")
    except RecursionError:  # thousands of nested brackets: the parser's stack, not the file's
        return RawRow(number, raw, None, "invalid JSON: nested too deeply to parse",
                      "parse_error")  # fmt: skip
    if not isinstance(record, dict):
        kind = type(record).__name__
        return RawRow(number, raw, None, f"expected a JSON object, got {kind}", "parse_error")
    fields = _canonical(record)
    if invalid_utf8:
        return _invalid_utf8_row(number, raw, fields)
    return RawRow(number, raw, fields)


# CSV / TSV -----------------------------------------------------------------------------------
def _check_columns(header: list[str]) -> None:
    missing = [c for c in ("id", "image") if c not in header]
    if "text" not in header and "title" not in header:
        missing.append("text (or title)")
    if missing:
        raise UnreadableFileError(
            f"missing required column(s) {', '.join(missing)}; columns are {header[:20]}"
        )


def _check_fakeddit_header(header: list[str]) -> None:
    missing = [] if "id" in header else ["id"]
    if "clean_title" not in header and "title" not in header:
        missing.append("clean_title (or title)")
    if missing:
        raise UnreadableFileError(
            f"missing required Fakeddit column(s) {', '.join(missing)}; header is {header[:20]}"
        )


def _delimited_rows(stream: IO[bytes], delimiter: str, to_fields, check_header) -> Iterator[RawRow]:
    """CSV-like rows with their verbatim text; wrong column counts become row errors.

    The stream is decoded line by line (invalid bytes kept as surrogates, so only the row
    holding them is refused); a field longer than ``MAX_ROW_BYTES`` is a row error.
    """
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    consumed: list[str] = []
    reader = csv.reader(_recording(text, consumed), delimiter=delimiter)
    csv.field_size_limit(MAX_ROW_BYTES)
    try:
        yield from _records(reader, consumed, to_fields, check_header)
    finally:
        text.detach()  # the caller's stream stays open (it is hashed to its end)


def _records(reader, consumed: list[str], to_fields, check_header) -> Iterator[RawRow]:
    """The header check, then one :class:`RawRow` per record (``consumed``: its lines)."""
    header = _header(reader, consumed)
    check_header(header)
    number = 0
    while True:
        consumed.clear()
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            number += 1
            raw = _storable_text("".join(consumed))
            if "field larger than field limit" in str(exc):
                error = f"a field is longer than {MAX_ROW_BYTES} bytes"
                yield RawRow(number, raw, None, error, "row_too_long")
            else:
                yield RawRow(number, raw, None, f"bad CSV: {exc}", "parse_error")
            continue
        if not record:
            continue  # a blank line is no row
        number += 1
        raw_text = "".join(consumed).rstrip("\r\n")
        raw = _storable_text(raw_text)
        if len(record) != len(header):
            error = (
                f"expected {len(header)} columns ({', '.join(header[:8])}"
                f"{', ...' if len(header) > 8 else ''}), got {len(record)}"
            )
            yield RawRow(number, raw, None, error, "column_count_mismatch")
            continue
        fields = to_fields(dict(zip(header, record, strict=True)))
        if _has_surrogates(raw_text):
            yield _invalid_utf8_row(number, raw, fields)
            continue
        yield RawRow(number, raw, fields)


def _header(reader, consumed: list[str]) -> list[str]:
    """The first non-blank record, names stripped; duplicate or missing names are fatal."""
    try:
        for record in reader:
            if record:
                header = [name.strip() for name in record]
                break
        else:
            raise UnreadableFileError("no header row")
    except csv.Error as exc:
        raise UnreadableFileError(f"unreadable header: {exc}") from exc
    if _has_surrogates("".join(consumed)):
        raise UnreadableFileError("header is not valid UTF-8")
    duplicates = sorted({n for n in header if header.count(n) > 1 and n})
    if duplicates:
        raise UnreadableFileError(f"duplicate column name(s) in header: {duplicates}")
    return header


def _recording(text: io.TextIOBase, consumed: list[str]) -> Iterator[str]:
    """Yield capped lines to csv.reader, recording them to rebuild each record's raw text."""
    while line := text.readline(MAX_ROW_BYTES):
        if sum(map(len, consumed)) < _RAW_KEPT:  # a record's raw text is kept up to a cap
            consumed.append(line)
        yield line


# Parquet -------------------------------------------------------------------------------------
def _parquet_rows(stream: IO[bytes]) -> Iterator[RawRow]:
    """Rows of a Parquet file, one record batch at a time (never the whole table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UnreadableFileError(f"not a readable Parquet file: {exc}") from exc
    _check_columns(parquet.schema_arrow.names)
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            for record in batch.to_pylist():
                number += 1
                record = {k: _nan_to_none(v) for k, v in record.items()}
                raw = json.dumps(record, ensure_ascii=False, default=str)
                yield RawRow(number, _storable_text(raw), _canonical(record))
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFileError(f"Parquet data unreadable after row {number}: {exc}") from exc


def _nan_to_none(value: Any) -> Any:
    """Pandas writes missing numbers as NaN: treat them as absent."""
    return None if isinstance(value, float) and math.isnan(value) else value


# Encoding helpers ----------------------------------------------------------------------------
def _invalid_utf8_row(number: int, raw: str, fields: dict[str, Any]) -> RawRow:
    """A row holding invalid UTF-8: name the fields that do (``text`` gets its own rule)."""
    bad = [k for k, v in fields.items() if k != "extra" and _has_surrogates(v)]
    bad += [k for k, v in fields["extra"].items() if _has_surrogates(v) or _has_surrogates(k)]
    rule = "text_invalid_utf8" if "text" in bad else "invalid_utf8"
    where = f"field(s) {', '.join(bad)}" if bad else "the row"
    error = f"invalid UTF-8 bytes in {where} (shown as \\xNN escapes in raw)"
    return RawRow(number, raw, fields, error, rule)


def _has_surrogates(value: Any) -> bool:
    """Invalid bytes decoded with ``surrogateescape`` show up as lone surrogates."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogates(v) for v in value)
    return False


def _storable(line: bytes, invalid_utf8: bool) -> str:
    text = line.decode("utf-8", "backslashreplace") if invalid_utf8 else line.decode("utf-8")
    return text.replace("\x00", "\\x00")


def _storable_text(text: str) -> str:
    """Surrogate-escaped text -> printable ``\\xNN`` escapes; NUL -> ``\\x00``."""
    if _has_surrogates(text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("\x00", "\\x00")
