"""Read-side queries behind fnd's monitoring pages: what every page's queries share.

The SQL of the Airflow plugin (and of the failure alerts) lives in fnd_core, one module per
page, so route handlers stay free of it and each query is tested against Postgres:

- :mod:`~fnd_core.observe.monitoring_quality`: data quality (validation runs, quarantine);
- :mod:`~fnd_core.observe.monitoring_models`: models (``fnd.model_leaderboard``, champions);
- :mod:`~fnd_core.observe.monitoring_scores`: scores (``fnd.daily_summary``, histograms,
  flagged posts, drift);
- :mod:`~fnd_core.observe.monitoring_runs`: what one Airflow run recorded, for failure alerts.

Posts per day and the leaderboard are the views analysts query (``fnd.daily_summary``,
``fnd.model_leaderboard``: ``sql/003``, redefined by later migrations), read rather than
repeated, so the pages and the analysts agree; a day is a UTC calendar day, as the view cuts
it (``sql/012``). Every query is bounded: lists are paginated with a capped ``limit``, and
anything computed over many rows (daily volume, fake share, p_fake histograms) is aggregated
in SQL over a window read through an index.

Every answer is bounded in bytes too: free-text cells (quarantined rows, reasons, errors) are
cut to ``MAX_CELL_CHARS`` in SQL, so a page never carries a row as long as a landing file made
it (rows quarantined before excerpts existed may hold megabytes).

This module holds what they share: the page type and its bounds, and how a page's read
transaction is tuned. Results are plain dicts of JSON-ready values (floats, ints, strings,
datetimes), ready for a template or a JSON response.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

MAX_LIMIT = 500  # the most rows one page may ask for
MAX_OFFSET = 10_000_000  # the furthest a page may start
MAX_CELL_CHARS = 4096  # the most characters of one free-text cell (raw rows, errors) a page shows
MAX_DAYS = 92  # the longest daily window (a quarter): its cost grows with the posts in it
MAX_RECENT_POSTS = 100_000  # the most recent posts a histogram comparison may look at
MAX_BINS = 100


@dataclass(frozen=True)
class Page:
    """One page of a longer list: its rows, the total matching, and where it starts."""

    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int

    @property
    def has_next(self) -> bool:
        return self.offset + len(self.items) < self.total

    def to_json(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
        }


def check_page(limit: int, offset: int) -> tuple[int, int]:
    """A valid (limit, offset): limit within 1..MAX_LIMIT, offset within 0..MAX_OFFSET (a
    larger one would overflow Postgres' bigint; no list is that long)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if not 0 <= offset <= MAX_OFFSET:
        raise ValueError(f"offset must be between 0 and {MAX_OFFSET}, got {offset}")
    return limit, offset


def check_offset(offset: int, total: int) -> None:
    """An offset past the last row is a mistake to say (400), not an empty page to show."""
    if offset > total:
        raise ValueError(f"offset {offset} is beyond the {total} row(s) there are")


def query_rows(conn: Connection, sql: str, **params: Any) -> list[dict[str, Any]]:
    """The rows of ``sql`` as plain dicts, column name to value."""
    return [dict(row._mapping) for row in conn.execute(sa.text(sql), params)]


def tune_for_page(conn: Connection, *, probes: bool = False) -> None:
    """Tune this read transaction for a page: no JIT, and (``probes``) join by index probes.

    JIT compilation costs 0.1-1 s, more than these queries take. A window's posts are joined
    to their predictions by primary-key probes, whose cost grows with the window only; left
    to itself the planner often hash-joins the whole predictions table instead, whose cost
    grows with every post and every model version (measured: 2-3x slower at 1M predictions).
    """
    conn.exec_driver_sql("set local jit = off")
    if probes:
        conn.exec_driver_sql("set local enable_hashjoin = off")
        conn.exec_driver_sql("set local enable_mergejoin = off")
