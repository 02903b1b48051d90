"""Bulk writes through PostgreSQL COPY, then one set-based INSERT … ON CONFLICT.

COPY is the fastest way into Postgres (one round trip for the whole batch); a temporary
staging table in front of it lets the final INSERT skip rows that already exist, which makes
every bulk write idempotent: running it again writes nothing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

NULL = r"\N"


def _field(value: Any) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    # CSV quoting keeps commas, quotes, newlines and backslashes verbatim; a quoted \N is
    # text, only the unquoted marker above is NULL.
    return '"' + text.replace('"', '""') + '"'


def to_csv(rows: Iterable[Sequence[Any]]) -> io.StringIO:
    """Rows as a CSV stream in the dialect of ``copy … (format csv, null '\\N')``."""
    buf = io.StringIO()
    for row in rows:
        buf.write(",".join(_field(v) for v in row))
        buf.write("\n")
    buf.seek(0)
    return buf


def copy_into(conn: Connection, table: str, columns: Sequence[str], rows: Iterable) -> None:
    """COPY ``rows`` into ``table`` (trusted identifiers only) inside the current transaction."""
    cols = ", ".join(columns)
    raw = conn.connection.driver_connection  # the psycopg2 connection under SQLAlchemy
    if raw is None:
        raise RuntimeError("copy_into: the connection has no DBAPI connection (closed?)")
    with raw.cursor() as cur:
        cur.copy_expert(
            f"copy {table} ({cols}) from stdin with (format csv, null '{NULL}')", to_csv(rows)
        )


def create_stage(conn: Connection, target: str, columns: Sequence[str] | None = None) -> str:
    """An empty temporary copy of ``target`` (dropped at commit); returns its name.

    With ``columns``, the copy has only those (their types, no constraints): the target may fill
    its other columns itself (defaults, triggers), which a NOT NULL copied along would refuse.
    """
    stage = "fnd_stage_" + target.replace(".", "_")
    if columns:
        conn.exec_driver_sql(
            f"create temp table if not exists {stage} on commit drop as "
            f"select {', '.join(columns)} from {target} with no data"
        )
    else:
        conn.exec_driver_sql(
            f"create temp table if not exists {stage} (like {target} including defaults) "
            "on commit drop"
        )
    conn.exec_driver_sql(f"truncate {stage}")
    return stage


def insert_from_stage(
    conn: Connection, target: str, stage: str, columns: Sequence[str], *, conflict: str
) -> int:
    """``insert into target select … from stage on conflict …``; the number of rows inserted."""
    cols = ", ".join(columns)
    return conn.exec_driver_sql(
        f"with ins as (insert into {target} ({cols}) select {cols} from {stage} "
        f"on conflict {conflict} returning 1) select count(*) from ins"
    ).scalar_one()


def upsert_via_staging(
    conn: Connection,
    target: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    conflict: str = "do nothing",
    returning: str | None = None,
) -> list[tuple]:
    """COPY into a temp copy of ``target``, then ``insert … select … on conflict``.

    Returns the ``returning`` rows (e.g. the keys actually inserted), or [] without one.
    """
    stage = create_stage(conn, target, columns)
    copy_into(conn, stage, columns, rows)
    cols = ", ".join(columns)
    sql = f"insert into {target} ({cols}) select {cols} from {stage} on conflict {conflict}"
    if returning:
        sql += f" returning {returning}"
        return [tuple(r) for r in conn.exec_driver_sql(sql).all()]
    conn.exec_driver_sql(sql)
    return []
