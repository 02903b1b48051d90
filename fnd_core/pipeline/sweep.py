"""Model search: candidate recipes estimated on the topic folds, the winner gated on a figure
the choice never saw.

``fnd sweep`` runs it in one process; the ``fnd_sweep`` DAG runs each step as a task and each
candidate as a mapped task instance. Steps take and return small JSON; what is larger (each
candidate's out-of-fold predictions) lives in ``fnd.sweep_candidates``.

1. :func:`start`: expand the space (:mod:`fnd_core.pipeline.sweep_space`) to at most
   ``budget`` candidates, record them, and encode the snapshot once (every candidate then reads
   the shared feature cache);
2. :func:`evaluate_candidate` (one per candidate): its topic-disjoint estimate on the
   retraining's folds, and its estimate on every outer fold's inner folds (what the nested
   choice reads). A candidate that fails is recorded with its reason; the sweep goes on;
3. :func:`select`: the winner is the simplest candidate within one standard error of the best
   estimate (retraining's rule among kinds); its honest figure is nested: each outer fold makes
   the same choice on its *inner* estimates, and that fold's held-out topics are scored by its
   pick. Picking among N makes the winner's own figure optimistic (the winner's curse); the
   nested one measures the whole search procedure;
4. :func:`train_winner`: the winner's recipe trained like any candidate
   (:func:`fnd_core.pipeline.candidate_training.train_candidate`), its baselines and the
   champion's recipe on the same folds, the nested figure recorded where the gate reads it.
   Then the retraining's evaluate → gate → promote or reject.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from fnd_core.pipeline import candidate_training, retrain, training_lease
from fnd_core.pipeline.sweep_space import SweepSpace, apply

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from fnd_core.model.config import ModelConfig
    from fnd_core.pipeline.candidates import FoldData
    from fnd_core.pipeline.evaluation import CVPlan, Recipe
    from fnd_core.settings import Settings

log = logging.getLogger(__name__)

Prepared = tuple["FoldData", "CVPlan"]


def new_sweep_id(run_id: str, snap: dict[str, Any], space: SweepSpace, budget: int) -> str:
    """A function of the run, snapshot, space and budget: a retried task finds its sweep."""
    salt = f"{run_id}|{snap['as_of']}|{space.sha256}|{budget}"
    stamp = datetime.fromisoformat(snap["as_of"]).strftime("%Y%m%dT%H%M%S")
    return f"sweep-{stamp}-{hashlib.sha256(salt.encode()).hexdigest()[:8]}"


def start(
    engine: Engine,
    settings: Settings,
    snap: dict[str, Any],
    space: SweepSpace,
    *,
    budget: int,
    run_id: str = "cli",
) -> dict[str, Any]:
    """Record the sweep and its candidates; fill the feature cache once for all of them.

    Raises:
        ValueError: ``budget`` above ``FND_SWEEP_MAX_CANDIDATES``.
    """
    if not 1 <= budget <= settings.sweep_max_candidates:
        raise ValueError(
            f"a sweep's budget must be 1 to FND_SWEEP_MAX_CANDIDATES="
            f"{settings.sweep_max_candidates}, got {budget}"
        )
    candidates = space.expand(budget)
    sweep_id = new_sweep_id(run_id, snap, space, budget)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into fnd.sweeps (sweep_id, run_id, snapshot_as_of, space, space_sha256,"
                " budget, n_candidates) values (:id, :run, :as_of, cast(:space as jsonb), :sha,"
                " :budget, :n) on conflict (sweep_id) do nothing"
            ),
            {"id": sweep_id, "run": run_id, "as_of": snap["as_of"], "space": json.dumps(
                space.source), "sha": space.sha256, "budget": budget, "n": len(candidates)},
        )  # fmt: skip
        conn.execute(
            sa.text(
                "insert into fnd.sweep_candidates (sweep_id, candidate, config) values "
                "(:id, :i, cast(:config as jsonb)) on conflict do nothing"
            ),
            [{"id": sweep_id, "i": i, "config": json.dumps(c)} for i, c in enumerate(candidates)],
        )
    log.info("sweep %s: %d candidates of space %s", sweep_id, len(candidates), space.sha256[:12])
    prepare(engine, settings, snap)  # encoders run once; every candidate reads the cache
    return {"sweep_id": sweep_id, "candidates": list(range(len(candidates)))}


def prepare(engine: Engine, settings: Settings, snap: dict[str, Any]) -> Prepared:
    """The snapshot's fold data (features through the cache) and its topic folds."""
    examples = retrain.load_examples(
        engine, as_of=datetime.fromisoformat(snap["as_of"]), max_posts=snap.get("max_posts")
    )
    config, recipe = base_recipe(settings)
    return candidate_training.fold_setup(settings, examples, config, recipe)


def base_recipe(settings: Settings) -> tuple[ModelConfig, Recipe]:
    """Today's architecture and recipe (the settings' preset, epochs and training options):
    what a candidate's parameters are applied over."""
    from fnd_core.model.config import ModelConfig
    from fnd_core.pipeline.evaluation import Recipe

    config = ModelConfig.for_preset(
        settings.model_preset, image_size=settings.image_size, max_tokens=settings.max_tokens
    )
    options = candidate_training.train_options(settings)
    return config, Recipe(epochs=settings.train_epochs, options=options, seed=0)


def evaluate_candidate(
    engine: Engine,
    settings: Settings,
    snap: dict[str, Any],
    sweep_id: str,
    candidate: int,
    *,
    prepared: Prepared | None = None,
) -> dict[str, Any]:
    """Estimate one candidate on the topic folds and on each outer fold's inner folds; record
    it. Idempotent (a retried task returns the recorded result); a candidate whose fitting
    fails is recorded ``failed`` with its reason, and the sweep goes on without it."""
    row = _candidate_row(engine, sweep_id, candidate)
    if row["status"] != "pending":
        return {"candidate": candidate, "status": row["status"], "estimate": row["estimate"]}
    started = time.perf_counter()
    try:
        figures = estimate_candidate(
            settings, row["config"], *(prepared or prepare(engine, settings, snap))
        )
    except Exception as exc:  # noqa: BLE001 — one bad recipe never sinks the sweep
        log.exception("sweep %s candidate %d failed", sweep_id, candidate)
        figures = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    figures["seconds"] = round(time.perf_counter() - started, 1)
    _record_candidate(engine, sweep_id, candidate, figures)
    log.info(
        "sweep %s candidate %d %s: %s in %.1f s", sweep_id, candidate, row["config"],
        figures.get("estimate", figures.get("error")), figures["seconds"],
    )  # fmt: skip
    status, estimate = figures["status"], figures.get("estimate")
    return {"candidate": candidate, "status": status, "estimate": estimate}


def estimate_candidate(
    settings: Settings, params: dict[str, Any], data: FoldData, plan: CVPlan, *, inner: bool = True
) -> dict[str, Any]:
    """One candidate's figures on ``plan`` and on each outer fold's inner folds, and its
    out-of-fold P(fake) on the outer folds (first repeat): a row of ``fnd.sweep_candidates``.
    ``inner=False`` skips the inner folds (no nested estimate: a benchmark comparing samplers)."""
    import dataclasses

    from fnd_core.pipeline import candidates
    from fnd_core.pipeline.evaluation import TooFewTopicsError
    from fnd_core.pipeline.nested_selection import inner_parts

    base_config, base = base_recipe(settings)
    kind, config, recipe = apply(params, base_config, base)
    data = dataclasses.replace(data, config=config)
    if kind not in data.available():
        raise ValueError(f"kind {kind!r} cannot be fitted on this model's inputs")
    metric = settings.gate_metric
    summary, oof = candidates.cross_validate(kind, data, plan, recipe, metric=metric)
    inner_summaries = None
    if inner:
        try:
            inner_summaries = [
                s
                for s, _ in candidates.cross_validate_parts(
                    kind, data, inner_parts(data, plan, recipe), recipe, metric=metric
                )
            ]
        except TooFewTopicsError as exc:
            log.warning("no inner estimates: an outer fold leaves too few topics (%s)", exc)
    figures = summary.to_json()
    return {
        "status": "done",
        "estimate": summary.estimate,
        "estimate_spread": figures["fold_std"],
        "estimate_by_story": figures.get("stories", {}).get("estimates", {}).get(metric),
        "interval_low": summary.interval[0],
        "interval_high": summary.interval[1],
        "recall_real": summary.main.recall_real,
        "recall_fake": summary.main.recall_fake,
        "inner_estimates": inner_summaries and [s.estimate for s in inner_summaries],
        "inner_intervals": inner_summaries and [list(s.interval) for s in inner_summaries],
        "plan_sha256": plan_fingerprint(plan),
        "oof_p_fake": [float(v) for v in oof[0]],
    }


def plan_fingerprint(plan: CVPlan) -> str:
    """The outer folds' identity: every candidate of a sweep must be scored on the same ones."""
    digest = hashlib.sha256()
    for rows in plan.repeats[0]:
        digest.update(np.asarray(rows, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()


def _rows(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    """The rows of one read of the sweep tables, as dicts."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]


def _candidate_row(engine: Engine, sweep_id: str, candidate: int) -> dict[str, Any]:
    rows = _rows(engine, "select config, status, estimate from fnd.sweep_candidates "
                 "where sweep_id = :id and candidate = :i", id=sweep_id, i=candidate)  # fmt: skip
    if not rows:
        raise LookupError(f"sweep {sweep_id} has no candidate {candidate}")
    return rows[0]


def _record_candidate(engine: Engine, sweep_id: str, candidate: int, f: dict[str, Any]) -> None:
    columns = (
        "status", "estimate", "estimate_spread", "estimate_by_story", "interval_low",
        "interval_high", "recall_real", "recall_fake", "plan_sha256", "oof_p_fake", "error",
        "seconds",
    )  # fmt: skip
    values = {c: f.get(c) for c in columns}
    values["inner"] = json.dumps(f.get("inner_estimates"))
    values["inner_intervals"] = json.dumps(f.get("inner_intervals"))
    sets = ", ".join(f"{c} = :{c}" for c in columns)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"update fnd.sweep_candidates set {sets}, inner_estimates = cast(:inner as jsonb),"
                " inner_intervals = cast(:inner_intervals as jsonb), finished_at = now()"
                " where sweep_id = :sweep_id and candidate = :candidate"
            ),
            values | {"sweep_id": sweep_id, "candidate": candidate},
        )


def select(
    engine: Engine, settings: Settings, snap: dict[str, Any], sweep_id: str
) -> dict[str, Any]:
    """The winner (the simplest candidate within one standard error of the best) and its
    nested estimate (:func:`choose`); recorded on the sweep.

    Raises:
        ValueError: no candidate finished, or the candidates were scored on different folds.
    """
    rows = _finished(engine, sweep_id)
    if not rows:
        _finish(engine, sweep_id, "failed", {"reason": "no candidate finished"})
        raise ValueError(f"sweep {sweep_id}: no candidate finished (see fnd.sweep_candidates)")
    if len({r["plan_sha256"] for r in rows}) != 1:
        raise ValueError(f"sweep {sweep_id}: candidates were estimated on different folds")
    prepared = None
    if all(r["inner_estimates"] is not None for r in rows):
        prepared = prepare(engine, settings, snap)
        if plan_fingerprint(prepared[1]) != rows[0]["plan_sha256"]:
            raise ValueError(f"sweep {sweep_id}: the snapshot's folds changed since it started")
    chosen = choose(rows, prepared, settings.gate_metric, base=base_recipe(settings))
    selection = {"sweep_id": sweep_id, **chosen}
    _finish(engine, sweep_id, "selected", selection, winner=selection["winner"])
    return selection


RULES = {
    "one_se": "the simplest candidate within one standard error of the best estimate",
    "best": "the best estimate",
}


def complexity(params: dict[str, Any], base: tuple[ModelConfig, Recipe]) -> tuple[int, ...]:
    """How complex a candidate's recipe is, for the one-standard-error rule: fewer inputs first
    (the kinds in retraining's order, :data:`candidates.SIMPLEST_FIRST`), then for fusion a
    narrower head and fewer epochs, then fewer options moved from their defaults."""
    from fnd_core.pipeline.candidates import SIMPLEST_FIRST

    kind, config, recipe = apply(params, *base)
    size = (config.proj_dim, config.hidden, recipe.epochs) if kind == "fusion" else (0, 0, 0)
    return (SIMPLEST_FIRST.index(kind), *size, len(params))


def _pick(
    rows: list[dict[str, Any]],
    estimate: Callable[[dict[str, Any]], float],
    interval: Callable[[dict[str, Any]], Sequence[float] | None],
    rule: str,
    base: tuple[ModelConfig, Recipe],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The row ``rule`` picks, and how: the best row, its standard error (read off its 90 %
    interval, as :func:`candidates.choose` reads it) and the bar the pick cleared."""
    from fnd_core.pipeline.candidates import Z_90

    best = max(rows, key=lambda r: (estimate(r), -r["candidate"]))
    if rule == "best":
        return best, {"best": best["candidate"]}
    low, high = interval(best) or (estimate(best), estimate(best))
    se = max(0.0, (high - low) / (2 * Z_90))
    bar = estimate(best) - se
    near = [r for r in rows if estimate(r) >= bar - 1e-12]
    pick = min(near, key=lambda r: (complexity(r["config"], base), r["candidate"]))
    return pick, {"best": best["candidate"], "standard_error": round(se, 6), "bar": round(bar, 6)}


def choose(
    rows: list[dict[str, Any]],
    prepared: Prepared | None,
    metric: str,
    *,
    base: tuple[ModelConfig, Recipe],
    rule: str = "one_se",
) -> dict[str, Any]:
    """The winner among finished candidates, and the nested estimate of that choice when
    ``prepared`` (the fold data and plan the rows were estimated on) is given: each outer fold
    makes the same choice on its *inner* estimates and is scored by its pick.

    The rule is retraining's among kinds (Breiman's one-standard-error rule): estimates closer
    than their standard error differ by noise, and of several such recipes the simplest is the
    one to ship (cheaper to train and score, less to overfit). ``rule="best"`` (the best
    estimate) is there to compare the two on the same rows (``benchmarks/sweep_holdouts.py``).
    """
    from fnd_core.pipeline.evaluation import DEFAULT_THRESHOLD, summarise

    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}: use one of {sorted(RULES)}")
    winner, how = _pick(rows, lambda r: r["estimate"],
                        lambda r: (r["interval_low"], r["interval_high"]), rule, base)  # fmt: skip
    selection: dict[str, Any] = {
        "winner": winner["candidate"],
        "params": winner["config"],
        "naive": winner["estimate"],
        "n_candidates": len(rows),
        "rule": f"{RULES[rule]}; nested over the outer folds",
        **how,
        "nested": None,
    }
    if prepared is None:
        log.warning("no nested estimate of the choice (an outer fold has too few topics)")
        return selection
    data, plan = prepared
    p, chosen = np.zeros(len(data.y)), []
    for k, test in enumerate(plan.repeats[0]):
        pick, _ = _pick(rows, _kth("inner_estimates", k), _kth("inner_intervals", k), rule, base)
        chosen.append(pick["candidate"])
        p[test] = np.asarray(pick["oof_p_fake"])[test]
    outer = _first_repeat(plan)
    summary = summarise(data.y, [p], outer, metric, DEFAULT_THRESHOLD, data.stories).to_json()
    keep = ("metric", "counted_by", "estimate", "interval", "interval_width",
            "recall_real", "recall_fake", "stories", "topics")  # fmt: skip
    selection["nested"] = {k: summary[k] for k in keep if k in summary} | {
        "chosen": chosen,
        "naive": winner["estimate"],
        "optimism": round(winner["estimate"] - summary["estimate"], 6),
        "n_outer_folds": len(chosen),
    }
    log.info(
        "candidate %d chosen (%s), %.3f on the folds; nested %.3f (chosen per outer fold: %s)",
        winner["candidate"], RULES[rule], winner["estimate"], summary["estimate"], chosen,
    )  # fmt: skip
    return selection


def _kth(column: str, k: int) -> Callable[[dict[str, Any]], Any]:
    """A row's ``column`` (a list per outer fold) at fold ``k``; ``None`` where the column was
    not recorded (inner intervals of a sweep from before they were)."""

    def read(row: dict[str, Any]) -> Any:
        values = row.get(column)
        return values[k] if values else None

    return read


def _first_repeat(plan: CVPlan) -> CVPlan:
    import dataclasses

    return dataclasses.replace(plan, repeats=[plan.repeats[0]])


def _finished(engine: Engine, sweep_id: str) -> list[dict[str, Any]]:
    return _rows(
        engine,
        "select candidate, config, estimate, interval_low, interval_high, inner_estimates, "
        "inner_intervals, plan_sha256, oof_p_fake from fnd.sweep_candidates "
        "where sweep_id = :id and status = 'done' order by candidate",
        id=sweep_id,
    )


def _finish(
    engine: Engine,
    sweep_id: str,
    status: str,
    selection: dict[str, Any],
    *,
    winner: int | None = None,
    version: str | None = None,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "update fnd.sweeps set status = :status, selection = cast(:sel as jsonb), "
                "winner = coalesce(:winner, winner), version = coalesce(:version, version), "
                "finished_at = now() where sweep_id = :id"
            ),
            {
                "status": status,
                "sel": json.dumps(selection),
                "winner": winner,
                "version": version,
                "id": sweep_id,
            },  # fmt: skip
        )


def train_winner(
    engine: Engine,
    settings: Settings,
    snap: dict[str, Any],
    selection: dict[str, Any],
    *,
    run_id: str = "cli",
) -> dict[str, Any]:
    """The winner's recipe trained and registered as a candidate, its nested estimate where
    the gate reads it.

    Raises:
        ValueError: the sweep has no nested estimate: there is no honest figure to gate on.
    """
    if selection.get("nested") is None:
        raise ValueError(
            f"sweep {selection['sweep_id']}: no nested estimate (too few topics in an outer "
            "fold's training part), so no figure the choice did not see: nothing is trained"
        )
    registered = candidate_training.train_candidate(
        engine, settings, snap, epochs=settings.train_epochs, run_id=run_id,
        overrides=selection["params"], sweep=selection,
    )  # fmt: skip
    _finish(engine, selection["sweep_id"], "selected", selection, version=registered["version"])
    return registered


def run(
    engine: Engine,
    settings: Settings,
    space: SweepSpace,
    *,
    budget: int,
    min_accuracy: float | None = None,
    forced_by: str | None = None,
    floor_set_by: str | None = None,
    run_id: str = "cli",
) -> dict[str, Any]:
    """The whole sweep in one process (``fnd sweep``): snapshot → validate → candidates →
    select → train the winner → evaluate → gate → promote or reject, holding the training
    lease throughout (renewed before each candidate), as :func:`retrain.run` does."""
    holder = training_lease.cli_holder("sweep")
    ttl = settings.training_lease_ttl
    with training_lease.held(engine, holder, ttl):
        snap = retrain.snapshot(engine, settings.train_max_posts)
        if snap["n_labelled"] == 0:
            return {"skipped": retrain.NO_LABELLED_POSTS}
        retrain.validate_snapshot(engine, settings, snap, run_id=run_id)
        started = start(engine, settings, snap, space, budget=budget, run_id=run_id)
        prepared = prepare(engine, settings, snap)
        for i in started["candidates"]:
            training_lease.renew(engine, holder, ttl)
            evaluate_candidate(engine, settings, snap, started["sweep_id"], i, prepared=prepared)
        selection = select(engine, settings, snap, started["sweep_id"])
        training_lease.renew(engine, holder, ttl)
        candidate = train_winner(engine, settings, snap, selection, run_id=run_id)
        evaluation = retrain.evaluate(engine, settings, candidate["version"])
        policy = retrain.policy_from(settings, min_accuracy=min_accuracy)
        decision = retrain.gate(evaluation, policy, forced_by=forced_by)
        outcome = retrain.record_decision(
            engine, evaluation, decision, policy, floor_set_by=floor_set_by
        )
        return {"sweep": selection, "candidate": candidate, **outcome}


def candidates_table(engine: Engine, sweep_id: str) -> list[dict[str, Any]]:
    """The sweep's candidates, best estimate first (failed ones last, with their reason)."""
    return _rows(
        engine,
        "select candidate, config, status, estimate, estimate_spread, estimate_by_story,"
        " interval_low, interval_high, error, seconds from fnd.sweep_candidates"
        " where sweep_id = :id order by estimate desc nulls last, candidate",
        id=sweep_id,
    )
