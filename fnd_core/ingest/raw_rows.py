"""What every landing reader produces: a :class:`RawRow` of canonical fields, kept storable.

The format readers (:mod:`~fnd_core.ingest.text_readers` for JSONL, CSV and Fakeddit TSV,
:mod:`~fnd_core.ingest.parquet_reader` for Parquet) share this one shape and its rules, so
they live apart from :mod:`~fnd_core.ingest.readers`, which hashes a file and picks its reader:
the column mapping onto ``id``, ``text``, ``image``, ``created_utc``, ``label`` and ``extra``,
the columns a file must have (a label file's are ``post_id``, ``label``, ``source`` and
``labelled_at``), and how a row's verbatim text is made storable in Postgres
``text`` (invalid UTF-8 bytes as ``\\xNN`` escapes, NUL bytes as ``\\x00``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

# Canonical field names every reader produces; everything else goes to ``extra``.
CANONICAL_FIELDS = ("id", "text", "image", "created_utc", "label")
_CONSUMED = frozenset(CANONICAL_FIELDS) | {"title"}
# A label file's fields (``fnd label``, ``labels/`` in the landing zone).
LABEL_FIELDS = ("post_id", "label", "source", "labelled_at")
_SURROGATE = re.compile("[\udc80-\udcff]")
BLOCK_BYTES = 1024 * 1024  # files are hashed, and over-long lines skipped, this much at a time


@dataclass(frozen=True)
class RowLimits:
    """How much of a row is read and kept (``FND_MAX_ROW_BYTES``,
    ``FND_QUARANTINE_EXCERPT_BYTES``): what bounds a reader's memory, whatever a file holds.

    Attributes:
        max_row_bytes: a longer line (or CSV field) is a ``row_too_long`` row, read past but
            never held.
        excerpt_bytes: the start of a row kept verbatim for the quarantine.
    """

    max_row_bytes: int = 16 * 1024 * 1024
    excerpt_bytes: int = 4096


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
        n_bytes: the whole row's length in bytes (line ending excluded).
        sha256: the whole row's sha256 (same bytes), to check a row recovered from the file.
        byte_offset: where the row starts in its file (None for Parquet).
    """

    row_number: int
    raw: str
    fields: dict[str, Any] | None
    error: str | None = None
    error_rule: str | None = None
    n_bytes: int = 0
    sha256: str | None = None
    byte_offset: int | None = None


@dataclass(frozen=True)
class RowBytes:
    """Where a row is in its file and what it holds: offset, length, hash and excerpt."""

    offset: int | None
    n_bytes: int
    sha256: str
    excerpt: str

    @classmethod
    def of(cls, data: bytes, offset: int | None, limits: RowLimits) -> RowBytes:
        """The measures of a whole row held in memory (an excerpt of it is kept)."""
        return cls(offset, len(data), hashlib.sha256(data).hexdigest(),
                   excerpt_of(data, limits.excerpt_bytes))  # fmt: skip

    def row(self, number: int, fields: dict[str, Any] | None, error: str | None = None,
            rule: str | None = None) -> RawRow:  # fmt: skip
        return RawRow(number, self.excerpt, fields, error, rule, self.n_bytes, self.sha256,
                      self.offset)  # fmt: skip


def excerpt_of(data: bytes, max_bytes: int) -> str:
    """The first ``max_bytes`` of a row as storable text (a cut character as ``\\xNN``)."""
    head = data[:max_bytes]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("utf-8", "backslashreplace")
    return text.replace("\x00", "\\x00")


def canonical_fields(record: dict[str, Any]) -> dict[str, Any]:
    """JSONL / CSV / Parquet columns -> canonical fields; ``title`` stands in for empty text."""
    fields = {name: record.get(name) for name in CANONICAL_FIELDS}
    extra = {k: v for k, v in record.items() if k not in _CONSUMED}
    title = record.get("title")
    if blank(fields["text"]) and not blank(title):
        fields["text"] = title
    elif "title" in record:
        extra["title"] = title
    fields["extra"] = extra
    return fields


def label_fields(record: dict[str, Any]) -> dict[str, Any]:
    """A label file's columns -> its fields (``id`` stands in for a missing ``post_id``, as
    post files name it); other columns go to ``extra`` (not stored)."""
    fields = {name: record.get(name) for name in LABEL_FIELDS}
    if "post_id" not in record:
        fields["post_id"] = record.get("id")
    fields["extra"] = {k: v for k, v in record.items() if k not in LABEL_FIELDS}
    return fields


def check_label_columns(header: list[str]) -> None:
    """The columns a CSV label file must have: ``post_id`` (or ``id``) and ``label``."""
    missing = [c for c in ("post_id", "label") if c not in header]
    if "post_id" in missing and "id" in header:
        missing.remove("post_id")
    if missing:
        raise UnreadableFileError(
            f"missing required label column(s) {', '.join(missing)}; columns are {header[:20]}"
        )


def check_columns(header: list[str]) -> None:
    """The columns a CSV or Parquet file must have (``id``, ``image``, ``text`` or ``title``)."""
    missing = [c for c in ("id", "image") if c not in header]
    if "text" not in header and "title" not in header:
        missing.append("text (or title)")
    if missing:
        raise UnreadableFileError(
            f"missing required column(s) {', '.join(missing)}; columns are {header[:20]}"
        )


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# Encoding --------------------------------------------------------------------------------------
def invalid_utf8_row(measured: RowBytes, number: int, fields: dict[str, Any]) -> RawRow:
    """A row holding invalid UTF-8: name the fields that do (``text`` gets its own rule)."""
    bad = [k for k, v in fields.items() if k != "extra" and has_surrogates(v)]
    bad += [k for k, v in fields["extra"].items() if has_surrogates(v) or has_surrogates(k)]
    rule = "text_invalid_utf8" if "text" in bad else "invalid_utf8"
    where = f"field(s) {', '.join(bad)}" if bad else "the row"
    error = f"invalid UTF-8 bytes in {where} (shown as \\xNN escapes in raw)"
    return measured.row(number, fields, error, rule)


def has_surrogates(value: Any) -> bool:
    """Invalid bytes decoded with ``surrogateescape`` show up as lone surrogates."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(has_surrogates(k) or has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_surrogates(v) for v in value)
    return False


def storable_bytes(line: bytes, invalid_utf8: bool) -> str:
    """A line's bytes as text: invalid UTF-8 (when flagged) as ``\\xNN``, NUL as ``\\x00``."""
    text = line.decode("utf-8", "backslashreplace") if invalid_utf8 else line.decode("utf-8")
    return text.replace("\x00", "\\x00")


def storable_text(text: str) -> str:
    """Surrogate-escaped text -> printable ``\\xNN`` escapes; NUL -> ``\\x00``."""
    if has_surrogates(text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("\x00", "\\x00")
