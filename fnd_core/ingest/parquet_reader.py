"""The Parquet landing format: rows read one record batch at a time, never the whole table.

Parquet is columnar and binary, so it shares nothing with the line-based readers of
:mod:`~fnd_core.ingest.text_readers` but the row shape of :mod:`~fnd_core.ingest.raw_rows`;
here too a file is streamed (by record batch), and a row's verbatim text for the quarantine
is the row as JSON. ``pyarrow`` is imported only when a Parquet file is read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import IO, Any

from fnd_core.ingest.raw_rows import (
    RawRow,
    RowBytes,
    RowLimits,
    UnreadableFileError,
    canonical_fields,
    check_columns,
)

_PARQUET_BATCH_ROWS = 4096
_PARQUET_BATCH_BYTES = 32 * 1024 * 1024  # a record batch holds about this much, decoded


def parquet_rows(stream: IO[bytes], limits: RowLimits | None = None) -> Iterator[RawRow]:
    """Rows of a Parquet file, one record batch at a time (never the whole table).

    A batch holds fewer rows when the row groups say rows are big (so huge cells do not
    make a huge batch); a row whose JSON is longer than ``max_row_bytes`` is ``row_too_long``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    limits = limits or RowLimits()
    try:
        parquet = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UnreadableFileError(f"not a readable Parquet file: {exc}") from exc
    check_columns(parquet.schema_arrow.names)
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=_batch_rows(parquet.metadata)):
            for record in _records(batch):
                number += 1
                if isinstance(record, Exception):  # this row's value, not the file's fault
                    error = f"a value cannot be read: {type(record).__name__}: {record}"[:300]
                    yield RawRow(number, "", None, error, "value_unreadable")
                    continue
                yield _row(number, {k: _nan_to_none(v) for k, v in record.items()}, limits)
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFileError(f"Parquet data unreadable after row {number}: {exc}") from exc


def _records(batch: Any) -> list[dict[str, Any] | Exception]:
    """A record batch as Python rows; when one row holds a value Python cannot hold (a
    timestamp past year 9999...), the others are still read, one by one."""
    try:
        return batch.to_pylist()
    except (ValueError, OverflowError, TypeError, ArithmeticError):
        pass
    rows: list[dict[str, Any] | Exception] = []
    for i in range(batch.num_rows):
        try:
            rows.append(batch.slice(i, 1).to_pylist()[0])
        except (ValueError, OverflowError, TypeError, ArithmeticError) as exc:
            rows.append(exc)
    return rows


def _row(number: int, record: dict[str, Any], limits: RowLimits) -> RawRow:
    """One record as a row; its bytes (for the quarantine) are the record as JSON."""
    raw = json.dumps(record, ensure_ascii=False, default=str)
    measured = RowBytes.of(raw.encode("utf-8", "backslashreplace"), None, limits)
    if measured.n_bytes > limits.max_row_bytes:
        error = f"row is longer than {limits.max_row_bytes} bytes ({measured.n_bytes} bytes)"
        return measured.row(number, None, error, "row_too_long")
    return measured.row(number, canonical_fields(record))


def _batch_rows(metadata: Any) -> int:
    """Rows per record batch: at most ``_PARQUET_BATCH_ROWS``, fewer for big rows."""
    groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
    widest = max((g.total_byte_size / max(g.num_rows, 1) for g in groups), default=0.0)
    return max(1, min(_PARQUET_BATCH_ROWS, int(_PARQUET_BATCH_BYTES // max(widest, 1.0))))


def _nan_to_none(value: Any) -> Any:
    """Pandas writes missing numbers as NaN: treat them as absent."""
    return None if isinstance(value, float) and math.isnan(value) else value
