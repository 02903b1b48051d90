"""The line-based landing formats, streamed: JSONL, CSV and Fakeddit TSV into raw rows.

These readers share one way of reading: line by line from a byte stream, with a cap on how
much one line (or CSV field) may hold, and every row kept verbatim for the quarantine. A row
they cannot split (a broken JSON line, invalid UTF-8, a CSV row with the wrong number of
columns, an over-long line) becomes a :class:`~fnd_core.ingest.raw_rows.RawRow` with an error;
only a header that cannot be used raises :class:`~fnd_core.ingest.raw_rows.UnreadableFileError`.
Parquet, read by record batch, is :mod:`~fnd_core.ingest.parquet_reader`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from fnd_core.ingest.raw_rows import (
    BLOCK_BYTES,
    RAW_KEPT,
    RawRow,
    UnreadableFileError,
    blank,
    canonical_fields,
    check_columns,
    has_surrogates,
    invalid_utf8_row,
    storable_bytes,
    storable_text,
)

_FAKEDDIT_NUMERIC = ("score", "num_comments", "upvote_ratio", "3_way_label", "6_way_label")
_FAKEDDIT_LABELS = {"0": 1, "1": 0, "0.0": 1, "1.0": 0}  # Fakeddit 0 = fake -> ours 1 = fake
# One JSONL line or CSV field may hold this much; a longer one is a row error, read but not
# held. Well above any text limit, so an over-long text is still judged by the row checks.
MAX_ROW_BYTES = 16 * 1024 * 1024


def iter_rows(stream: IO[bytes], fmt: str, fakeddit_image_dir: str = "images") -> Iterator[RawRow]:
    """Rows of a line-based format (``jsonl``, ``csv``, ``fakeddit``) read from ``stream``."""
    if fmt == "jsonl":
        return _jsonl_rows(stream)
    if fmt == "csv":
        return _delimited_rows(stream, ",", _csv_fields, check_columns)
    if fmt == "fakeddit":

        def fields(record: dict[str, str]) -> dict[str, Any]:
            return _fakeddit_fields(record, fakeddit_image_dir)

        return _delimited_rows(stream, "\t", fields, _check_fakeddit_header)
    raise UnreadableFileError(f"unknown format {fmt!r}")


# Field mapping -----------------------------------------------------------------------------
def _csv_fields(record: dict[str, str]) -> dict[str, Any]:
    return canonical_fields(record)


def _fakeddit_fields(record: dict[str, str], image_dir: str) -> dict[str, Any]:
    """Fakeddit columns -> canonical fields: text = clean_title or title, label inverted."""
    post_id = (record.get("id") or "").strip()
    clean_title, title = record.get("clean_title"), record.get("title")
    text = clean_title if not blank(clean_title) else title
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


# JSONL ---------------------------------------------------------------------------------------
def _jsonl_rows(stream: IO[bytes]) -> Iterator[RawRow]:
    """One row per line, read with a cap: a line over ``MAX_ROW_BYTES`` is a row error."""
    for number, line in enumerate(_capped_lines(stream), start=1):
        if isinstance(line, _Overlong):
            yield RawRow(number, storable_bytes(line.head, True), None,
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
        while rest := stream.readline(BLOCK_BYTES):
            size += len(rest)
            if rest.endswith(b"\n"):
                break
        yield _Overlong(line[:RAW_KEPT], size)


def _jsonl_row(number: int, line: bytes) -> RawRow:
    try:
        text, invalid_utf8 = line.decode("utf-8"), False
    except UnicodeDecodeError:
        text, invalid_utf8 = line.decode("utf-8", "surrogateescape"), True
    raw = storable_bytes(line, invalid_utf8)
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
    fields = canonical_fields(record)
    if invalid_utf8:
        return invalid_utf8_row(number, raw, fields)
    return RawRow(number, raw, fields)


# CSV / TSV -----------------------------------------------------------------------------------
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
            raw = storable_text("".join(consumed))
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
        raw = storable_text(raw_text)
        if len(record) != len(header):
            error = (
                f"expected {len(header)} columns ({', '.join(header[:8])}"
                f"{', ...' if len(header) > 8 else ''}), got {len(record)}"
            )
            yield RawRow(number, raw, None, error, "column_count_mismatch")
            continue
        fields = to_fields(dict(zip(header, record, strict=True)))
        if has_surrogates(raw_text):
            yield invalid_utf8_row(number, raw, fields)
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
    if has_surrogates("".join(consumed)):
        raise UnreadableFileError("header is not valid UTF-8")
    duplicates = sorted({n for n in header if header.count(n) > 1 and n})
    if duplicates:
        raise UnreadableFileError(f"duplicate column name(s) in header: {duplicates}")
    return header


def _recording(text: io.TextIOBase, consumed: list[str]) -> Iterator[str]:
    """Yield capped lines to csv.reader, recording them to rebuild each record's raw text."""
    while line := text.readline(MAX_ROW_BYTES):
        if sum(map(len, consumed)) < RAW_KEPT:  # a record's raw text is kept up to a cap
            consumed.append(line)
        yield line
