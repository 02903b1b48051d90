"""How an ingest run ends: which of the files it found were set aside, said in one summary.

A run that set anything aside must not end green: ``fnd ingest`` exits non-zero and the
``fnd_ingest`` DAG's last task fails. Both decide with :func:`set_aside`, a pure comparison
of what was found with what was reported, and say it with :func:`summary_lines`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from fnd_core.io import storage

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

DONE = ("loaded", "skipped")  # a file that ended so is accounted for and out of the landing


def set_aside(found: Iterable[str], reports: Iterable[dict[str, Any] | None]) -> list[str]:
    """The files found (URIs, or :func:`~fnd_core.io.storage.portable` forms of them) that
    did not end loaded or skipped: set aside, failed, or never reported at all.

    Args:
        found: what the run listed.
        reports: :meth:`IngestReport.to_json` of the files that reported (None for a task
            that failed: it has none).

    Returns:
        The printable form of each such file, in the order found.
    """
    done = {r["uri"] for r in reports if r and r.get("status") in DONE}
    shown = (storage.printable(storage.from_portable(uri)) for uri in found)
    return [uri for uri in shown if uri not in done]


def summary_lines(aside: dict[str, str]) -> list[str]:
    """One line per file set aside: its name and why (``{printable uri: reason}``)."""
    if not aside:
        return []
    head = f"{len(aside)} file(s) set aside (see failed/ and fnd.ingest_batches):"
    return [head, *(f"  {uri}: {reason or 'no report'}" for uri, reason in aside.items())]


def recorded_reasons(engine: Engine, run_id: str) -> dict[str, str]:
    """{printable uri: error} of the batches this run recorded as failed."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select source_uri, error from fnd.ingest_batches "
                "where run_id = :r and status = 'failed' order by batch_id"
            ),
            {"r": run_id},
        ).all()
    return {uri: error or "" for uri, error in rows}
