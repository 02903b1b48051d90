"""What a validation run leaves behind: a small JSON-able summary, and its row in Postgres.

GX's own result objects are large and hold pandas and numpy values; a task log, an XCom or a
``fnd.validation_runs`` row needs only each expectation's verdict with a few example values, as
plain JSON. Shaping a GX result into a :class:`ValidationSummary` and storing one are kept here,
apart from running the suite (:mod:`~fnd_core.ingest.quality`), so the drift and retraining
checks that store summaries of their own need not know how a suite is run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

_MAX_PARTIAL_VALUES = 10  # partial unexpected values kept per expectation in a summary
_MAX_VALUE_CHARS = 80  # each kept value is cut to this many characters


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's verdict, reduced to what a task log, XCom or DB row needs."""

    expectation_type: str
    column: str | None
    kwargs: dict[str, Any]
    success: bool
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    partial_unexpected_values: tuple[Any, ...] = ()
    observed_value: Any = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "expectation_type": self.expectation_type,
            "column": self.column,
            "kwargs": dict(self.kwargs),
            "success": self.success,
            "unexpected_count": self.unexpected_count,
            "unexpected_percent": self.unexpected_percent,
            "partial_unexpected_values": list(self.partial_unexpected_values),
            "observed_value": self.observed_value,
            "error": self.error,
        }


@dataclass(frozen=True)
class ValidationSummary:
    """The outcome of validating one batch against one suite; small and JSON-able."""

    suite: str
    batch_name: str
    success: bool
    evaluated_rows: int
    statistics: dict[str, Any]
    results: tuple[ExpectationOutcome, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    data_docs_path: Path | str | None = None  # a local path, or the published URI
    gx_version: str = ""

    @property
    def failed(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(r for r in self.results if not r.success)

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "batch_name": self.batch_name,
            "success": self.success,
            "evaluated_rows": self.evaluated_rows,
            "statistics": dict(self.statistics),
            "parameters": dict(self.parameters),
            "results": [r.to_json() for r in self.results],
            "data_docs_path": str(self.data_docs_path) if self.data_docs_path else None,
            "gx_version": self.gx_version,
        }


def record_validation(
    conn: Connection, validation: Mapping[str, Any], *, run_id: str, batch_id: int | None = None
) -> None:
    """Store a :meth:`ValidationSummary.to_json` in ``fnd.validation_runs`` (the Data quality
    page and ``fnd.daily_summary`` read it); ``batch_id`` when an ingest batch was checked."""
    import sqlalchemy as sa

    conn.execute(
        sa.text(
            "insert into fnd.validation_runs (suite, batch_id, batch_name, success, "
            "n_evaluated_rows, statistics, results, data_docs_uri, gx_version, run_id) values "
            "(:suite, :batch, :name, :ok, :n, cast(:stats as jsonb), cast(:results as jsonb), "
            ":docs, :gx, :run)"
        ),
        {
            "suite": validation["suite"],
            "batch": batch_id,
            "name": validation["batch_name"],
            "ok": validation["success"],
            "n": validation["evaluated_rows"],
            "stats": json.dumps(validation["statistics"]),
            "results": json.dumps(validation["results"]),
            "docs": validation["data_docs_path"],
            "gx": validation["gx_version"],
            "run": run_id,
        },
    )


def expectation_outcome(result: Any) -> ExpectationOutcome:
    """One GX expectation result reduced to its verdict, counts and a few example values."""
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in {"column", "batch_id"}}
    details = result.result or {}
    error = _error_message(result.exception_info)
    partial = details.get("partial_unexpected_list") or []
    return ExpectationOutcome(
        expectation_type=config.type,
        column=config.kwargs.get("column"),
        kwargs=json_safe(kwargs),
        success=bool(result.success),
        unexpected_count=json_safe(details.get("unexpected_count")),
        unexpected_percent=json_safe(details.get("unexpected_percent")),
        partial_unexpected_values=tuple(json_safe(partial[:_MAX_PARTIAL_VALUES])),
        observed_value=json_safe(details.get("observed_value")),
        error=error,
    )


def _error_message(exception_info: Any) -> str | None:
    """GX reports errors either flat or per metric id; keep the distinct messages."""
    if not exception_info:
        return None
    infos = [exception_info] if "raised_exception" in exception_info else exception_info.values()
    messages = [str(i.get("exception_message")) for i in infos if i.get("raised_exception")]
    return "; ".join(dict.fromkeys(messages)) or None


def json_safe(value: Any) -> Any:
    """Plain JSON types only: NaN/NaT become None, long strings are cut, the rest is str()."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, str):
        return value if len(value) <= _MAX_VALUE_CHARS else value[: _MAX_VALUE_CHARS - 1] + "…"
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if hasattr(value, "to_json_dict"):  # GX objects such as row conditions
        return json_safe(value.to_json_dict())
    if hasattr(value, "dict") and callable(value.dict):  # pydantic models
        return json_safe(value.dict())
    try:
        if value != value:  # NaT and other NaN-likes that compare unequal to themselves
            return None
    except TypeError:  # pd.NA: its comparison result has no truth value
        return None
    if hasattr(value, "isoformat"):  # datetime, date, pd.Timestamp
        return value.isoformat()
    import numpy as np  # already loaded with pandas; only needed for numpy scalars

    if isinstance(value, np.datetime64):
        return str(value)
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return json_safe(str(value))
