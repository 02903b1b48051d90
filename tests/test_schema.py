"""Constraints and rights the database itself guarantees."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError, ProgrammingError

SHA = "a" * 64


def _batch(conn) -> int:
    return conn.exec_driver_sql(
        "insert into fnd.ingest_batches (source_uri, content_sha256) values ('f.jsonl', %s) "
        "returning batch_id",
        (SHA,),
    ).scalar_one()


def _post(conn, batch_id: int, post_id: str = "p1", label: int | None = 1) -> None:
    conn.exec_driver_sql(
        "insert into fnd.posts (post_id, source, text, image_uri, image_sha256, label, "
        "batch_id) values (%s, 'test', 'hello', 'img.jpg', %s, %s, %s)",
        (post_id, SHA, label, batch_id),
    )


def _model(conn, version: str, status: str = "candidate") -> None:
    conn.exec_driver_sql(
        "insert into fnd.model_versions (version, status, preset, artifact_uri, artifact_sha256) "
        "values (%s, %s, 'tiny', 'store/x', %s)",
        (version, status, SHA),
    )


def test_duplicate_post_id_is_refused(clean_db):
    with pytest.raises(IntegrityError, match="posts_pkey"), clean_db.begin() as conn:
        batch = _batch(conn)
        _post(conn, batch, "p1")
        _post(conn, batch, "p1")


def test_invalid_label_is_refused(clean_db):
    with pytest.raises(IntegrityError, match="posts_label_is_binary"), clean_db.begin() as conn:
        _post(conn, _batch(conn), "p1", label=2)


def test_same_file_content_twice_is_refused(clean_db):
    with pytest.raises(IntegrityError, match="content_is_unique"), clean_db.begin() as conn:
        _batch(conn)
        _batch(conn)


def test_loaded_batch_counts_must_add_up(clean_db):
    with pytest.raises(IntegrityError, match="counts_add_up"), clean_db.begin() as conn:
        batch = _batch(conn)
        conn.exec_driver_sql(
            "update fnd.ingest_batches set status = 'loaded', n_received = 3, n_accepted = 1 "
            "where batch_id = %s",
            (batch,),
        )


def test_at_most_one_champion(clean_db):
    with clean_db.begin() as conn:
        _model(conn, "m1", "champion")
        _model(conn, "m2", "retired")
    with pytest.raises(IntegrityError, match="one_champion"), clean_db.begin() as conn:
        _model(conn, "m3", "champion")


def test_prediction_label_must_match_threshold(clean_db):
    with clean_db.begin() as conn:
        _post(conn, _batch(conn))
        _model(conn, "m1", "champion")
    with pytest.raises(IntegrityError, match="matches_threshold"), clean_db.begin() as conn:
        conn.exec_driver_sql(
            "insert into fnd.predictions (post_id, model_version, p_fake, label, threshold) "
            "values ('p1', 'm1', 0.9, 'real', 0.5)"
        )


def test_the_first_verdict_is_recorded_on_insert_and_kept_by_every_update(clean_db):
    with clean_db.begin() as conn:
        _post(conn, _batch(conn))
        _model(conn, "m1", "champion")
        conn.exec_driver_sql(
            "insert into fnd.predictions (post_id, model_version, p_fake, label, threshold, "
            "scored_at) values ('p1', 'm1', 0.3, 'real', 0.5, '2026-01-05 10:00+00')"
        )
        # A rescore at a moved threshold, then a writer trying to rewrite history.
        conn.exec_driver_sql(
            "update fnd.predictions set p_fake = 0.4, label = 'fake', threshold = 0.35, "
            "scored_at = '2026-02-01 10:00+00'"
        )
        conn.exec_driver_sql(
            "update fnd.predictions set first_p_fake = 0.9, first_label = 'fake', "
            "first_scored_at = now()"
        )
    with clean_db.connect() as conn:
        row = conn.exec_driver_sql(
            "select p_fake, label, scored_at::date::text, first_p_fake, first_label, "
            "first_scored_at::date::text from fnd.predictions"
        ).one()
    assert tuple(row) == (pytest.approx(0.4), "fake", "2026-02-01",
                          pytest.approx(0.3), "real", "2026-01-05")  # fmt: skip


def test_latest_predictions_shows_only_the_champion(clean_db):
    with clean_db.begin() as conn:
        _post(conn, _batch(conn))
        _model(conn, "old", "retired")
        _model(conn, "new", "champion")
        conn.exec_driver_sql(
            "insert into fnd.predictions (post_id, model_version, p_fake, label, threshold) "
            "values ('p1', 'old', 0.2, 'real', 0.5), ('p1', 'new', 0.8, 'fake', 0.5)"
        )
    with clean_db.connect() as conn:
        rows = conn.exec_driver_sql(
            "select post_id, model_version, label, text from fnd.latest_predictions"
        ).all()
        summary = conn.exec_driver_sql(
            "select n_posts, n_scored, n_fake, fake_share from fnd.daily_summary"
        ).one()
    assert rows == [("p1", "new", "fake", "hello")]
    assert tuple(summary) == (1, 1, 1, 1)


@pytest.fixture
def as_analyst(engine):
    """A connection whose role is fnd_analyst, rolled back afterwards."""
    with engine.connect() as conn:
        conn.exec_driver_sql("set role fnd_analyst")
        yield conn
        conn.rollback()


@pytest.mark.parametrize("view", ["latest_predictions", "daily_summary", "model_leaderboard"])
def test_analyst_reads_views(as_analyst, view):
    as_analyst.exec_driver_sql(f"select * from fnd.{view} limit 1").all()


@pytest.mark.parametrize(
    "statement",
    [
        "insert into fnd.predictions (post_id, model_version, p_fake, label, threshold) "
        "values ('p', 'm', 0.5, 'fake', 0.5)",
        "select * from fnd.posts",
        "delete from fnd.model_versions",
    ],
)
def test_analyst_cannot_touch_tables(as_analyst, statement):
    with pytest.raises(ProgrammingError, match="permission denied"):
        as_analyst.exec_driver_sql(statement)


def test_the_plugins_engine_reads_every_table_and_writes_none(db_url):
    """Even a statement that drops the role first (an injected ``reset role``) cannot write."""
    import sqlalchemy as sa

    from fnd_core.io.db import make_reader_engine

    engine = make_reader_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("select current_user").scalar() == "fnd_reader"
            for table in ("posts", "predictions", "model_versions", "quarantine",
                          "validation_runs", "ingest_batches", "model_leaderboard"):  # fmt: skip
                conn.exec_driver_sql(f"select * from fnd.{table} limit 1").all()
            conn.rollback()
            with pytest.raises(sa.exc.DBAPIError, match="permission denied|read-only"):
                conn.exec_driver_sql("delete from fnd.model_versions")
            conn.rollback()
            conn.exec_driver_sql("reset role")
            with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
                conn.exec_driver_sql("delete from fnd.model_versions")
    finally:
        engine.dispose()


def test_connections_carry_connect_and_statement_timeouts(db_url):
    from fnd_core.io.db import STATEMENT_TIMEOUT_MS, make_engine

    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("show statement_timeout").scalar() == "30min"
        assert conn.exec_driver_sql("show lock_timeout").scalar() == "5min"
    engine.dispose()
    own = make_engine(
        db_url + ("&" if "?" in db_url else "?") + "options=-c%20statement_timeout%3D7s"
    )
    with own.connect() as conn:  # a URL's own options win over fnd's defaults
        assert conn.exec_driver_sql("show statement_timeout").scalar() == "7s"
    own.dispose()
    assert STATEMENT_TIMEOUT_MS == 30 * 60 * 1000


def _readme_first_sql() -> list[str]:
    """The statements of the README's "The SQL to run first" block."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split("## The SQL to run first", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    return [s.strip() for s in block.split(";") if s.strip()]


def test_the_readme_first_queries_run_and_their_views_are_the_analysts(as_analyst, engine):
    statements = _readme_first_sql()
    assert len(statements) == 7
    for statement in statements:
        if "fnd.quarantine" in statement:  # a table: not the analysts'
            with engine.connect() as conn:
                conn.exec_driver_sql(statement).all()
        else:
            as_analyst.exec_driver_sql(statement).all()
