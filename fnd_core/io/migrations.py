"""Plain-SQL migrations: ``sql/NNN_verb_object.sql`` applied in order, once each; views
from ``sql/views/<view>.sql``, their one current definition, recreated on every upgrade.

Numbered migrations hold tables, grants and data changes. Views are not re-declared in them:
``create or replace view`` cannot drop or reorder a column, and a view declared in four files
is read in four. So an upgrade applies the pending migrations up to :data:`LEGACY_HEAD` (the
files written before ``sql/views/``, some of which still declare views) one transaction each,
then, in one transaction, drops every view, applies the later pending migrations and creates
every view in dependency order (a view file's ``-- requires:`` line names the views it reads).
A migration that fails leaves nothing behind and is retried by the next ``fnd db upgrade``.
An advisory lock keeps two processes (e.g. two Airflow workers) from upgrading at once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fnd_core.resources import SQL_DIR

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
VIEW_NAME = re.compile(r"^[a-z][a-z0-9_]*\.sql$")
REQUIRES = re.compile(r"^-- requires:(.*)$", re.MULTILINE)
LEGACY_HEAD = 16  # migrations up to this number may declare views (written before sql/views)
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
    def number(self) -> int:
        return int(self.filename[:3])

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


def _applied(conn: Connection) -> dict[str, tuple[str, str]]:
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
    """Apply pending migrations in order and recreate the views; returns the filenames
    applied (empty: the tables were up to date)."""
    migrations = discover(sql_dir)
    views = discover_views(sql_dir / "views")
    legacy = [m for m in migrations if m.number <= LEGACY_HEAD]
    applied_now: list[str] = []
    # One connection throughout: the session-level advisory lock belongs to it.
    with engine.connect() as conn:
        conn.exec_driver_sql(f"select pg_advisory_lock({_UPGRADE_LOCK_KEY})")
        conn.commit()
        try:
            with conn.begin():
                conn.exec_driver_sql(_BOOTSTRAP)
            for m in legacy:
                with conn.begin():
                    applied_now += _apply(conn, m)
            with conn.begin():
                for view in reversed(views):
                    conn.exec_driver_sql(f"drop view if exists fnd.{view.name} cascade")
                for m in migrations[len(legacy) :]:
                    applied_now += _apply(conn, m)
                for view in views:
                    try:
                        _run_script(conn, view.sql)
                    except Exception as exc:
                        raise MigrationError(
                            f"views/{view.name}.sql failed, the upgrade rolled back: {exc}"
                        ) from exc
        finally:
            conn.rollback()
            conn.exec_driver_sql(f"select pg_advisory_unlock({_UPGRADE_LOCK_KEY})")
            conn.commit()
    return applied_now


def _run_script(conn: Connection, sql: str) -> None:
    """Run a SQL file as written: through the DBAPI cursor without parameters, so a ``%`` in
    it (a comment's "90 %") is SQL, not a placeholder."""
    raw = conn.connection.driver_connection
    if raw is None:
        raise RuntimeError("the connection has no DBAPI connection (closed?)")
    with raw.cursor() as cur:
        cur.execute(sql)


def _apply(conn: Connection, m: Migration) -> list[str]:
    """Run one migration and record it, in the caller's transaction; [] if already applied."""
    if m.filename in _applied(conn):
        return []
    try:
        _run_script(conn, m.sql)
    except Exception as exc:
        raise MigrationError(f"{m.filename} failed, rolled back: {exc}") from exc
    conn.exec_driver_sql(
        "insert into fnd.schema_migrations (filename, sha256) values (%s, %s)",
        (m.filename, m.sha256),
    )
    return [m.filename]


@dataclass(frozen=True)
class View:
    name: str
    sql: str
    requires: tuple[str, ...]


def discover_views(views_dir: Path) -> list[View]:
    """The view files in dependency order (each after the views it ``requires``)."""
    from graphlib import CycleError, TopologicalSorter

    views: dict[str, View] = {}
    for path in sorted(views_dir.glob("*.sql")) if views_dir.is_dir() else []:
        if not VIEW_NAME.match(path.name):
            raise ValueError(f"views/{path.name}: view files must be named <view>.sql")
        sql = path.read_text(encoding="utf-8")
        line = REQUIRES.search(sql)
        names = line.group(1).split("(")[0].replace(",", " ").split() if line else []
        requires = tuple(n.removeprefix("fnd.") for n in names if n != "none")
        views[path.stem] = View(path.stem, sql, requires)
    for view in views.values():
        unknown = sorted(set(view.requires) - set(views))
        if unknown:
            raise ValueError(f"views/{view.name}.sql requires unknown views: {unknown}")
    try:
        order = TopologicalSorter({v.name: set(v.requires) for v in views.values()})
        return [views[name] for name in order.static_order()]
    except CycleError as exc:
        raise ValueError(f"views require each other in a cycle: {exc.args[1]}") from exc


class MigrationError(RuntimeError):
    """A migration file failed; its transaction was rolled back."""
