"""Migrations from an empty database: order, idempotence, atomicity, and what they create."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fnd_core.io import migrations
from fnd_core.io.db import make_engine

TABLES = {
    "ingest_batches",
    "posts",
    "quarantine",
    "validation_runs",
    "model_versions",
    "predictions",
    "scoring_errors",
    "drift_reports",
    "schema_migrations",
}
VIEWS = {"latest_predictions", "daily_summary", "model_leaderboard", "drift_summary"}


@pytest.fixture
def empty_engine(create_database):
    engine = make_engine(create_database())
    yield engine
    engine.dispose()


def test_upgrade_from_empty_twice(empty_engine):
    first = migrations.upgrade(empty_engine)
    assert first == [m.filename for m in migrations.discover()]
    assert migrations.upgrade(empty_engine) == []
    assert {s.status for s in migrations.status(empty_engine)} == {"applied"}


def test_tables_and_views_exist(engine):
    with engine.connect() as conn:
        tables = set(
            conn.exec_driver_sql(
                "select table_name from information_schema.tables "
                "where table_schema = 'fnd' and table_type = 'BASE TABLE'"
            ).scalars()
        )
        views = set(
            conn.exec_driver_sql(
                "select table_name from information_schema.views where table_schema = 'fnd'"
            ).scalars()
        )
    assert tables == TABLES
    assert views == VIEWS


def test_every_table_view_and_column_has_a_comment(engine):
    query = """
        select c.relname, a.attname
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'fnd'
        join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where c.relkind in ('r', 'v') and col_description(c.oid, a.attnum) is null
    """
    with engine.connect() as conn:
        missing_columns = conn.exec_driver_sql(query).all()
        missing_tables = conn.exec_driver_sql(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'fnd' and c.relkind in ('r', 'v') "
            "and obj_description(c.oid, 'pg_class') is null"
        ).all()
    assert missing_tables == []
    assert missing_columns == []


def test_failing_migration_leaves_no_partial_state(empty_engine, tmp_path: Path):
    sql_dir = tmp_path / "sql"
    shutil.copytree(migrations.SQL_DIR, sql_dir)
    (sql_dir / "900_break_things.sql").write_text(
        "create table fnd.half_done (id int);\nselect 1 / 0;\n"
    )
    with pytest.raises(migrations.MigrationError, match="900_break_things.sql"):
        migrations.upgrade(empty_engine, sql_dir)
    with empty_engine.connect() as conn:
        assert conn.exec_driver_sql("select to_regclass('fnd.half_done')").scalar() is None
    states = {s.filename: s.status for s in migrations.status(empty_engine, sql_dir)}
    assert states.pop("900_break_things.sql") == "pending"
    assert set(states.values()) == {"applied"}  # the good files before it stay applied


def test_status_reports_modified_file(empty_engine, tmp_path: Path):
    sql_dir = tmp_path / "sql"
    shutil.copytree(migrations.SQL_DIR, sql_dir)
    migrations.upgrade(empty_engine, sql_dir)
    first = sorted(sql_dir.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")
    states = {s.filename: s.status for s in migrations.status(empty_engine, sql_dir)}
    assert states[first.name] == "modified"


def test_discover_refuses_bad_names(tmp_path: Path):
    (tmp_path / "001_ok.sql").write_text("select 1;")
    (tmp_path / "1_bad.sql").write_text("select 1;")
    with pytest.raises(ValueError, match="NNN_verb_object"):
        migrations.discover(tmp_path)
