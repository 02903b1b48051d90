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
    UnreadableFileError,
    canonical_fields,
    check_columns,
    storable_text,
)

_PARQUET_BATCH_ROWS = 4096


def parquet_rows(stream: IO[bytes]) -> Iterator[RawRow]:
    """Rows of a Parquet file, one record batch at a time (never the whole table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UnreadableFileError(f"not a readable Parquet file: {exc}") from exc
    check_columns(parquet.schema_arrow.names)
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            for record in batch.to_pylist():
                number += 1
                record = {k: _nan_to_none(v) for k, v in record.items()}
                raw = json.dumps(record, ensure_ascii=False, default=str)
                yield RawRow(number, storable_text(raw), canonical_fields(record))
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFileError(f"Parquet data unreadable after row {number}: {exc}") from exc


def _nan_to_none(value: Any) -> Any:
    """Pandas writes missing numbers as NaN: treat them as absent."""
    return None if isinstance(value, float) and math.isnan(value) else value
