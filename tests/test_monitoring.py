"""The monitoring pages' queries against Postgres: exact results on known rows, and bounds.

Rows are written with plain SQL so every expected number is known. The last test fills a
database with a million predictions and prints how long each page's queries take (the
figures are reported, not asserted: timings depend on the machine).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from fnd_core.io import migrations
from fnd_core.io.db import make_engine
from fnd_core.observe import (
    monitoring,
    monitoring_models,
    monitoring_quality,
    monitoring_runs,
    monitoring_scores,
    notify,
)

T0 = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
FAILED_EXPECTATION = {
    "expectation_type": "expect_column_values_to_not_be_null",
    "column": "text",
    "success": False,
    "unexpected_count": 2,
    "unexpected_percent": 40.0,
    "observed_value": None,
}
PASSED_EXPECTATION = {**FAILED_EXPECTATION, "column": "post_id", "success": True}


def sha(n: int) -> str:
    return f"{n:064x}"


def run(conn, sql: str, **params):
    return conn.execute(sa.text(sql), params)


def add_batch(conn, name: str, status: str, *, n: int, n_q: int, run_id: str, error=None) -> int:
    return run(
        conn,
        "insert into fnd.ingest_batches (source_uri, content_sha256, status, n_received, "
        "n_accepted, n_quarantined, error, run_id) values (:u, :s, :st, :r, :a, :q, :e, :run) "
        "returning batch_id",
        u=f"/landing/{name}",
        s=hashlib.sha256(name.encode()).hexdigest(),
        st=status,
        r=n + n_q if status == "loaded" else n_q,
        a=n if status == "loaded" else 0,
        q=n_q,
        e=error,
        run=run_id,
    ).scalar_one()


def add_quarantine(conn, batch_id: int, rules: list[str]) -> None:
    for i, rule in enumerate(rules, start=1):
        run(
            conn,
            "insert into fnd.quarantine (batch_id, row_number, post_id, rule, reason, raw) "
            "values (:b, :n, :p, :rule, :reason, :raw)",
            b=batch_id,
            n=i,
            p=f"q{i}",
            rule=rule,
            reason=f"row {i} broke {rule}",
            raw=json.dumps({"id": f"q{i}", "text": ""}),
        )


def add_validation(conn, batch_id, suite, *, success, at, run_id, docs=None) -> None:
    results = [PASSED_EXPECTATION] + ([] if success else [FAILED_EXPECTATION])
    run(
        conn,
        "insert into fnd.validation_runs (suite, batch_id, batch_name, success, "
        "n_evaluated_rows, statistics, results, data_docs_uri, validated_at, run_id) values "
        "(:suite, :b, :name, :ok, 5, cast(:stats as jsonb), cast(:results as jsonb), :docs, "
        ":at, :run)",
        suite=suite,
        b=batch_id,
        name=f"{suite}-{batch_id}",
        ok=success,
        stats=json.dumps(
            {"evaluated_expectations": len(results), "unsuccessful_expectations": 1 - success}
        ),
        results=json.dumps(results),
        docs=docs,
        at=at,
        run=run_id,
    )


GATE_CHECKS = [{"name": "floor", "value": 0.84, "bound": 0.6, "passed": True}]


def add_model(conn, version: str, status: str, created: datetime, accuracy: float) -> None:
    metrics = {
        "test": {
            "accuracy": accuracy,
            "precision": 0.625,
            "recall": 0.875,
            "f1": 0.5,
            "roc_auc": 0.75,
            "confusion_matrix": [[3, 1], [1, 3]],
        },
        "val": {"accuracy": 0.8, "threshold": 0.5},
        "cv": {"metric": "balanced_accuracy", "estimate": 0.84, "fold_std": 0.03,
               "n_folds": 5, "n_repeats": 2},
        "baselines": {"text_lr": {"estimate": 0.55}, "prior": {"estimate": 0.5}},
        "leak": {"split_policy": "grouped_stratified_kfold", "n_groups": 7},
    }  # fmt: skip
    gate = {
        "decision": "promote",
        "reason": "all checks passed",
        "forced_by": None,
        "checks": GATE_CHECKS,
        "evaluation": {"champion": {"version": "m1"}},
    }
    run(
        conn,
        "insert into fnd.model_versions (version, status, preset, created_at, metrics, gate, "
        "artifact_uri, artifact_sha256, training_run_id, retired_at) values (:v, :st, 'tiny', "
        ":c, cast(:m as jsonb), cast(:g as jsonb), :uri, :sha, :run, :retired)",
        v=version,
        st=status,
        c=created,
        m=json.dumps(metrics),
        g=json.dumps(gate),
        uri=f"/store/models/{version}",
        sha=sha(7),
        run=f"train-{version}",
        retired=created + timedelta(hours=1) if status == "retired" else None,
    )


def add_post(conn, post_id: str, batch_id: int, created: datetime | None, image: int) -> None:
    run(
        conn,
        "insert into fnd.posts (post_id, source, text, image_uri, image_sha256, created_at, "
        "batch_id) values (:p, 'test', :t, :uri, :sha, :c, :b)",
        p=post_id,
        t=f"text of {post_id}",
        uri=f"/store/images/{sha(image)}.jpg",
        sha=sha(image),
        c=created,
        b=batch_id,
    )


def add_prediction(conn, post_id: str, version: str, p_fake: float) -> None:
    run(
        conn,
        "insert into fnd.predictions (post_id, model_version, p_fake, label, threshold) "
        "values (:p, :v, :pf, :label, 0.5)",
        p=post_id,
        v=version,
        pf=p_fake,
        label="fake" if p_fake >= 0.5 else "real",
    )


@pytest.fixture
def seeded(clean_db):
    """Two ingest batches (one failed), a training snapshot, two champions, six posts.

    Posts (publication time in UTC, champion p_fake, previous p_fake):
        d1 2024-03-08 09:00: 0.92 / 0.22     d2 2024-03-08 23:30: 0.13 / 0.33
        d3 2024-03-10 08:00: 0.74 / 0.81     d4 2024-03-10 12:00: 0.95 / (not scored)
        d5 2024-03-10 11:00: (not scored by the champion) / 0.64
    """
    with clean_db.begin() as conn:
        ok = add_batch(conn, "good.jsonl", "loaded", n=6, n_q=3, run_id="ingest-1")
        bad = add_batch(
            conn, "bad.jsonl", "failed", n=0, n_q=2, run_id="ingest-2", error="2 of 2 rows"
        )
        add_quarantine(conn, ok, ["image_missing", "text_empty", "image_missing"])
        add_quarantine(conn, bad, ["id_missing", "id_missing"])
        add_validation(
            conn,
            ok,
            "posts",
            success=True,
            at=T0,
            run_id="ingest-1",
            docs="/data_docs/validations/posts/good/1.html",
        )
        add_validation(conn, bad, "posts", success=False, at=T0 + timedelta(1), run_id="ingest-2")
        add_validation(
            conn, None, "training_set", success=True, at=T0 + timedelta(2), run_id="train-m2"
        )
        add_model(conn, "m1", "retired", T0, 0.81)
        add_model(conn, "m2", "champion", T0 + timedelta(1), 0.86)
        add_model(conn, "m3", "rejected", T0 + timedelta(2), 0.61)
        posts = {
            "d1": (datetime(2024, 3, 8, 9, tzinfo=UTC), 0.92, 0.22),
            "d2": (datetime(2024, 3, 8, 23, 30, tzinfo=UTC), 0.13, 0.33),
            "d3": (datetime(2024, 3, 10, 8, tzinfo=UTC), 0.74, 0.81),
            "d4": (datetime(2024, 3, 10, 12, tzinfo=UTC), 0.95, None),
            "d5": (datetime(2024, 3, 10, 11, tzinfo=UTC), None, 0.64),
        }
        for i, (post_id, (created, champ, prev)) in enumerate(posts.items()):
            add_post(conn, post_id, ok, created, image=100 + i)
            if champ is not None:
                add_prediction(conn, post_id, "m2", champ)
            if prev is not None:
                add_prediction(conn, post_id, "m1", prev)
    return clean_db


# Data quality ---------------------------------------------------------------------------


def test_validation_runs_newest_first_with_failures_and_quarantine(seeded):
    page = monitoring_quality.validation_runs(seeded)
    assert page.total == 3 and not page.has_next
    assert [v["suite"] for v in page.items] == ["training_set", "posts", "posts"]
    snapshot, failed, passed = page.items
    assert snapshot["batch_id"] is None and snapshot["quarantine_rules"] == []
    assert failed["success"] is False and failed["batch_status"] == "failed"
    assert failed["failed_expectations"] == [FAILED_EXPECTATION]
    assert failed["n_expectations"] == 2 and failed["n_failed_expectations"] == 1
    assert failed["batch_error"] == "2 of 2 rows"
    assert [(r["rule"], r["n_rows"]) for r in failed["quarantine_rules"]] == [("id_missing", 2)]
    assert passed["failed_expectations"] == []
    assert [(r["rule"], r["n_rows"]) for r in passed["quarantine_rules"]] == [
        ("image_missing", 2),
        ("text_empty", 1),
    ]
    assert passed["quarantine_rules"][0]["example_reason"] == "row 1 broke image_missing"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"run_id": "ingest-2"}, ["ingest-2"]),
        ({"suite": "training_set"}, ["train-m2"]),
        ({"success": False}, ["ingest-2"]),
        ({"success": True, "suite": "posts"}, ["ingest-1"]),
        ({"run_id": "nobody"}, []),
    ],
)
def test_validation_runs_filters(seeded, filters, expected):
    page = monitoring_quality.validation_runs(seeded, **filters)
    assert [v["run_id"] for v in page.items] == expected
    assert page.total == len(expected)


def test_validation_runs_paginate(seeded):
    first = monitoring_quality.validation_runs(seeded, limit=2)
    second = monitoring_quality.validation_runs(seeded, limit=2, offset=2)
    assert (len(first.items), first.has_next, first.total) == (2, True, 3)
    assert (len(second.items), second.has_next) == (1, False)
    ids = [v["validation_id"] for v in first.items + second.items]
    assert len(set(ids)) == 3


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (monitoring.MAX_LIMIT + 1, 0), (10, -1)])
def test_pages_refuse_unbounded_requests(clean_db, limit, offset):
    with pytest.raises(ValueError, match="limit|offset"):
        monitoring_quality.validation_runs(clean_db, limit=limit, offset=offset)


def test_batch_quarantine_rows_in_file_order_by_rule(seeded):
    [batch_id] = [
        v["batch_id"] for v in monitoring_quality.validation_runs(seeded, run_id="ingest-1").items
    ]
    batch = monitoring_quality.ingest_batch(seeded, batch_id)
    assert batch["source_uri"] == "/landing/good.jsonl" and batch["n_quarantined"] == 3
    assert monitoring_quality.ingest_batch(seeded, batch_id + 100) is None
    rows = monitoring_quality.quarantined_rows(seeded, batch_id)
    assert [r["row_number"] for r in rows.items] == [1, 2, 3] and rows.total == 3
    assert json.loads(rows.items[0]["raw"]) == {"id": "q1", "text": ""}
    only = monitoring_quality.quarantined_rows(
        seeded, batch_id, rule="image_missing", limit=1, offset=1
    )
    assert [r["row_number"] for r in only.items] == [3] and only.total == 2
    assert [r["rule"] for r in monitoring_quality.quarantine_rules(seeded, batch_id)] == [
        "image_missing",
        "text_empty",
    ]


@pytest.mark.parametrize(
    ("stored", "root", "expected"),
    [
        ("/docs/validations/posts/a/1.html", "/docs", "validations/posts/a/1.html"),
        ("file:///docs/validations/p/1.html", "/docs", "validations/p/1.html"),
        ("/other/mount/validations/p/r/1.html", "/docs", "validations/p/r/1.html"),
        ("/docs/../etc/passwd", "/docs", None),
        (None, "/docs", None),
    ],
)
def test_data_docs_relative_path(stored, root, expected):
    assert monitoring_quality.data_docs_relative_path(stored, root) == expected


def test_failed_expectation_names():
    names = monitoring_quality.failed_expectation_names(
        [
            FAILED_EXPECTATION,
            {"expectation_type": "expect_table_row_count_to_be_between", "observed_value": 3},
        ]
    )
    assert names == [
        "expect_column_values_to_not_be_null(text): 2 unexpected",
        "expect_table_row_count_to_be_between: observed 3",
    ]


# Models ---------------------------------------------------------------------------------


def test_leaderboard_newest_first_with_metrics_and_gate(seeded):
    page = monitoring_models.model_leaderboard(seeded)
    assert [m["version"] for m in page.items] == ["m3", "m2", "m1"]
    m2 = page.items[1]
    assert m2["status"] == "champion" and m2["test_accuracy"] == 0.86
    assert (m2["test_f1"], m2["test_roc_auc"]) == (0.5, 0.75)
    assert (m2["test_precision"], m2["test_recall"]) == (0.625, 0.875)
    assert m2["test_confusion"] == [[3, 1], [1, 3]]
    assert (m2["val_accuracy"], m2["threshold"]) == (0.8, 0.5)
    assert (m2["gate_decision"], m2["gate_reason"]) == ("promote", "all checks passed")
    assert (m2["gate_metric"], m2["gate_estimate"], m2["gate_estimate_fold_std"]) == (
        "balanced_accuracy",
        0.84,
        0.03,
    )
    assert (m2["cv_folds"], m2["cv_repeats"]) == (5, 2)
    # recorded before estimates counted stories: the estimate was the post-counted one
    assert (m2["gate_counted_by"], m2["gate_estimate_by_post"]) == ("posts", 0.84)
    assert (m2["baseline_text_lr"], m2["baseline_prior"]) == (0.55, 0.5)
    assert m2["champion_recipe_estimate"] is None and m2["floor_set_by"] is None
    assert m2["gate_checks"] == GATE_CHECKS and m2["compared_with"] == "m1"
    assert m2["leak"] == {"split_policy": "grouped_stratified_kfold", "n_groups": 7}
    assert (m2["artifact_uri"], m2["training_run_id"]) == ("/store/models/m2", "train-m2")
    assert monitoring_models.model_leaderboard(seeded, run_id="train-m1").total == 1
    only_m1 = monitoring_models.model_leaderboard(seeded, version="m1")
    assert [m["version"] for m in only_m1.items] == ["m1"]
    assert monitoring_models.model_artifact(seeded, "m2") == ("/store/models/m2", sha(7))
    assert monitoring_models.model_artifact(seeded, "nope") is None
    assert monitoring_models.champions(seeded) == monitoring_models.Champions("m2", "m1")


def test_leaderboard_is_the_analysts_view(seeded):
    """The page reads fnd.model_leaderboard: what analysts see is what the page shows."""
    with seeded.connect() as conn:
        view = conn.execute(
            sa.text("select version, gate_estimate, cv_folds from fnd.model_leaderboard")
        ).all()
    page = monitoring_models.model_leaderboard(seeded).items
    assert [(v, float(e), f) for v, e, f in view] == [
        (m["version"], m["gate_estimate"], m["cv_folds"]) for m in page
    ]


# Scores ---------------------------------------------------------------------------------

DAY_8 = {"day": date(2024, 3, 8), "n_posts": 2, "n_scored": 2, "n_fake": 1, "fake_share": 0.5}
DAY_9 = {"day": date(2024, 3, 9), "n_posts": 0, "n_scored": 0, "n_fake": 0, "fake_share": None}
# d3, d4 and d5; d5 is not scored by the champion.
DAY_10 = {"day": date(2024, 3, 10), "n_posts": 3, "n_scored": 2, "n_fake": 2, "fake_share": 1.0}


def test_daily_volume_counts_each_day_up_to_the_newest_post(seeded):
    daily = monitoring_scores.daily_volume(seeded, days=3)
    # d2, published 2024-03-08 23:30 UTC, counts on 2024-03-08 (its UTC day)
    assert daily == {"champion": "m2", "days": [DAY_8, DAY_9, DAY_10]}
    assert monitoring_scores.daily_volume(seeded, days=1) == {"champion": "m2", "days": [DAY_10]}


@pytest.fixture
def tokyo(db_url):
    """An engine whose sessions run in Tokyo time (UTC+9): 2024-03-08 23:30 UTC is the 9th there."""
    engine = make_engine(db_url, connect_args={"options": "-c timezone=Asia/Tokyo"})
    yield engine
    engine.dispose()


def test_days_are_utc_days_whatever_the_session_time_zone(seeded, tokyo):
    with tokyo.connect() as conn:
        assert conn.exec_driver_sql("show timezone").scalar() == "Asia/Tokyo"
        view = conn.exec_driver_sql(
            "select day, n_posts, n_scored, n_fake, fake_share from fnd.daily_summary"
        ).all()
    assert [tuple(r) for r in view] == [
        (date(2024, 3, 8), 2, 2, 1, Decimal("0.5000")),
        (date(2024, 3, 10), 3, 2, 2, Decimal("1.0000")),
    ]
    assert monitoring_scores.daily_volume(tokyo, days=3)["days"] == [DAY_8, DAY_9, DAY_10]


def test_daily_volume_follows_the_champion_the_view_counts(seeded):
    with seeded.begin() as conn:
        run(conn, "update fnd.model_versions set status = 'retired' where version = 'm2'")
        run(conn, "update fnd.model_versions set status = 'champion' where version = 'm1'")
    daily = monitoring_scores.daily_volume(seeded, days=1)
    # m1 scored d3 (0.81) and d5 (0.64), not d4
    assert daily == {
        "champion": "m1",
        "days": [
            {"day": date(2024, 3, 10), "n_posts": 3, "n_scored": 2, "n_fake": 2, "fake_share": 1.0}
        ],
    }


def test_daily_volume_without_posts_or_with_a_bad_window(clean_db):
    assert monitoring_scores.daily_volume(clean_db) == {"champion": None, "days": []}
    with pytest.raises(ValueError, match="days"):
        monitoring_scores.daily_volume(clean_db, days=0)


def test_score_comparison_uses_the_posts_both_champions_scored(seeded):
    result = monitoring_scores.score_comparison(seeded, n_posts=10, window=10, bins=10)
    assert (result["champion"], result["previous"], result["n_posts"]) == ("m2", "m1", 3)
    champion = [b["champion"] for b in result["bins"]]
    previous = [b["previous"] for b in result["bins"]]
    # d1, d2, d3 (d4 lacks the previous verdict): champion 0.92, 0.13, 0.74 / previous
    # 0.22, 0.33, 0.81
    assert champion == [0, 1, 0, 0, 0, 0, 0, 1, 0, 1]
    assert previous == [0, 0, 1, 1, 0, 0, 0, 0, 1, 0]
    assert result["agreement"] == pytest.approx(2 / 3)  # d1 differs: fake vs real
    assert result["champion_mean"] == pytest.approx((0.92 + 0.13 + 0.74) / 3, abs=1e-6)
    assert result["bins"][0] == {"lo": 0.0, "hi": 0.1, "champion": 0, "previous": 0}


def test_score_comparison_newest_posts_first_and_alone_without_previous(seeded):
    newest = monitoring_scores.score_comparison(seeded, n_posts=1, window=10, bins=2)
    assert newest["n_posts"] == 1 and newest["bins"][1]["champion"] == 1  # d3: 0.74
    with seeded.begin() as conn:
        run(conn, "update fnd.model_versions set status = 'rejected' where version = 'm1'")
    alone = monitoring_scores.score_comparison(seeded, n_posts=10, window=10, bins=2)
    assert alone["previous"] is None and alone["n_posts"] == 4
    assert sum(b["previous"] for b in alone["bins"]) == 0


def test_score_comparison_before_any_champion(clean_db):
    result = monitoring_scores.score_comparison(clean_db, bins=4)
    assert (result["champion"], result["n_posts"], len(result["bins"])) == (None, 0, 4)
    with pytest.raises(ValueError, match="n_posts"):
        monitoring_scores.score_comparison(clean_db, n_posts=10, window=5)


def test_latest_flagged_fake_newest_first_with_next_page(seeded):
    first = monitoring_scores.latest_flagged_fake(seeded, limit=2)
    assert [p["post_id"] for p in first["items"]] == ["d4", "d3"] and first["has_more"]
    assert first["items"][0]["p_fake"] == pytest.approx(0.95)
    assert first["items"][0]["text"] == "text of d4"
    rest = monitoring_scores.latest_flagged_fake(seeded, limit=2, offset=2)
    assert [p["post_id"] for p in rest["items"]] == ["d1"] and not rest["has_more"]
    assert monitoring_scores.image_uri(seeded, sha(100)) == f"/store/images/{sha(100)}.jpg"
    assert monitoring_scores.image_uri(seeded, sha(1)) is None


# Failures -------------------------------------------------------------------------------


def test_run_records_of_a_failed_ingest(seeded):
    records = monitoring_runs.run_records(seeded, "ingest-2", source_uri="/landing/bad.jsonl")
    [batch] = records.batches
    assert (batch["status"], batch["error"]) == ("failed", "2 of 2 rows")
    assert batch["quarantine_rules"] == [
        {"rule": "id_missing", "n_rows": 2, "example_reason": "row 1 broke id_missing"}
    ]
    [validation] = records.failed_validations
    assert validation["failed_expectations"] == [FAILED_EXPECTATION]
    assert records.models == []
    assert monitoring_runs.run_records(seeded, "ingest-2", source_uri="/landing/x").batches == []


def test_run_records_of_a_training_run(seeded):
    records = monitoring_runs.run_records(seeded, "train-m3")
    assert [m["version"] for m in records.models] == ["m3"]
    assert records.models[0]["test_accuracy"] == pytest.approx(0.61)
    assert records.batches == [] and records.failed_validations == []


# Scale ----------------------------------------------------------------------------------

MILLION = """
set session_replication_role = replica;  -- skip FK triggers: this database is throwaway
insert into fnd.ingest_batches (source_uri, content_sha256, status)
values ('generated', repeat('a', 64), 'running');
insert into fnd.posts (post_id, source, text, image_uri, image_sha256, created_at, batch_id)
select 'p' || i, 'generated', 'post number ' || i, '/nowhere/' || i || '.jpg',
       md5(i::text) || md5((i + 1)::text),
       timestamptz '2024-01-01' + i * (interval '365 days' / :n), 1
from generate_series(1, :n) as i;
insert into fnd.model_versions (version, status, preset, created_at, retired_at, artifact_uri,
                                artifact_sha256)
values ('m-prev', 'retired', 'tiny', now() - interval '2 days', now() - interval '1 day', 'x',
        repeat('b', 64)),
       ('m-champ', 'champion', 'tiny', now() - interval '1 day', null, 'x', repeat('b', 64));
insert into fnd.predictions (post_id, model_version, p_fake, label, threshold)
select 'p' || i, v.version, v.p, case when v.p >= 0.5 then 'fake' else 'real' end, 0.5
from generate_series(1, :n) as i,
     lateral (values ('m-champ', ((hashint4(i) & 1023) / 1023.0)::real),
                     ('m-prev', ((hashint4(i * 7) & 1023) / 1023.0)::real)) as v (version, p);
"""


@pytest.mark.slow
def test_page_queries_on_a_million_predictions(create_database):
    """500k posts scored by two champions (1M predictions): time each page's queries."""
    n_posts = 500_000
    url = create_database()
    engine = make_engine(url)
    try:
        migrations.upgrade(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql(MILLION.replace(":n", str(n_posts)))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("vacuum analyze")
        timings = {
            "scores: daily_volume 14 days": lambda: monitoring_scores.daily_volume(engine, days=14),
            "scores: daily_volume 30 days": lambda: monitoring_scores.daily_volume(engine, days=30),
            "scores: score_comparison 5000": lambda: monitoring_scores.score_comparison(engine),
            "scores: latest_flagged_fake 20": lambda: monitoring_scores.latest_flagged_fake(engine),
            "models: model_leaderboard": lambda: monitoring_models.model_leaderboard(engine),
            "data quality: validation_runs": lambda: monitoring_quality.validation_runs(engine),
        }
        results = {}
        for name, query in timings.items():
            query()  # warm the cache, as a page that is looked at often is
            started = time.perf_counter()
            for _ in range(3):
                results[name] = query()
            print(f"{name}: {(time.perf_counter() - started) / 3 * 1000:.0f} ms")
        days = results["scores: daily_volume 30 days"]["days"]
        assert len(days) == 30 and sum(d["n_scored"] for d in days) == sum(
            d["n_posts"] for d in days
        )
        assert results["scores: score_comparison 5000"]["n_posts"] == 5000
        assert len(results["scores: latest_flagged_fake 20"]["items"]) == 20
    finally:
        engine.dispose()


# Failure alerts (fnd_core.observe.notify) -------------------------------------------------------


class RecordingNotifier:
    """Stands in for an Airflow notifier: records each context it is called with."""

    calls: list[dict] = []

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs

    def __call__(self, context: dict) -> None:
        RecordingNotifier.calls.append({**context, "kwargs": self.kwargs})


def failure_context(dag_id: str, task_id: str, run_id: str, exception: Exception, **op_kwargs):
    ti = SimpleNamespace(
        dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=2, try_number=1, log_url=None
    )
    return {
        "ti": ti,
        "run_id": run_id,
        "exception": exception,
        "task": SimpleNamespace(task_id=task_id, op_kwargs=op_kwargs),
    }


def test_facts_from_context_reads_the_mapped_file_and_exception():
    context = failure_context(
        "fnd_ingest", "ingest_file", "r1", RuntimeError("boom"), uri="/landing/a.jsonl"
    )
    facts = notify.facts_from_context(context)
    assert (facts.dag_id, facts.task_id, facts.run_id, facts.map_index) == (
        "fnd_ingest",
        "ingest_file",
        "r1",
        2,
    )
    assert (facts.file_uri, facts.exception, facts.exception_type) == (
        "/landing/a.jsonl",
        "boom",
        "RuntimeError",
    )


def test_ingest_alert_names_the_file_the_reason_and_the_rules(seeded):
    facts = notify.facts_from_context(
        failure_context(
            "fnd_ingest", "ingest_file", "ingest-2", RuntimeError("bad.jsonl: failed"),
            uri="/landing/bad.jsonl",
        )
    )  # fmt: skip
    alert = notify.describe_failure(
        facts, monitoring_runs.run_records(seeded, "ingest-2", source_uri="/landing/bad.jsonl")
    )
    assert alert.title == "[fnd] file bad.jsonl rejected"
    assert alert.lines[0] == "file: /landing/bad.jsonl"
    assert "batch 1 failed" not in alert.text  # batch ids are not guessed: the real one is used
    assert "reason: 2 of 2 rows" in alert.lines
    assert "quarantine rules: id_missing ×2" in alert.lines
    assert (
        "GX suite posts failed on posts-2: "
        "expect_column_values_to_not_be_null(text): 2 unexpected" in alert.lines
    )
    assert not any(line.startswith("error:") for line in alert.lines)  # the reason says it
    assert alert.lines[-1] == "run ingest-2, task ingest_file[2], try 1"
    assert alert.fields["file_uri"] == "/landing/bad.jsonl"


def test_ingest_alert_without_records_falls_back_on_the_exception():
    facts = notify.facts_from_context(
        failure_context(
            "fnd_ingest", "ingest_file", "r", OSError("disk full"), uri="gs://b/in/x.csv"
        )
    )
    alert = notify.describe_failure(facts, None)
    assert alert.title == "[fnd] ingest of x.csv failed"
    assert "error: OSError: disk full" in alert.lines


def test_retrain_alerts_name_the_suite_or_the_model_version():
    snapshot = monitoring_runs.RunRecords(
        failed_validations=[
            {
                "suite": "training_set",
                "batch_id": None,
                "batch_name": "snapshot-20240301",
                "failed_expectations": [
                    {"expectation_type": "expect_column_distinct_values_to_contain_set",
                     "column": "split", "observed_value": ["train"]}
                ],
                "data_docs_uri": None,
            }
        ]
    )  # fmt: skip
    facts = notify.FailureFacts("fnd_retrain", "validate_snapshot", "r", exception="invalid")
    alert = notify.describe_failure(facts, snapshot)
    assert "training snapshot failed" in alert.title
    assert alert.lines[0].startswith("GX suite training_set failed on snapshot-20240301: ")
    assert "(split): observed ['train']" in alert.lines[0]
    model = monitoring_runs.RunRecords(
        models=[
            {"version": "m9", "status": "candidate", "gate_decision": "reject",
             "gate_reason": "failed: accuracy_floor 0.6 below", "forced_by": None,
             "test_accuracy": 0.6}
        ]
    )  # fmt: skip
    alert = notify.describe_failure(
        notify.FailureFacts("fnd_retrain", "promote", "r", exception="db down"), model
    )
    assert alert.title == "[fnd] retraining of m9 failed at promote"
    assert "gate: reject — failed: accuracy_floor 0.6 below" in alert.lines
    assert "error: db down" in alert.lines


def test_score_alert_names_the_model_version_and_shard():
    shard = {"model_version": "m2", "shard": 1, "n_shards": 4, "n_todo": 250}
    facts = notify.facts_from_context(
        failure_context("fnd_score", "score_shard", "r", MemoryError("oom"), shard=shard)
    )
    alert = notify.describe_failure(facts)
    assert alert.title == "[fnd] scoring shard 1/4 with m2 failed"
    assert "model version: m2" in alert.lines and "error: MemoryError: oom" in alert.lines


def test_on_task_failure_logs_and_sends_with_records(seeded, db_url, caplog):
    RecordingNotifier.calls.clear()
    context = failure_context(
        "fnd_ingest", "ingest_file", "ingest-2", RuntimeError("x"), uri="/landing/bad.jsonl"
    )
    alert = notify.on_task_failure(
        context,
        engine_factory=lambda: make_engine(db_url),
        notifier="tests.test_monitoring.RecordingNotifier",
        notifier_kwargs='{"text": "{{ fnd_alert_text }}"}',
    )
    assert "quarantine rules: id_missing ×2" in alert.lines
    assert alert.text in caplog.text
    [call] = RecordingNotifier.calls
    assert call["fnd_alert_text"] == alert.text and call["fnd_alert_title"] == alert.title
    assert call["kwargs"] == {"text": "{{ fnd_alert_text }}"} and call["run_id"] == "ingest-2"


def test_on_task_failure_never_raises(caplog):
    def broken_engine():
        raise OSError("database unreachable")

    def broken_notifier(context):
        raise ConnectionError("smtp down")

    context = failure_context("fnd_score", "plan_shards", "r", RuntimeError("x"))
    alert = notify.on_task_failure(context, engine_factory=broken_engine, notifier=broken_notifier)
    assert alert.title == "[fnd] fnd_score.plan_shards failed"
    assert "database unreachable" in caplog.text and "smtp down" in caplog.text
    notify.on_task_failure(context, notifier="no_such_module.Notifier")
    assert "cannot import notifier" in caplog.text


@pytest.mark.parametrize(
    ("path", "kwargs", "message"),
    [
        ("RecordingNotifier", None, "full import path"),
        ("tests.test_monitoring.Nope", None, "cannot import"),
        ("tests.test_monitoring.RecordingNotifier", "[1]", "JSON object"),
        ("tests.test_monitoring.RecordingNotifier", "{", "not valid JSON"),
    ],
)
def test_load_notifier_errors_are_readable(path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        notify.load_notifier(path, kwargs)
    assert notify.load_notifier(None) is None


def test_alert_bodies_escape_a_hostile_file_name():
    """A landing file named like HTML (or with a newline to forge a line) reaches an e-mail
    or Slack body escaped; the plain text is kept for notifiers that render nothing."""
    name = "/landing/<img src=x onerror=alert(1)>\n- reason: all fine.jsonl"
    context = failure_context("fnd_ingest", "ingest_file", "r1", RuntimeError("<b>x</b>"), uri=name)
    alert = notify.describe_failure(notify.facts_from_context(context))
    assert not any(line.startswith("- reason: all fine") for line in alert.text.splitlines())
    fields = notify.alert_fields(alert)
    assert "<img" not in fields["fnd_alert_text"] and "&lt;img src=x" in fields["fnd_alert_text"]
    assert "<img" not in fields["fnd_alert_title"] and "&lt;b&gt;x" in fields["fnd_alert_text"]
    assert "\\x0a- reason" in fields["fnd_alert_text"]
    assert fields["fnd_alert_plain"] == alert.text
