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
    "settings",
    "labels",
    "performance_estimates",
    "performance_alerts",
    "prediction_evidence",
    "sweeps",
    "sweep_candidates",
    "training_lease",
    "schema_migrations",
}
VIEWS = {
    "latest_predictions",
    "daily_summary",
    "model_leaderboard",
    "drift_summary",
    "pending_labels",
    "label_conflicts",
    "realized_performance",
    "fake_picture_matches",
    "verdict_evidence",
}


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
    # Files up to LEGACY_HEAD commit one by one and stay applied; the later ones share one
    # transaction with the views' rebuild, so they wait with the broken file for the next try.
    later = {f for f in states if int(f[:3]) > migrations.LEGACY_HEAD}
    assert {states.pop(f) for f in later} <= {"pending"}
    assert set(states.values()) == {"applied"}


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


def test_an_existing_database_upgrades_and_old_quarantine_rows_keep_working(empty_engine):
    """A database at 013 with a whole-row quarantine record and a batch: 014 keeps both and
    allows an entry recorded without a content hash."""
    import sqlalchemy as sa

    old = [m for m in migrations.discover() if m.filename < "014"]
    with empty_engine.connect() as conn:
        conn.exec_driver_sql(migrations._BOOTSTRAP)
        for m in old:
            conn.exec_driver_sql(m.sql)
            conn.execute(sa.text("insert into fnd.schema_migrations (filename, sha256) "
                                 "values (:f, :s)"), {"f": m.filename, "s": m.sha256})  # fmt: skip
        batch = conn.exec_driver_sql(
            "insert into fnd.ingest_batches (source_uri, content_sha256, status) values "
            "('/l/a.jsonl', repeat('a', 64), 'failed') returning batch_id"
        ).scalar_one()
        conn.execute(sa.text("insert into fnd.quarantine (batch_id, row_number, rule, reason, raw)"
                             " values (:b, 1, 'parse_error', 'why', :raw)"),
                     {"b": batch, "raw": "x" * 100_000})  # fmt: skip
        conn.commit()
    applied = migrations.upgrade(empty_engine)
    assert applied[0].startswith("014_") and any(a.startswith("016_") for a in applied)
    with empty_engine.begin() as conn:
        row = conn.exec_driver_sql(
            "select length(raw), raw_n_bytes, raw_sha256 from fnd.quarantine"
        ).one()
        assert tuple(row) == (100_000, None, None)
        conn.exec_driver_sql("insert into fnd.ingest_batches (source_uri, status, error) values "
                             "('/l/loop.jsonl', 'failed', 'a symbolic link')")  # fmt: skip


def test_the_ui_login_can_only_read_even_after_reset_role(engine, db_url, tmp_path):
    """fnd_ui (migration 016, password set by `fnd db upgrade`) holds fnd_reader only:
    RESET ROLE gives back a role that still cannot write or create anything."""
    import sqlalchemy as sa

    from fnd_core.io.db import reader_login_url
    from fnd_core.settings import Settings
    from fnd_core.stack.local_setup import ensure_reader_login, reader_password

    settings = Settings(home=tmp_path / "home", database_url=db_url)
    password = ensure_reader_login(engine, settings)
    assert password and password == reader_password(settings)  # generated once, then kept
    kept = tmp_path / "home" / "db_read_password"
    assert kept.stat().st_mode & 0o777 == 0o600
    given = Settings(home=tmp_path / "home", database_url=db_url, db_read_password="from-env")
    assert reader_password(given) == "from-env"
    reader = make_engine(reader_login_url(db_url, password))
    try:
        with reader.connect() as conn:
            conn.exec_driver_sql("set transaction read write")  # read-only is only a default
            conn.exec_driver_sql("reset role")
            assert conn.exec_driver_sql("select current_user").scalar() == "fnd_ui"
            conn.exec_driver_sql("select count(*) from fnd.posts")  # reading works
            for sql in (
                "insert into fnd.ingest_batches (source_uri, status) values ('x', 'failed')",
                "delete from fnd.posts",
                "create table fnd.evil (x int)",
                "set role postgres",
                "grant fnd_reader to public",
            ):
                with pytest.raises(sa.exc.DBAPIError), conn.begin_nested():
                    conn.exec_driver_sql(sql)
    finally:
        reader.dispose()
    from fnd_core.io.db import make_reader_engine
    from fnd_core.observe import monitoring_quality

    pages = make_reader_engine(reader_login_url(db_url, password))  # what the plugin builds
    try:
        assert monitoring_quality.validation_runs(pages, limit=1).total >= 0
    finally:
        pages.dispose()


VIEW_SHAPE = """
    select c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
           col_description(c.oid, a.attnum), obj_description(c.oid, 'pg_class'),
           has_table_privilege('fnd_analyst', c.oid, 'select'),
           has_table_privilege('fnd_reader', c.oid, 'select')
    from pg_class c join pg_attribute a on a.attrelid = c.oid
    where c.relnamespace = 'fnd'::regnamespace and c.relkind = 'v' and a.attnum > 0
    order by 1, 2
"""


def _view_shape(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(VIEW_SHAPE).all()]


def _upgrade_to(engine, tmp_path: Path, head: int) -> None:
    """Migrations up to ``head`` only, as a database upgraded before the later ones existed."""
    part = tmp_path / f"sql_{head}"
    part.mkdir()
    for m in migrations.discover():
        if m.number <= head:
            shutil.copy(m.path, part / m.filename)
    migrations.upgrade(engine, part)


def test_each_view_is_defined_once_in_its_own_file():
    views = migrations.discover_views(migrations.SQL_DIR / "views")
    assert {v.name for v in views} == VIEWS
    for m in migrations.discover():
        if m.number > migrations.LEGACY_HEAD:
            assert " view " not in m.sql.lower(), f"{m.filename} declares a view"


@pytest.mark.parametrize("head", range(1, migrations.LEGACY_HEAD + 1))
def test_a_database_at_any_earlier_head_upgrades_to_the_same_views(
    create_database, engine, tmp_path, head
):
    """Upgrading from every earlier head ends with the views of a fresh install: the same
    columns, types, comments and grants."""
    old = make_engine(create_database())
    try:
        _upgrade_to(old, tmp_path, head)
        migrations.upgrade(old)
        assert {s.status for s in migrations.status(old)} == {"applied"}
        assert _view_shape(old) == _view_shape(engine)
    finally:
        old.dispose()


def test_views_are_created_after_the_views_they_require(tmp_path):
    (tmp_path / "b.sql").write_text("-- requires: fnd.a\ncreate view fnd.b as select 1;\n")
    (tmp_path / "a.sql").write_text("-- requires: c\ncreate view fnd.a as select 1;\n")
    (tmp_path / "c.sql").write_text("-- requires: none\ncreate view fnd.c as select 1;\n")
    assert [v.name for v in migrations.discover_views(tmp_path)] == ["c", "a", "b"]
    (tmp_path / "c.sql").write_text("-- requires: b\ncreate view fnd.c as select 1;\n")
    with pytest.raises(ValueError, match="cycle"):
        migrations.discover_views(tmp_path)


def test_a_broken_view_rolls_the_whole_upgrade_back(empty_engine, tmp_path):
    """A view that cannot be created leaves the database as it was: views included."""
    migrations.upgrade(empty_engine)
    before = _view_shape(empty_engine)
    broken = tmp_path / "sql"
    shutil.copytree(migrations.SQL_DIR, broken)
    (broken / "900_add_a_column.sql").write_text("alter table fnd.posts add column x int;\n")
    (broken / "views" / "latest_predictions.sql").write_text(
        "create view fnd.latest_predictions as select no_such_column from fnd.posts;\n"
    )
    with pytest.raises(migrations.MigrationError, match="latest_predictions"):
        migrations.upgrade(empty_engine, broken)
    assert _view_shape(empty_engine) == before
    assert "900_add_a_column.sql" not in {s.filename for s in migrations.status(empty_engine)
                                          if s.status == "applied"}  # fmt: skip
