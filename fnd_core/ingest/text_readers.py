"""The line-based landing formats, streamed: JSONL, CSV and Fakeddit TSV into raw rows.

These readers share one way of reading: line by line from a byte stream, with a cap on how
much one line (or CSV field) may hold (``FND_MAX_ROW_BYTES``), and every row measured: its byte
offset, length and sha256, and an excerpt kept for the quarantine. A row
they cannot split (a broken JSON line, invalid UTF-8, a CSV row with the wrong number of
columns, an over-long line) becomes a :class:`~fnd_core.ingest.raw_rows.RawRow` with an error;
only a header that cannot be used raises :class:`~fnd_core.ingest.raw_rows.UnreadableFileError`.
Parquet, read by record batch, is :mod:`~fnd_core.ingest.parquet_reader`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from fnd_core.ingest.raw_rows import (
    BLOCK_BYTES,
    RawRow,
    RowBytes,
    RowLimits,
    UnreadableFileError,
    blank,
    canonical_fields,
    check_columns,
    check_label_columns,
    excerpt_of,
    has_surrogates,
    invalid_utf8_row,
    label_fields,
)

_FAKEDDIT_NUMERIC = ("score", "num_comments", "upvote_ratio", "3_way_label", "6_way_label")
_FAKEDDIT_LABELS = {"0": 1, "1": 0, "0.0": 1, "1.0": 0}  # Fakeddit 0 = fake -> ours 1 = fake


def iter_rows(
    stream: IO[bytes],
    fmt: str,
    fakeddit_image_dir: str = "images",
    limits: RowLimits | None = None,
) -> Iterator[RawRow]:
    """Rows of a line-based format (``jsonl``, ``csv``, ``fakeddit``) read from ``stream``.

    ``limits``: the longest row read and the excerpt kept (default: the settings' defaults).
    A row longer than ``max_row_bytes`` (well above any text limit, so an over-long text is
    still judged by the row checks) is a ``row_too_long`` row, read past but never held.
    """
    limits = limits or RowLimits()
    if fmt == "jsonl":
        return _jsonl_rows(stream, limits)
    if fmt == "csv":
        return _delimited_rows(stream, ",", _csv_fields, check_columns, limits)
    if fmt == "labels-jsonl":
        return _jsonl_rows(stream, limits, label_fields)
    if fmt == "labels-csv":
        return _delimited_rows(stream, ",", label_fields, check_label_columns, limits)
    if fmt == "fakeddit":

        def fields(record: dict[str, str]) -> dict[str, Any]:
            return _fakeddit_fields(record, fakeddit_image_dir)

        return _delimited_rows(stream, "\t", fields, _check_fakeddit_header, limits)
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


_ToFields = Callable[[dict[str, Any]], dict[str, Any]]
_CheckHeader = Callable[[list[str]], None]


# JSONL ---------------------------------------------------------------------------------------
def _jsonl_rows(
    stream: IO[bytes], limits: RowLimits, to_fields: _ToFields = canonical_fields
) -> Iterator[RawRow]:
    """One row per line, read with a cap: a line over ``max_row_bytes`` is a row error."""
    for number, (offset, line) in enumerate(_capped_lines(stream, limits), start=1):
        if isinstance(line, RowBytes):  # over-long: measured while skipped, never held
            yield line.row(number, None,
                           f"row is longer than {limits.max_row_bytes} bytes ({line.n_bytes} "
                           "bytes)", "row_too_long")  # fmt: skip
            continue
        line = line.removesuffix(b"\n").removesuffix(b"\r")
        if not line.strip():
            continue
        yield _jsonl_row(number, line, RowBytes.of(line, offset, limits), to_fields)


def _capped_lines(stream: IO[bytes], limits: RowLimits) -> Iterator[tuple[int, bytes | RowBytes]]:
    """(offset, line) of ``stream``; a line over the cap is read to its end and measured (its
    length, hash and first bytes), never held whole."""
    cap, offset = limits.max_row_bytes, 0
    while line := stream.readline(cap + 1):
        start, offset = offset, offset + len(line)
        if len(line) <= cap or line.endswith(b"\n"):
            yield start, line
            continue
        sha, size, head = hashlib.sha256(line), len(line), line[: limits.excerpt_bytes]
        while rest := stream.readline(BLOCK_BYTES):
            offset += len(rest)
            done = rest.endswith(b"\n")
            rest = rest[:-1].removesuffix(b"\r") if done else rest
            sha.update(rest)
            size += len(rest)
            if done:
                break
        yield start, RowBytes(start, size, sha.hexdigest(), excerpt_of(head, len(head)))


def _jsonl_row(number: int, line: bytes, measured: RowBytes, to_fields: _ToFields) -> RawRow:
    if number == 1:
        line = line.removeprefix(b"\xef\xbb\xbf")
    try:
        text, invalid_utf8 = line.decode("utf-8"), False
    except UnicodeDecodeError:
        text, invalid_utf8 = line.decode("utf-8", "surrogateescape"), True
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return measured.row(number, None, f"invalid JSON: {exc}", "parse_error")
    except RecursionError:  # thousands of nested brackets: the parser's stack, not the file's
        return measured.row(number, None, "invalid JSON: nested too deeply to parse",
                            "parse_error")  # fmt: skip
    except ValueError as exc:  # an integer of thousands of digits (Python's int-string limit)
        return measured.row(number, None, f"a number is too long to read: {str(exc)[:200]}",
                            "number_too_long")  # fmt: skip
    if not isinstance(record, dict):
        kind = type(record).__name__
        return measured.row(number, None, f"expected a JSON object, got {kind}", "parse_error")
    fields = to_fields(record)
    if invalid_utf8:
        return invalid_utf8_row(measured, number, fields)
    return measured.row(number, fields)


# CSV / TSV -----------------------------------------------------------------------------------
def _check_fakeddit_header(header: list[str]) -> None:
    missing = [] if "id" in header else ["id"]
    if "clean_title" not in header and "title" not in header:
        missing.append("clean_title (or title)")
    if missing:
        raise UnreadableFileError(
            f"missing required Fakeddit column(s) {', '.join(missing)}; header is {header[:20]}"
        )


def _delimited_rows(
    stream: IO[bytes],
    delimiter: str,
    to_fields: _ToFields,
    check_header: _CheckHeader,
    limits: RowLimits,
) -> Iterator[RawRow]:
    """CSV-like rows measured in bytes; wrong column counts become row errors.

    The stream is decoded line by line (invalid bytes kept as surrogates, so only the row
    holding them is refused); a line or field longer than ``max_row_bytes`` is a row error.
    """
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
    record = _Record(limits)
    reader = csv.reader(_recording(text, record), delimiter=delimiter)
    csv.field_size_limit(limits.max_row_bytes)
    try:
        yield from _records(reader, record, to_fields, check_header)
    finally:
        text.detach()  # the caller's stream stays open (it is hashed to its end)


@dataclass
class _Record:
    """The bytes of the record being read: where it starts, its length, hash and excerpt.

    A record's last line ending is not part of it (as for a JSONL line): it is held back
    until the next line shows the record went on.
    """

    limits: RowLimits
    offset: int = 0  # bytes of the file consumed so far
    start: int = 0
    n_bytes: int = 0
    sha: Any = None
    head: bytearray = field(default_factory=bytearray)
    held: bytes = b""  # the last line ending seen, not counted yet
    overlong: bool = False
    invalid_utf8: bool = False

    def begin(self) -> None:
        self.start, self.n_bytes, self.sha = self.offset, 0, hashlib.sha256()
        self.head, self.held, self.overlong, self.invalid_utf8 = bytearray(), b"", False, False

    def add(self, data: bytes) -> None:
        self.offset += len(data)
        body = data.rstrip(b"\r\n")
        for part in (self.held, body):
            self.n_bytes += len(part)
            self.sha.update(part)
            room = self.limits.excerpt_bytes - len(self.head)
            if room > 0:
                self.head += part[:room]
        self.held = data[len(body) :]

    def measured(self) -> RowBytes:
        return RowBytes(self.start, self.n_bytes, self.sha.hexdigest(),
                        excerpt_of(bytes(self.head), self.limits.excerpt_bytes))  # fmt: skip


def _recording(text: io.TextIOBase, record: _Record) -> Iterator[str]:
    """Yield capped lines to csv.reader, measuring each record's bytes; a line longer than the
    cap is read past (measured, not held) and stands as an empty line, its record flagged."""
    cap, first = record.limits.max_row_bytes, True
    while line := text.readline(cap):
        data = line.encode("utf-8", "surrogateescape")
        record.add(data)
        record.invalid_utf8 = record.invalid_utf8 or has_surrogates(line)
        if first:
            line, first = line.removeprefix("\ufeff"), False
        if len(line) >= cap and not line.endswith(("\n", "\r")):
            while rest := text.readline(BLOCK_BYTES):
                record.add(rest.encode("utf-8", "surrogateescape"))
                if rest.endswith(("\n", "\r")):
                    break
            record.overlong = True
            line = "\n"
        yield line


def _records(
    reader: Iterator[list[str]], record: _Record, to_fields: _ToFields, check_header: _CheckHeader
) -> Iterator[RawRow]:
    """The header check, then one :class:`RawRow` per record."""
    header = _header(reader, record)
    check_header(header)
    number, cap = 0, record.limits.max_row_bytes
    while True:
        record.begin()
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            number += 1
            too_long = "field larger than field limit" in str(exc)
            error = f"a field is longer than {cap} bytes" if too_long else f"bad CSV: {exc}"
            yield record.measured().row(number, None, error,
                                        "row_too_long" if too_long else "parse_error")  # fmt: skip
            continue
        if not values and not record.overlong:
            continue  # a blank line is no row
        number += 1
        measured = record.measured()
        if record.overlong:
            error = f"row is longer than {cap} bytes ({measured.n_bytes} bytes)"
            yield measured.row(number, None, error, "row_too_long")
        elif len(values) != len(header):
            error = (
                f"expected {len(header)} columns ({', '.join(header[:8])}"
                f"{', ...' if len(header) > 8 else ''}), got {len(values)}"
            )
            yield measured.row(number, None, error, "column_count_mismatch")
        elif record.invalid_utf8:
            fields = to_fields(dict(zip(header, values, strict=True)))
            yield invalid_utf8_row(measured, number, fields)
        else:
            yield measured.row(number, to_fields(dict(zip(header, values, strict=True))))


def _header(reader: Iterator[list[str]], record: _Record) -> list[str]:
    """The first non-blank record, names stripped; duplicate or missing names are fatal."""
    record.begin()
    try:
        for values in reader:
            if values:
                header = [name.strip() for name in values]
                break
        else:
            raise UnreadableFileError("no header row")
    except csv.Error as exc:
        raise UnreadableFileError(f"unreadable header: {exc}") from exc
    if record.invalid_utf8 or record.overlong:
        raise UnreadableFileError("header is not valid UTF-8 or longer than FND_MAX_ROW_BYTES")
    duplicates = sorted({n for n in header if header.count(n) > 1 and n})
    if duplicates:
        raise UnreadableFileError(f"duplicate column name(s) in header: {duplicates}")
    return header
