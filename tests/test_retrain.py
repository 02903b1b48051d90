"""Retraining against Postgres with the tiny preset: snapshot, validation, registry, gate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import sqlalchemy as sa

from fnd_core.model.errors import ArtifactIntegrityError
from fnd_core.pipeline import registry, retrain, scoring
from fnd_core.pipeline.gate import GatePolicy
from tests.helpers import ingest_demo, promote_tiny

pytestmark = pytest.mark.slow


def test_snapshot_counts_labelled_posts(clean_db, settings):
    ingest_demo(clean_db, settings, 120, seed=1, unlabelled_share=0.25)
    snap = retrain.snapshot(clean_db)
    assert 80 <= snap["n_labelled"] <= 100
    with clean_db.connect() as conn:
        labelled = conn.execute(sa.text("select count(*) from fnd.posts where label is not null"))
        assert snap["n_labelled"] == labelled.scalar_one()


def test_a_capped_snapshot_trains_on_the_newest_posts(clean_db, settings):
    from datetime import datetime

    ingest_demo(clean_db, settings, 60, seed=3)
    ingest_demo(clean_db, settings, 60, seed=4)  # a later batch
    snap = retrain.snapshot(clean_db, max_posts=50)
    assert (snap["n_labelled"], snap["n_used"], snap["max_posts"]) == (120, 50, 50)
    used = retrain.load_examples(
        clean_db, as_of=datetime.fromisoformat(snap["as_of"]), max_posts=snap["max_posts"]
    )
    with clean_db.connect() as conn:
        newest = conn.execute(sa.text(
            "select post_id from fnd.posts order by ingested_at desc, post_id desc limit 50"
        )).scalars().all()  # fmt: skip
    assert [e.post_id for e in used] == sorted(newest)


def test_one_class_snapshot_fails_validation_and_is_recorded(clean_db, settings):
    ingest_demo(clean_db, settings, 150, seed=2, fake_share=1.0)
    snap = retrain.snapshot(clean_db)
    with pytest.raises(retrain.SnapshotInvalidError, match="training_set"):
        retrain.validate_snapshot(clean_db, settings, snap)
    with clean_db.connect() as conn:
        suite, success = conn.execute(
            sa.text("select suite, success from fnd.validation_runs where batch_id is null")
        ).one()
    assert (suite, success) == ("training_set", False)


def test_retrain_compares_the_champion_recipe_on_the_same_folds(clean_db, settings):
    ingest_demo(clean_db, settings, 200, seed=3)
    champion = promote_tiny(clean_db, settings)
    snap = retrain.snapshot(clean_db)
    settings = dataclasses.replace(settings, nested_selection=True)  # the default, off in tests
    cand = retrain.train_candidate(clean_db, settings, snap, preset="tiny", epochs=3, seed=1)
    retried = retrain.train_candidate(clean_db, settings, snap, preset="tiny", epochs=3, seed=1)
    assert retried["version"] == cand["version"] and retried["reused"]  # no orphan candidate
    evaluation = retrain.evaluate(clean_db, settings, cand["version"])
    assert evaluation["champion"]["version"] == champion
    assert evaluation["champion_state"] == "loadable"
    candidate, champ = evaluation["candidate"], evaluation["champion"]
    # every labelled post is scored out of fold, or sits in a topic every fold trains on
    assert champ["n"] == candidate["n"]
    assert candidate["n"] + candidate["topic_plan"]["n_train_only"] == snap["n_labelled"]
    assert (champ["n_folds"], champ["n_repeats"]) == (settings.cv_folds, settings.cv_repeats)
    assert evaluation["leak"]["groups_straddling_folds"] == 0
    assert set(evaluation["baselines"]) == {"prior"}
    assert evaluation["baselines"]["prior"]["estimate"] == 0.5
    selection = evaluation["selection"]
    assert set(selection["estimates"]) == {"fusion", "linear", "text_linear", "char_ngram"}
    assert evaluation["kind"] == selection["winner"]
    # the simplest kind within one standard error of the best ships
    assert candidate["estimate"] == selection["estimates"][selection["winner"]]
    assert candidate["estimate"] >= selection["bar"]
    assert selection["bar"] == pytest.approx(
        max(selection["estimates"].values()) - selection["standard_error"], abs=1e-5
    )
    assert candidate["split_policy"] == "topic_disjoint" and candidate["n_units"] >= 2
    # the choice itself, estimated with the choice inside the folds (the first repeat's)
    nested = selection["nested"]
    assert nested["naive"] == candidate["estimate"]
    assert len(nested["chosen"]) == candidate["n_folds"] == nested["n_outer_folds"]
    assert set(nested["chosen"]) <= set(selection["estimates"])
    assert nested["optimism"] == pytest.approx(nested["naive"] - nested["estimate"], abs=1e-5)
    policy = GatePolicy(min_accuracy=0.99)  # out of reach for the tiny preset
    decision = retrain.gate(evaluation, policy)
    outcome = retrain.record_decision(clean_db, evaluation, decision, policy, floor_set_by="bob")
    assert outcome["decision"] == "reject"
    recorded = registry.get_version(clean_db, cand["version"])
    assert recorded.status == "rejected"
    assert recorded.gate["evaluation"]["champion"]["version"] == champion
    assert recorded.gate["floor_set_by"] == "bob"
    assert "balanced_accuracy_floor" in recorded.gate["reason"]
    assert registry.current_champion(clean_db).version == champion
    again = retrain.record_decision(clean_db, evaluation, decision, policy)  # a task retry
    assert again["already_recorded"] and again["decision"] == "reject"
    with clean_db.connect() as conn:
        row = conn.execute(
            sa.text(
                "select gate_metric, gate_estimate, gate_counted_by, gate_estimate_by_post"
                " from fnd.model_leaderboard where version = :v"
            ),
            {"v": cand["version"]},
        ).one()
    assert row[0] == "balanced_accuracy" and row[2] == "posts"
    # the gate read the figure of the choice made inside the folds, not the winner's own
    assert decision.estimate == nested["estimate"]
    assert float(row[1]) == float(row[3]) == pytest.approx(nested["estimate"])


def test_no_labelled_posts_skips_the_recipe(clean_db, settings):
    ingest_demo(clean_db, settings, 30, seed=5, unlabelled_share=1.0)
    assert retrain.run(clean_db, settings, preset="tiny", epochs=1) == {
        "skipped": retrain.NO_LABELLED_POSTS
    }
    assert registry.current_champion(clean_db) is None


def test_tampered_artifact_is_refused_on_load(clean_db, settings):
    ingest_demo(clean_db, settings, 100, seed=4)
    version = promote_tiny(clean_db, settings)
    artifact = Path(registry.get_version(clean_db, version).artifact_uri)
    weights = artifact / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte
    weights.write_bytes(bytes(data))
    with pytest.raises(scoring.ModelUnavailableError, match="sha256") as raised:
        scoring.score_shard(clean_db, settings, model_version=version)
    assert isinstance(raised.value.__cause__, ArtifactIntegrityError)
    assert "fnd model rollback" in str(raised.value)


def test_a_broken_champion_neither_blocks_retraining_nor_stays_stuck(clean_db, settings, db_url):
    """Scoring says what is wrong; retraining still promotes; rollback is audited."""
    from tests.helpers import run_fnd

    ingest_demo(clean_db, settings, 120, seed=6)
    first = promote_tiny(clean_db, settings)
    second = promote_tiny(clean_db, settings)  # first is now retired
    weights = Path(registry.get_version(clean_db, second).artifact_uri) / "model.safetensors"
    weights.unlink()  # the champion's artifact is gone
    with pytest.raises(scoring.ModelUnavailableError, match=f"model {second} .*fnd model rollback"):
        scoring.score_shard(clean_db, settings, model_version=second)

    third = retrain.run(clean_db, settings, forced_by="tests", preset="tiny", epochs=2)
    assert third["decision"] == "promote"
    assert third["evaluation"]["champion_state"].startswith("cannot be loaded")

    env = {"FND_DATABASE_URL": db_url, "FND_HOME": str(settings.home)}
    listed = run_fnd("model", "list", env=env).stdout
    assert f"{third['version']}  champion" in listed and f"{first}  retired" in listed
    refused = run_fnd("model", "rollback", second, "--reason", "x", env=env, check=False)
    assert refused.returncode == 1 and f"cannot roll back to {second}" in refused.stderr
    done = run_fnd("model", "rollback", first, "--reason", "third looks off", env=env)
    assert f"{first} is the champion again (was: {third['version']})" in done.stdout
    audit = registry.get_version(clean_db, first)
    with clean_db.connect() as conn:
        [event] = conn.execute(
            sa.text("select audit from fnd.model_versions where version = :v"), {"v": first}
        ).scalar_one()
    assert audit.status == "champion"
    assert (event["action"], event["reason"], event["champion_before"]) == (
        "rollback",
        "third looks off",
        third["version"],
    )
    retired = run_fnd("model", "retire", first, "--reason", "pause scoring", env=env)
    assert "retired" in retired.stdout and registry.current_champion(clean_db) is None


def test_a_char_ngram_winner_is_a_real_version_that_the_scorer_serves(clean_db, settings):
    import dataclasses

    import numpy as np

    from fnd_core.model.artifacts import load_model
    from fnd_core.model.char_ngrams import CharNgramModel

    ingest_demo(clean_db, settings, 150, seed=6)
    only_ngrams = dataclasses.replace(settings, candidate_kinds="char_ngram")
    out = retrain.run(clean_db, only_ngrams, preset="tiny", epochs=2, forced_by="tests")
    version = registry.get_version(clean_db, out["candidate"]["version"])
    assert version.status == "champion" and version.config["kind"] == "char_ngram"
    assert version.metrics["selection"]["winner"] == "char_ngram"
    assert "slope" in version.metrics["calibration"]
    report = scoring.score_shard(clean_db, only_ngrams, model_version=version.version)
    assert report.n_scored == 150 and report.n_errors == 0
    with clean_db.connect() as conn:
        rows = conn.execute(sa.text(
            "select p.text, pr.p_fake, pr.label, pr.threshold from fnd.predictions pr "
            "join fnd.posts p using (post_id) where pr.model_version = :v order by post_id"
        ), {"v": version.version}).all()  # fmt: skip
    loaded = load_model(version.artifact_uri, version.artifact_sha256)
    assert isinstance(loaded.model, CharNgramModel)
    expected = loaded.calibration.apply(loaded.model.predict_proba([r.text for r in rows]))
    assert np.array([r.p_fake for r in rows]) == pytest.approx(expected, abs=1e-6)
    assert all((r.label == "fake") == (r.p_fake >= r.threshold) for r in rows)
