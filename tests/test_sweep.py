"""Model search: the space file read as untrusted data, and a sweep against Postgres with the
tiny preset (candidates recorded, a failed one kept aside, the winner gated on its nested
figure)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import sqlalchemy as sa

from fnd_core.model.config import ModelConfig
from fnd_core.model.train.recipe import TrainOptions
from fnd_core.pipeline import registry, sweep
from fnd_core.pipeline.evaluation import Recipe
from fnd_core.pipeline.sweep_space import DEFAULT_SPACE, apply, load_space, parse_space
from fnd_core.settings import Settings
from tests.helpers import ingest_demo, promote_tiny


def space(parameters: dict, method: str = "grid", **extra) -> dict:
    return {"version": 1, "method": method, "seed": 3, "parameters": parameters, **extra}


def test_the_default_space_expands_to_distinct_candidates_within_the_budget():
    loaded = load_space(DEFAULT_SPACE)
    candidates = loaded.expand(16)
    assert len(candidates) == 16
    assert len({json.dumps(c, sort_keys=True) for c in candidates}) == 16
    assert loaded.expand(16) == candidates  # seeded: the same space gives the same sweep
    for c in candidates:  # each holds only what matters to its kind
        if c["kind"] != "fusion":
            assert set(c) <= {"kind", "class_weights", "topic_weights"}
        else:
            assert 0.0003 <= c.get("lr", 0.001) <= 0.003
    assert candidates[:3] == [{"kind": "linear"}, {"kind": "text_linear"}, {"kind": "char_ngram"}]


def test_included_recipes_come_first_and_a_default_written_out_is_the_same_recipe():
    loaded = parse_space(space(
        {"kind": {"values": ["linear", "text_linear"]},
         "topic_weights": {"values": [False, True]}, "class_weights": True},
        include=[{"kind": "linear"}, {"kind": "char_ngram"}],
    ))  # fmt: skip
    candidates = loaded.expand(8)
    assert candidates[:2] == [{"kind": "linear"}, {"kind": "char_ngram"}]
    # class_weights true and topic_weights false are the defaults: {"kind": "linear"} again
    assert candidates[2:] == [{"kind": "linear", "topic_weights": True}, {"kind": "text_linear"},
                              {"kind": "text_linear", "topic_weights": True}]  # fmt: skip
    assert loaded.expand(1) == [{"kind": "linear"}]
    with pytest.raises(ValueError, match="unknown sweep parameter 'rm' in `include`"):
        parse_space(space({"hidden": 8}, include=[{"rm": "-rf"}]))


def test_a_grid_larger_than_the_budget_is_sampled_and_duplicates_collapse():
    grid = parse_space(space({"kind": {"values": ["linear", "fusion"]}, "hidden": [8, 16][0]}))
    assert grid.expand(8) == [{"kind": "linear"}, {"hidden": 8, "kind": "fusion"}]
    # a linear head has no hidden layer: three grid points, two candidates
    grid = parse_space(space({"kind": {"values": ["linear", "fusion"]},
                              "hidden": {"values": [8, 16]}}))  # fmt: skip
    assert len(grid.expand(8)) == 3
    sampled = grid.expand(2)
    assert len(sampled) == 2 and sampled == grid.expand(2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (space({"learning_rate": 0.1}), "unknown sweep parameter 'learning_rate'"),
        (space({"hidden": {"values": [16, 10**9]}}), r"'hidden' must lie in \[8, 2048\]"),
        (space({"dropout": {"values": ["0.1"]}}), "'dropout' takes a number"),
        (space({"epochs": {"values": [2.5]}}), "'epochs' takes an integer"),
        (space({"topic_weights": {"values": [1]}}), "takes true or false"),
        (space({"kind": {"values": ["svm"]}}), "'kind' takes one of fusion"),
        (space({"lr": {"min": 0.001, "max": 0.01}}), "a range needs method random"),
        (space({"lr": {"min": 0.01, "max": 0.001}}, method="random"), "min <= max"),
        (space({"lr": {"values": [float("nan")]}}), "'lr' takes a number"),
        (space({"hidden": {"values": list(range(8, 200))}}), "at most 100 values"),
        ({**space({"hidden": 8}), "version": 2}, "version must be 1"),
        (space({"hidden": 8}, method="tpe"), "method must be one of grid, random"),
        ({**space({"hidden": 8}), "command": "rm -rf /"}, "unknown sweep space keys"),
        (space({"hidden": 8}, description={"nested": ["a"]}), "description is a text"),
        (space({}), "non-empty mapping `parameters`"),
    ],
)
def test_a_bad_space_is_refused_with_what_is_allowed(content, message):
    with pytest.raises(ValueError, match=message):
        parse_space(content)


def test_a_space_file_is_safe_yaml_and_capped(tmp_path):
    hostile = tmp_path / "space.yaml"
    hostile.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(Exception, match="could not determine a constructor"):
        load_space(hostile)
    big = tmp_path / "big.json"
    big.write_text(json.dumps(space({"hidden": 8}, description="x" * 70_000)))
    with pytest.raises(ValueError, match="at most 65536 bytes"):
        load_space(big)
    with pytest.raises(ValueError, match="budget must be 1 to 256"):
        load_space().expand(257)


def test_a_space_file_of_nested_yaml_aliases_is_refused_before_it_expands(tmp_path):
    """A "billion laughs": 1 KiB of aliases that stands for gigabytes once written out."""
    lines = ["version: 1", "parameters: {hidden: 8}", "description:",
             '  l0: &l0 ["x","x","x","x","x","x","x","x","x"]']  # fmt: skip
    for i in range(1, 9):
        lines.append(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 1024
    with pytest.raises(ValueError, match="may not use YAML aliases"):
        load_space(bomb)


def test_a_random_range_stays_inside_its_bounds_and_log_spreads_the_draws():
    drawn = parse_space(
        space(
            {"lr": {"min": 0.0001, "max": 0.1, "log": True}, "epochs": {"min": 2, "max": 9}},
            method="random",
        )  # fmt: skip
    ).expand(60)
    lrs = [c["lr"] for c in drawn]
    assert all(0.0001 <= v <= 0.1 for v in lrs) and all(2 <= c["epochs"] <= 9 for c in drawn)
    assert all(isinstance(c["epochs"], int) for c in drawn)
    assert sum(v < 0.001 for v in lrs) >= 10  # log-uniform: a third of the draws per decade


def test_apply_puts_each_parameter_where_it_belongs():
    base = Recipe(epochs=20, options=TrainOptions())
    kind, config, recipe = apply(
        {"kind": "fusion", "hidden": 64, "lr": 0.002, "epochs": 7, "topic_weights": True},
        ModelConfig(preset="tiny"), base,
    )  # fmt: skip
    assert (kind, config.hidden, recipe.epochs) == ("fusion", 64, 7)
    assert (recipe.options.lr, recipe.options.topic_weights) == (0.002, True)
    assert base.options.lr == TrainOptions().lr  # the defaults are not touched
    with pytest.raises(ValueError, match="must lie in"):
        apply({"hidden": 0}, ModelConfig(preset="tiny"), base)


def one_se(rows, estimate, interval):
    """The sweep's rule written out: the best row's standard error off its 90 % interval; of
    the rows within it, fewest inputs first (text, then text + image, then char n-grams, then
    fusion), then the narrower fusion head."""
    best = max(rows, key=lambda r: (estimate(r), -r["candidate"]))
    low, high = interval(best)
    bar = estimate(best) - (high - low) / (2 * 1.6449)
    order = ["text_linear", "linear", "char_ngram", "fusion"]
    near = [r for r in rows if estimate(r) >= bar - 1e-9]
    return min(near, key=lambda r: (order.index(r["config"].get("kind", "fusion")),
                                    r["config"].get("hidden", 256), r["candidate"]))  # fmt: skip


def test_the_simplest_candidate_within_one_standard_error_wins_and_best_is_kept_to_compare():
    base = sweep.base_recipe(Settings(model_preset="tiny"))

    def row(i, config, estimate, low, high):
        return {"candidate": i, "config": config, "estimate": estimate,
                "interval_low": low, "interval_high": high}  # fmt: skip

    rows = [
        row(0, {"kind": "fusion", "hidden": 256}, 0.90, 0.80, 1.00),  # se 0.061: bar 0.839
        row(1, {"kind": "fusion", "hidden": 64}, 0.89, 0.79, 0.99),
        row(2, {"kind": "linear"}, 0.86, 0.76, 0.96),
        row(3, {"kind": "text_linear"}, 0.70, 0.60, 0.80),  # simplest, but far below
    ]
    one = sweep.choose(rows, None, "balanced_accuracy", base=base)
    assert (one["winner"], one["best"], one["bar"]) == (2, 0, pytest.approx(0.839, abs=1e-3))
    assert one["rule"].startswith("the simplest candidate within one standard error")
    assert sweep.choose(rows, None, "balanced_accuracy", base=base, rule="best")["winner"] == 0
    # among fusion heads alone, the narrower one; with a zero-width interval, the best
    assert sweep.choose(rows[:2], None, "balanced_accuracy", base=base)["winner"] == 1
    sure = [{**r, "interval_low": r["estimate"], "interval_high": r["estimate"]} for r in rows]
    assert sweep.choose(sure, None, "balanced_accuracy", base=base)["winner"] == 0
    assert sweep.complexity({"kind": "fusion", "epochs": 5}, base) < sweep.complexity(
        {"kind": "fusion"}, base)  # fewer epochs than the default: simpler  # fmt: skip
    with pytest.raises(ValueError, match="unknown selection rule"):
        sweep.choose(rows, None, "balanced_accuracy", base=base, rule="luck")


@pytest.mark.slow
def test_a_sweep_records_every_candidate_and_gates_the_winner_on_its_nested_figure(
    clean_db, settings, monkeypatch
):
    from fnd_core.pipeline import candidates

    settings = dataclasses.replace(settings, model_preset="tiny", train_epochs=3, cv_repeats=1)
    ingest_demo(clean_db, settings, 200, seed=3)
    champion = registry.get_version(clean_db, promote_tiny(clean_db, settings, epochs=3))
    grid = parse_space(space({"kind": {"values": ["fusion", "linear", "text_linear"]},
                              "hidden": {"values": [16, 32]}}))  # fmt: skip
    assert len(grid.expand(8)) == 4
    real = candidates.cross_validate

    def failing_for_hidden_32(kind, data, *args, **kwargs):
        if kind == "fusion" and data.config.hidden == 32:
            raise RuntimeError("out of memory (injected)")
        return real(kind, data, *args, **kwargs)

    monkeypatch.setattr(candidates, "cross_validate", failing_for_hidden_32)
    outcome = sweep.run(clean_db, settings, grid, budget=4, run_id="t-sweep")
    selection = outcome["sweep"]
    with clean_db.connect() as conn:
        rows = conn.execute(sa.text(
            "select candidate, config, status, estimate, estimate_spread, interval_low,"
            " interval_high, inner_estimates, inner_intervals, error"
            " from fnd.sweep_candidates where sweep_id = :id order by candidate"
        ), {"id": selection["sweep_id"]}).mappings().all()  # fmt: skip
        recorded = conn.execute(sa.text(
            "select status, winner, version, n_candidates, space_sha256 from fnd.sweeps"
        )).mappings().one()  # fmt: skip
    assert [r["config"] for r in rows] == grid.expand(4)
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["config"]["hidden"] for r in failed] == [32]
    assert "out of memory (injected)" in failed[0]["error"]
    done = [r for r in rows if r["status"] == "done"]
    assert len(done) == 3 and selection["n_candidates"] == 3
    best = one_se(done, lambda r: r["estimate"], lambda r: (r["interval_low"], r["interval_high"]))
    assert selection["winner"] == best["candidate"] and selection["naive"] == best["estimate"]
    # each outer fold makes the same choice on its inner estimates
    nested = selection["nested"]
    for k, chosen in enumerate(nested["chosen"]):
        inner = one_se(done, lambda r, k=k: r["inner_estimates"][k],
                       lambda r, k=k: r["inner_intervals"][k])  # fmt: skip
        assert chosen == inner["candidate"]
    assert nested["optimism"] == pytest.approx(best["estimate"] - nested["estimate"], abs=1e-5)
    assert dict(recorded) == {
        "status": "selected", "winner": best["candidate"], "version": outcome["version"],
        "n_candidates": 4, "space_sha256": grid.sha256,
    }  # fmt: skip
    version = registry.get_version(clean_db, outcome["version"])
    assert version.config["recipe_overrides"] == best["config"]
    assert version.metrics["selection"]["sweep"]["sweep_id"] == selection["sweep_id"]
    assert version.gate["estimate"] == nested["estimate"]  # the gate read the nested figure
    assert version.status == ("champion" if outcome["decision"] == "promote" else "rejected")
    # against the champion's recipe, on the same folds: another recipe needs the margin
    compared = version.gate["evaluation"]["champion"]
    assert compared["version"] == champion.version
    if champion.metrics["kind"] != version.metrics["kind"]:
        assert compared["same_recipe"] is False
    rule = "not_worse_than_champion" if compared["same_recipe"] else "new_recipe_beats"
    [check] = [c for c in version.gate["checks"] if "champion" in c["name"]]
    assert check["name"].startswith(rule)
    assert check["value"] == best["estimate"]  # the winner's own figure: like with like
    with clean_db.connect() as conn:
        board = conn.execute(sa.text(
            "select gate_estimate, nested_estimate, winner_own_estimate, sweep_id"
            " from fnd.model_leaderboard where version = :v"
        ), {"v": outcome["version"]}).mappings().one()  # fmt: skip
    assert float(board["gate_estimate"]) == float(board["nested_estimate"])
    assert float(board["nested_estimate"]) == pytest.approx(nested["estimate"])
    assert board["sweep_id"] == selection["sweep_id"]
    # a retried candidate task returns what was recorded, and fits nothing
    monkeypatch.setattr(candidates, "cross_validate", None)
    snap = {"as_of": "2000-01-01T00:00:00+00:00"}
    again = sweep.evaluate_candidate(clean_db, settings, snap, selection["sweep_id"], 0)
    assert again["status"] == rows[0]["status"]


@pytest.mark.slow
def test_a_budget_above_the_setting_is_refused(clean_db, settings):
    settings = dataclasses.replace(settings, sweep_max_candidates=4)
    with pytest.raises(ValueError, match="FND_SWEEP_MAX_CANDIDATES=4"):
        sweep.start(clean_db, settings, {"as_of": "2026-01-01T00:00:00+00:00"}, load_space(),
                    budget=5)  # fmt: skip


def test_a_candidate_estimated_without_its_inner_folds_keeps_its_outer_figures(tmp_path):
    """``inner=False`` (the sampler benchmark) skips only the nested part's fits."""
    from fnd_core.pipeline.evaluation import CVPlan
    from tests.test_nested_selection import fold_data

    data, topics = fold_data(8)
    plan = CVPlan.make(data.y, topics, n_folds=4, repeats=1, seed=1, topic_of=topics)
    settings = Settings(home=tmp_path, model_preset="tiny", image_size=32)
    full = sweep.estimate_candidate(settings, {"kind": "linear"}, data, plan)
    outer = sweep.estimate_candidate(settings, {"kind": "linear"}, data, plan, inner=False)
    assert len(full["inner_estimates"]) == len(full["inner_intervals"]) == 4
    assert outer["inner_estimates"] is None and outer["inner_intervals"] is None
    assert outer["estimate"] == full["estimate"]
    assert outer["oof_p_fake"] == full["oof_p_fake"]
