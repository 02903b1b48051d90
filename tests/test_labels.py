"""Fact-checkers' labels: their own input, append-only, deriving posts.label; realized figures.

Verdicts in the realized-performance tests are written straight into fnd.predictions, with the
p_fake and time a hand-computed example needs: what is under test is the label path and the
view, not the model (tests/test_scoring.py scores with a real champion and rescores after
labels arrive).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from fnd_core.ingest.load import BatchRejectedError, ingest_file, waiting_files
from fnd_core.observe import performance
from fnd_core.pipeline.training_snapshot import load_examples
from fnd_core.settings import Settings
from fnd_core.stack.cli import cli
from fnd_core.stack.demo import generate_batch
from tests.labelled_verdicts import P_FAKE, TRUTH, VERSION, WEEK, add_verdicts, add_version


def rows(engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params).all()]


def one(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def land_posts(engine, settings: Settings, n: int, *, seed: int, unlabelled_share: float = 1.0):
    batch = generate_batch(Path(settings.landing), n, seed=seed, unlabelled_share=unlabelled_share)
    return ingest_file(engine, str(batch.data_file), settings)


def label_file(settings: Settings, name: str, records: list[dict], *, fmt: str = "csv") -> Path:
    folder = Path(settings.landing) / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        columns = sorted({k for r in records for k in r}, key=["post_id", "label", "source",
                                                                "labelled_at"].index)  # fmt: skip
        lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns)
                                       for r in records]  # fmt: skip
        path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def label_settings(settings: Settings) -> Settings:
    return replace(settings, realized_min_labels_per_class=2)


def test_labels_arriving_after_the_verdicts_give_the_hand_computed_realized_figures(
    clean_db, label_settings
):
    land_posts(clean_db, label_settings, 10, seed=5)
    add_version(clean_db)
    add_verdicts(clean_db, P_FAKE)
    performance.estimate_weeks(clean_db)
    path = label_file(label_settings, "factcheck.csv", [
        {"post_id": k, "label": "fake" if v else "real", "source": "afp",
         "labelled_at": "2026-11-30T09:00:00Z"} for k, v in TRUTH.items()
    ])  # fmt: skip
    result = CliRunner().invoke(cli, ["label", str(path)], obj={"settings": label_settings})
    assert result.exit_code == 0, result.output
    assert "accepted 8" in result.output

    row = performance.realized(clean_db, model_version=VERSION)[0]
    # said fake: 0.9 0.8 0.7 0.6 (and 0.55, unlabelled). Truth fake: ...0, 1, 3, 4.
    # tp = {0, 1, 3} = 3, fp = {2} = 1, fn = {4} = 1, tn = {5, 6, 7} = 3.
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (3, 1, 1, 3)
    assert row["week"] == WEEK
    assert (row["n_verdicts"], row["n_labelled"], row["n_hindsight"]) == (10, 8, 0)
    assert (row["n_fake"], row["n_real"]) == (4, 4)
    assert row["balanced_accuracy"] == pytest.approx((3 / 4 + 3 / 4) / 2)
    assert row["fake_precision"] == pytest.approx(0.75)
    assert row["fake_recall"] == pytest.approx(0.75)
    assert row["gate_estimate_by_post"] == pytest.approx(0.8)
    # ECE over 10 equal bins of p re-weighted to the week's estimated fake share
    share = row["estimated_fake_share"]
    assert share is not None and row["estimated_balanced_accuracy"] is not None
    p = np.array([P_FAKE[k] for k in TRUTH], dtype=np.float32).astype(float)  # stored as real
    y = np.array(list(TRUTH.values()))
    q = share * p / (share * p + (1 - share) * (1 - p))
    bins = np.minimum((q * 10).astype(int), 9)
    ece = sum(abs(q[bins == b].mean() - y[bins == b].mean()) * (bins == b).sum()
              for b in set(bins)) / len(q)  # fmt: skip
    assert row["expected_calibration_error"] == pytest.approx(ece, abs=2e-4)
    # posts.label is derived from the labels; the labels are kept as sent
    assert one(clean_db, "select count(*) from fnd.posts where label is not null") == 8
    assert rows(clean_db, "select distinct source, labelled_at::text from fnd.labels") == [
        ("afp", "2026-11-30 09:00:00+00")
    ]
    shown = CliRunner().invoke(cli, ["performance"], obj={"settings": label_settings})
    assert shown.exit_code == 0 and f"{VERSION} " in shown.output and " 0.750 " in shown.output
    as_json = CliRunner().invoke(cli, ["performance", "--json"], obj={"settings": label_settings})
    assert json.loads(as_json.output.splitlines()[0])["tp"] == 3


def test_too_few_labels_of_a_class_leave_balanced_accuracy_null(clean_db, label_settings):
    land_posts(clean_db, label_settings, 10, seed=5)
    add_version(clean_db)
    add_verdicts(clean_db, P_FAKE)
    strict = replace(label_settings, realized_min_labels_per_class=5)
    ingest_file(clean_db, str(label_file(strict, "l.csv", [
        {"post_id": k, "label": v} for k, v in TRUTH.items()
    ])), strict)  # fmt: skip
    row = performance.realized(clean_db)[0]
    assert (row["n_fake"], row["n_real"]) == (4, 4)
    assert row["balanced_accuracy"] is None
    assert row["fake_recall"] == pytest.approx(0.75)  # defined whenever it can be


def test_labels_received_before_the_verdict_are_hindsight(clean_db, label_settings):
    land_posts(clean_db, label_settings, 10, seed=5)
    ingest_file(clean_db, str(label_file(label_settings, "early.csv", [
        {"post_id": "s5-000000", "label": 1}, {"post_id": "s5-000005", "label": 0},
    ])), label_settings)  # fmt: skip
    add_version(clean_db)
    add_verdicts(clean_db, P_FAKE, at=None)  # given now: after those labels, before the next
    ingest_file(clean_db, str(label_file(label_settings, "late.csv", [
        {"post_id": "s5-000001", "label": 1}, {"post_id": "s5-000007", "label": 0},
        {"post_id": "s5-000000", "label": 0, "source": "correction"},
    ])), label_settings)  # fmt: skip
    # s5-000000 had a label before its verdict: hindsight, whatever came later
    row = performance.realized(clean_db)[0]
    assert (row["n_verdicts"], row["n_hindsight"], row["n_labelled"]) == (10, 2, 2)
    assert (row["tp"], row["tn"]) == (1, 1)


def test_a_label_for_a_post_not_ingested_yet_waits_then_applies(clean_db, label_settings):
    report = ingest_file(clean_db, str(label_file(label_settings, "ahead.jsonl", [
        {"post_id": "s6-000001", "label": "fake", "source": "snopes"},
        {"post_id": "s6-000002", "label": "real", "source": "snopes"},
    ], fmt="jsonl")), label_settings)  # fmt: skip
    assert (report.kind, report.n_accepted, report.n_pending) == ("labels", 2, 2)
    assert one(clean_db, "select count(*) from fnd.pending_labels") == 2
    land_posts(clean_db, label_settings, 4, seed=6)  # unlabelled posts: the labels apply
    assert rows(clean_db, "select post_id, label from fnd.posts where label is not null "
                          "order by post_id") == [("s6-000001", 1), ("s6-000002", 0)]  # fmt: skip
    assert one(clean_db, "select count(*) from fnd.pending_labels") == 0


def test_malformed_label_rows_are_quarantined_with_their_reason(clean_db, label_settings):
    land_posts(clean_db, label_settings, 3, seed=7)
    path = Path(label_settings.landing) / "labels"
    path.mkdir(parents=True)
    (path / "mixed.csv").write_text(
        "post_id,label,source,labelled_at\n"
        "s7-000000,fake,afp,2026-11-30\n"
        ",fake,afp,\n"  # no id
        "s7-000001,maybe,afp,\n"  # not a label
        "s7-000002,,afp,\n"  # no label at all
        "s7-000000,real,afp,\n"  # the same post twice in one file
        "p6,real,'; drop table fnd.labels; --,\n"  # a source that is not a name
        "p7,real,afp,not a time\n"
        "p8,real,afp,2999-01-01\n"  # labelled in the future
        "s7-000001,real\n"  # wrong column count
    )
    report = ingest_file(clean_db, str(path / "mixed.csv"), label_settings, fail_share=0.95)
    assert (report.n_received, report.n_accepted, report.n_quarantined) == (9, 1, 8)
    rules = dict(rows(clean_db, "select row_number, rule from fnd.quarantine"))
    assert rules == {
        2: "id_missing", 3: "label_invalid", 4: "label_missing", 5: "id_duplicate_in_file",
        6: "source_invalid", 7: "labelled_at_invalid", 8: "labelled_at_in_future",
        9: "column_count_mismatch",
    }  # fmt: skip
    assert one(clean_db, "select count(*) from fnd.labels") == 1
    assert one(clean_db, "select success from fnd.validation_runs where suite = 'labels'") is False
    assert (Path(label_settings.landing) / "labels" / "archive").is_dir()


def test_a_label_file_of_mostly_bad_rows_is_set_aside_and_adds_nothing(clean_db, label_settings):
    path = label_file(label_settings, "bad.csv", [{"post_id": "x", "label": "perhaps"}] * 3)
    with pytest.raises(BatchRejectedError, match="quarantined"):
        ingest_file(clean_db, str(path), label_settings)
    assert one(clean_db, "select count(*) from fnd.labels") == 0
    assert list((path.parent / "failed").glob("batch*-bad.csv"))


def test_trust_order_picks_the_label_and_conflicts_are_shown(clean_db, label_settings):
    land_posts(clean_db, label_settings, 2, seed=8)
    trusted = replace(label_settings, label_trust_order="afp, reuters")
    ingest_file(clean_db, str(label_file(trusted, "a.csv", [
        {"post_id": "s8-000000", "label": 1, "source": "afp"}])), trusted)  # fmt: skip
    ingest_file(clean_db, str(label_file(trusted, "b.csv", [
        {"post_id": "s8-000000", "label": 0, "source": "crowd"}])), trusted)  # fmt: skip
    # the later label comes from a source outside the trust order: afp's stands
    assert one(clean_db, "select label from fnd.posts where post_id = 's8-000000'") == 1
    conflict = rows(clean_db, "select post_id, current_label, label_by_source::text "
                              "from fnd.label_conflicts")  # fmt: skip
    assert conflict == [("s8-000000", 1, '{"afp": 1, "crowd": 0}')]
    # with no trust order, the latest received wins (afp corrects itself later)
    plain = replace(label_settings, label_trust_order="")
    ingest_file(clean_db, str(label_file(plain, "c.csv", [
        {"post_id": "s8-000000", "label": 0, "source": "afp"}])), plain)  # fmt: skip
    assert one(clean_db, "select label from fnd.posts where post_id = 's8-000000'") == 0
    assert one(clean_db, "select label_updated_at is not null from fnd.posts "
                         "where post_id = 's8-000000'")  # fmt: skip


def test_labels_are_append_only_and_a_resent_file_counts_nothing_twice(clean_db, label_settings):
    land_posts(clean_db, label_settings, 2, seed=9)
    records = [{"post_id": "s9-000000", "label": 1, "source": "afp",
                "labelled_at": "2026-11-30T00:00:00Z"}]  # fmt: skip
    first = ingest_file(clean_db, str(label_file(label_settings, "a.csv", records)),
                        label_settings)  # fmt: skip
    # the same label in another file (other bytes: a different name column order)
    again = ingest_file(clean_db, str(label_file(label_settings, "b.jsonl", records, fmt="jsonl")),
                        label_settings)  # fmt: skip
    assert (first.n_accepted, again.n_accepted, again.n_duplicate) == (1, 0, 1)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), clean_db.begin() as conn:
        conn.exec_driver_sql("update fnd.labels set label = 0")
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), clean_db.begin() as conn:
        conn.exec_driver_sql("delete from fnd.labels")


def test_post_file_labels_are_recorded_and_a_relabel_by_post_file_still_works(
    clean_db, label_settings
):
    report = land_posts(clean_db, label_settings, 6, seed=10, unlabelled_share=0.0)
    assert one(clean_db, "select count(*) from fnd.labels where source = 'post_file'") == 6
    # the same posts again with flipped labels: a correction by post file, as before
    batch = generate_batch(Path(label_settings.landing) / "again", 6, seed=10)
    records = [json.loads(line) for line in batch.data_file.read_text().splitlines()]
    batch.data_file.write_text("".join(json.dumps({**r, "label": 1 - r["label"]}) + "\n"
                                       for r in records))  # fmt: skip
    again = ingest_file(clean_db, str(batch.data_file), label_settings)
    assert (report.n_accepted, again.n_duplicate, again.n_labels_updated) == (6, 6, 6)
    assert one(clean_db, "select count(*) from fnd.labels") == 12


def test_training_snapshots_read_labels_as_they_stood(clean_db, label_settings):
    land_posts(clean_db, label_settings, 4, seed=12, unlabelled_share=0.0)
    as_of = one(clean_db, "select now()")
    before = {e.post_id: e.label for e in load_examples(clean_db, as_of=as_of)}
    flipped = {k: 1 - v for k, v in before.items()}
    ingest_file(clean_db, str(label_file(label_settings, "flip.csv", [
        {"post_id": k, "label": v} for k, v in flipped.items()])), label_settings)  # fmt: skip
    assert {e.post_id: e.label for e in load_examples(clean_db, as_of=as_of)} == before
    assert {e.post_id: e.label for e in load_examples(clean_db)} == flipped


def test_the_landing_zone_lists_its_label_files_after_its_posts(label_settings, tmp_path):
    generate_batch(Path(label_settings.landing), 2, seed=13)
    labels = label_file(label_settings, "l.csv", [{"post_id": "s13-000000", "label": 1}])
    found = waiting_files(label_settings.landing, label_settings)
    assert found[-1] == str(labels) and len(found) == 2
    elsewhere = tmp_path / "outside"
    elsewhere.mkdir()
    (elsewhere / "x.csv").write_text("post_id,label\na,1\n")
    (Path(label_settings.landing) / "labels").rename(tmp_path / "moved")
    (Path(label_settings.landing) / "labels").symlink_to(elsewhere)  # a link is never followed
    listed = waiting_files(label_settings.landing, label_settings)
    assert str(elsewhere / "x.csv") not in listed and not any("labels/" in f for f in listed)


def test_expected_performance_is_exact_when_the_probabilities_are_certain():
    p = np.array([0.999, 0.999, 0.001, 0.001, 0.999])
    said = np.array([True, False, False, True, True])
    e = performance.expected_performance(p, said)
    # ~certain: fake posts 0, 1, 4 (said fake 0, 4), real 2, 3 (said real 2)
    assert e.estimated_balanced_accuracy == pytest.approx((2 / 3 + 1 / 2) / 2, abs=0.01)
    assert e.estimated_fake_share == pytest.approx(0.6, abs=0.01)


def test_expected_performance_meets_the_truth_when_the_model_is_calibrated():
    """Label shift: 30 % of the posts are fake, each class looks as in training (a score
    x ~ N(+1, 1) if fake, N(-1, 1) if real), and p_fake is the exact posterior under a 50/50
    prior: sigmoid(2x). The expected figures must meet the counted ones."""
    rng = np.random.default_rng(0)
    y = rng.random(20_000) < 0.3
    x = rng.normal(np.where(y, 1.0, -1.0), 1.0)
    p_balanced = 1 / (1 + np.exp(-2 * x))
    said = p_balanced >= 0.5
    e = performance.expected_performance(p_balanced, said)
    truth_ba = (said[y].mean() + (~said[~y]).mean()) / 2
    assert e.estimated_balanced_accuracy == pytest.approx(truth_ba, abs=0.02)
    assert e.estimated_fake_share == pytest.approx(y.mean(), abs=0.02)


def test_a_realized_drop_below_the_gate_alerts_once(clean_db, label_settings):
    land_posts(clean_db, label_settings, 10, seed=5)
    add_version(clean_db, gate_by_post=0.95)
    add_verdicts(clean_db, P_FAKE)
    ingest_file(clean_db, str(label_file(label_settings, "l.csv", [
        {"post_id": k, "label": v} for k, v in TRUTH.items()])), label_settings)  # fmt: skip
    lenient = replace(label_settings, realized_alert_margin=0.6)  # 0.95 - 0.6 < lower bound
    assert performance.check_realized(clean_db, lenient) == []
    alerts = performance.check_realized(clean_db, label_settings)
    assert [(a.model_version, a.week, a.realized_balanced_accuracy) for a in alerts] == [
        (VERSION, WEEK, 0.75)
    ]
    # 0.75 - 1.96 * sqrt(0.75 * 0.25 / 4 * 2) / 2: four labels of each class say little
    assert alerts[0].lower_bound == pytest.approx(0.4499, abs=1e-3)
    assert performance.check_realized(clean_db, label_settings) == []  # once per week


def test_a_label_file_may_name_the_post_id_column_id_as_post_files_do(clean_db, label_settings):
    land_posts(clean_db, label_settings, 2, seed=14)
    folder = Path(label_settings.landing) / "labels"
    folder.mkdir(parents=True)
    (folder / "ids.csv").write_text("id,label,note\ns14-000001,fake,seen on TV\n")
    report = ingest_file(clean_db, str(folder / "ids.csv"), label_settings)
    assert (report.n_accepted, report.n_quarantined) == (1, 0)
    assert one(clean_db, "select label from fnd.posts where post_id = 's14-000001'") == 1
    (folder / "neither.csv").write_text("post,label\ns14-000001,fake\n")
    with pytest.raises(BatchRejectedError, match="missing required label column"):
        ingest_file(clean_db, str(folder / "neither.csv"), label_settings)
