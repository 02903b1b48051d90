"""Plain-SQL migrations: ``sql/NNN_verb_object.sql`` applied in order, once each.

Each file runs in its own transaction together with the row that records it, so a file
that fails leaves nothing behind and is retried by the next ``fnd db upgrade``. An
advisory lock keeps two processes (e.g. two Airflow workers) from upgrading at once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fnd_core.resources import SQL_DIR

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
# Arbitrary constant: the key of the advisory lock that serialises upgrades.
_UPGRADE_LOCK_KEY = 4_711_001

_BOOTSTRAP = """
create schema if not exists fnd;
create table if not exists fnd.schema_migrations (
    filename text primary key,
    sha256 text not null,
    applied_at timestamptz not null default now()
);
comment on table fnd.schema_migrations is
    'Migrations applied by fnd db upgrade, one row per sql/ file.';
comment on column fnd.schema_migrations.filename is 'The sql/NNN_*.sql file applied.';
comment on column fnd.schema_migrations.sha256 is
    'sha256 of the file when applied (edits show as modified).';
comment on column fnd.schema_migrations.applied_at is 'When it was applied.';
"""


@dataclass(frozen=True)
class Migration:
    filename: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class MigrationState:
    filename: str
    status: str  # applied | pending | modified (applied, but the file changed since)
    applied_at: str | None


def discover(sql_dir: Path = SQL_DIR) -> list[Migration]:
    """The migration files in order; refuses stray names and duplicate numbers."""
    found: dict[str, Migration] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"{path.name}: migration files must be named NNN_verb_object.sql")
        number = match.group(1)
        if number in found:
            raise ValueError(
                f"{path.name}: number {number} already used by {found[number].filename}"
            )
        found[number] = Migration(path.name, path)
    return list(found.values())


def _applied(conn) -> dict[str, tuple[str, str]]:
    rows = conn.exec_driver_sql(
        "select filename, sha256, applied_at::text from fnd.schema_migrations"
    ).all()
    return {name: (sha, at) for name, sha, at in rows}


def status(engine: Engine, sql_dir: Path = SQL_DIR) -> list[MigrationState]:
    """Every known migration with whether it is applied, pending or modified since."""
    with engine.begin() as conn:
        exists = conn.exec_driver_sql("select to_regclass('fnd.schema_migrations')").scalar()
        applied = _applied(conn) if exists else {}
    states = []
    for m in discover(sql_dir):
        if m.filename not in applied:
            states.append(MigrationState(m.filename, "pending", None))
        else:
            sha, at = applied[m.filename]
            states.append(
                MigrationState(m.filename, "applied" if sha == m.sha256 else "modified", at)
            )
    return states


def upgrade(engine: Engine, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply pending migrations in order; returns the filenames applied (empty: up to date)."""
    migrations = discover(sql_dir)
    applied_now: list[str] = []
    # One connection throughout: the session-level advisory lock belongs to it.
    with engine.connect() as conn:
        conn.exec_driver_sql(f"select pg_advisory_lock({_UPGRADE_LOCK_KEY})")
        conn.commit()
        try:
            with conn.begin():
                conn.exec_driver_sql(_BOOTSTRAP)
            for m in migrations:
                with conn.begin():
                    if m.filename in _applied(conn):
                        continue
                    try:
                        conn.exec_driver_sql(m.sql)
                    except Exception as exc:
                        raise MigrationError(f"{m.filename} failed, rolled back: {exc}") from exc
                    conn.exec_driver_sql(
                        "insert into fnd.schema_migrations (filename, sha256) values (%s, %s)",
                        (m.filename, m.sha256),
                    )
                applied_now.append(m.filename)
        finally:
            conn.rollback()
            conn.exec_driver_sql(f"select pg_advisory_unlock({_UPGRADE_LOCK_KEY})")
            conn.commit()
    return applied_now


class MigrationError(RuntimeError):
    """A migration file failed; its transaction was rolled back."""
