"""Landing-file readers: JSONL, CSV, Parquet and Fakeddit TSV into rows of raw fields.

A reader never judges a row's content (that is :mod:`fnd_core.landing.rows`); it only splits the
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
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fnd_core.landing import storage

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
_CSV_FIELD_LIMIT = 64 * 1024 * 1024  # so an over-long text is judged by rows.py, not csv


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


@dataclass(frozen=True)
class LandingFile:
    """A read landing file: its format, identity (content hash) and rows."""

    uri: str
    format: str
    folder: str
    content_sha256: str
    size_bytes: int
    rows: list[RawRow]

    @property
    def source(self) -> str:
        """``<format>:<file name>``, the value of ``posts.source``."""
        return f"{self.format}:{storage.basename(self.uri)}"


def detect_format(uri: str) -> str:
    """The landing format from the file's extension (case-insensitive)."""
    name = storage.basename(uri).lower()
    for suffix, fmt in FORMATS_BY_SUFFIX.items():
        if name.endswith(suffix):
            return fmt
    known = ", ".join(FORMATS_BY_SUFFIX)
    raise UnreadableFileError(f"unknown file type {name!r}: expected one of {known}")


def read_landing_file(uri: str, *, gcs_endpoint: str | None = None) -> LandingFile:
    """Read a landing file (local path or ``gs://`` URI) into rows.

    Raises:
        UnreadableFileError: unknown extension, empty file, no header or required columns
            missing, not a Parquet file.
        FileNotFoundError: there is no such file.
    """
    fmt = detect_format(uri)
    data = storage.read_bytes(uri, gcs_endpoint=gcs_endpoint)
    folder = storage.parent(uri)
    image_dir = _fakeddit_image_dir(folder, gcs_endpoint) if fmt == "fakeddit" else ""
    rows = parse_landing_bytes(data, fmt, fakeddit_image_dir=image_dir)
    return LandingFile(
        uri=uri,
        format=fmt,
        folder=folder,
        content_sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        rows=rows,
    )


def parse_landing_bytes(
    data: bytes, fmt: str, *, fakeddit_image_dir: str = "images"
) -> list[RawRow]:
    """Split a file's bytes into rows (the I/O-free part of :func:`read_landing_file`)."""
    if not data.strip():
        raise UnreadableFileError(f"file is empty ({len(data)} bytes)")
    if fmt == "jsonl":
        return list(_jsonl_rows(data))
    if fmt == "csv":
        return list(_delimited_rows(data, ",", _csv_fields, _check_columns))
    if fmt == "fakeddit":

        def fields(record: dict[str, str]) -> dict[str, Any]:
            return _fakeddit_fields(record, fakeddit_image_dir)

        return list(_delimited_rows(data, "\t", fields, _check_fakeddit_header))
    if fmt == "parquet":
        return list(_parquet_rows(data))
    raise UnreadableFileError(f"unknown format {fmt!r}")


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
def _jsonl_rows(data: bytes) -> Iterator[RawRow]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, line in enumerate(data.split(b"\n"), start=1):
        line = line.removesuffix(b"\r")
        if not line.strip():
            continue
        yield _jsonl_row(number, line)


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


def _delimited_rows(data: bytes, delimiter: str, to_fields, check_header) -> Iterator[RawRow]:
    """CSV-like rows with their verbatim text; wrong column counts become row errors."""
    try:
        text, invalid_utf8 = data.decode("utf-8"), False
    except UnicodeDecodeError:
        text, invalid_utf8 = data.decode("utf-8", "surrogateescape"), True
    text = text.removeprefix(_BOM)
    consumed: list[str] = []
    reader = csv.reader(_recording(io.StringIO(text, newline=""), consumed), delimiter=delimiter)
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
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
            yield RawRow(number, _storable_text("".join(consumed)), None, f"bad CSV: {exc}",
                         "parse_error")  # fmt: skip
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
        if invalid_utf8 and _has_surrogates(raw_text):
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


def _recording(lines: Iterator[str], consumed: list[str]) -> Iterator[str]:
    """Yield lines to csv.reader while recording them, to rebuild each record's raw text."""
    for line in lines:
        consumed.append(line)
        yield line


# Parquet -------------------------------------------------------------------------------------
def _parquet_rows(data: bytes) -> Iterator[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UnreadableFileError(f"not a readable Parquet file: {exc}") from exc
    _check_columns(table.column_names)
    for number, record in enumerate(table.to_pylist(), start=1):
        record = {k: _nan_to_none(v) for k, v in record.items()}
        raw = json.dumps(record, ensure_ascii=False, default=str)
        yield RawRow(number, _storable_text(raw), _canonical(record))


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
