"""COPY-based bulk writes keep awkward values byte-exact and are idempotent."""

from __future__ import annotations

from fnd_core.io.pgcopy import copy_into, upsert_via_staging

AWKWARD = [
    'comma, "quotes" and \\backslashes\\',
    "line one\nline two\r\nthree",
    r"\N",  # the NULL marker as text stays text
    "emoji 🧪, RTL שלום, combining e\u0301",
    "",
    "100% sure",
]


def test_copy_round_trips_awkward_text(engine):
    with engine.begin() as conn:
        conn.exec_driver_sql("create temp table t (i int, s text, j jsonb) on commit drop")
        rows = [(i, s, {"v": s}) for i, s in enumerate(AWKWARD)] + [(99, None, None)]
        copy_into(conn, "t", ["i", "s", "j"], rows)
        got = conn.exec_driver_sql("select i, s, j from t order by i").all()
    assert [r[1] for r in got[:-1]] == AWKWARD
    assert [r[2]["v"] for r in got[:-1]] == AWKWARD
    assert tuple(got[-1]) == (99, None, None)


def test_upsert_via_staging_is_idempotent(engine):
    with engine.begin() as conn:
        conn.exec_driver_sql("create temp table u (k text primary key, v int) on commit drop")
        first = upsert_via_staging(conn, "u", ["k", "v"], [("a", 1), ("b", 2)], returning="k")
        second = upsert_via_staging(conn, "u", ["k", "v"], [("a", 9), ("c", 3)], returning="k")
        rows = conn.exec_driver_sql("select k, v from u order by k").all()
    assert sorted(first) == [("a",), ("b",)]
    assert second == [("c",)]
    assert [tuple(r) for r in rows] == [("a", 1), ("b", 2), ("c", 3)]
