"""Does Optuna's TPE beat random search at the same budget? Real tweets decide.

Usage::

    python -m benchmarks.sweep_samplers [--data ../shared/data/mediaeval-dev] [--budget 16]
        [--startup 8] [--space sweeps/default.yaml] [--named H1,H2,H3] [--home DIR]

The issue behind ``fnd sweep`` allows TPE only if it beats random at the same budget on the
MediaEval dev events. For each named hold-out of ``benchmarks.topic_holdouts`` (event field
stripped), on its training part:

- **random**: the space's own expansion (``SweepSpace.expand``: the included recipes, then
  random draws), ``--budget`` candidates, as ``fnd sweep`` runs them;
- **tpe**: Optuna's TPE sampler over the same space, its first ``--startup`` candidates the
  first ones of random (the same recipes, estimated once), then ``budget - startup`` proposals
  told each estimate as it comes (ask/tell; a proposal equal to one of its own earlier
  candidates is told that figure and does not count against the budget; one that random also
  drew is estimated once for both).

Every candidate is estimated as the sweep estimates it (:func:`sweep.estimate_candidate`, the
topic folds of the training part, outer folds only: the samplers are compared on what they
optimise), and fitted on the whole training part to score the held-out events. Printed per
hold-out and sampler: the best estimate found, and the winner of each selection rule
(:func:`sweep.choose`) with its held-out balanced accuracy (counted by post). TPE beats random
only if its winners hold out better, not merely if it finds a higher estimate: a higher figure
found by searching harder is partly the winner's curse.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import bench_home, machine, table
from benchmarks.sweep_holdouts import held_out_p
from benchmarks.topic_holdouts import DATA, fmt, load, named_test, scores
from fnd_core.pipeline import sweep
from fnd_core.pipeline.sweep_space import PARAMETERS, SweepSpace, canonical, load_space
from fnd_core.settings import Settings


class Pool:
    """The candidates of one hold-out, each estimated (and scored held out) once."""

    def __init__(self, bench, part, plan, test: np.ndarray) -> None:
        self.bench, self.part, self.plan, self.test = bench, part, plan, test
        self.rows: dict[str, dict[str, Any]] = {}

    def row(self, params: dict[str, Any]) -> dict[str, Any]:
        key = json.dumps(canonical(params), sort_keys=True)
        if key not in self.rows:
            started = time.perf_counter()
            figures = sweep.estimate_candidate(
                self.bench.settings, params, self.part, self.plan, inner=False
            )
            p = held_out_p(self.bench, self.part, self.plan, params, self.test)
            held_out = scores(self.bench.data.y[self.test], p)["ba"]
            self.rows[key] = {"candidate": len(self.rows), "config": canonical(params),
                              **figures, "held_out": held_out,
                              "seconds": time.perf_counter() - started}  # fmt: skip
            r = self.rows[key]
            print(f"  #{r['candidate']} {r['config']}: estimate {fmt(r['estimate'])}, "
                  f"held out {fmt(held_out)}, {r['seconds']:.0f} s", flush=True)  # fmt: skip
        return self.rows[key]


def suggest(trial, space: SweepSpace) -> dict[str, Any]:
    """A candidate from an Optuna trial over ``space``: the kind first, then only what the
    kind reads (define-by-run, so TPE models each kind's parameters apart)."""
    kinds = list(dict.fromkeys(space.values.get("kind", ["fusion"])))
    params: dict[str, Any] = {"kind": trial.suggest_categorical("kind", kinds)}
    for name, values in space.values.items():
        if name != "kind" and params["kind"] in PARAMETERS[name].kinds:
            params[name] = trial.suggest_categorical(name, list(dict.fromkeys(values)))
    for name, (low, high, log) in space.ranges.items():
        if params["kind"] in PARAMETERS[name].kinds:
            if PARAMETERS[name].type is int:
                params[name] = trial.suggest_int(name, int(low), int(high), log=log)
            else:
                params[name] = trial.suggest_float(name, low, high, log=log)
    return params


def tpe(pool: Pool, space: SweepSpace, budget: int, startup: list[dict]) -> list[dict]:
    """TPE's ``budget`` distinct candidates: ``startup`` first, then its proposals."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=space.seed, n_startup_trials=len(startup))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for params in startup:
        study.enqueue_trial(_complete(params, space), skip_if_exists=False)
    chosen: dict[str, dict] = {}
    for _ in range(50 * budget):
        if len(chosen) >= budget:
            break
        trial = study.ask()
        params = suggest(trial, space)
        row = pool.row(params)
        chosen.setdefault(json.dumps(row["config"], sort_keys=True), row)
        study.tell(trial, row["estimate"])
    return list(chosen.values())


def _complete(params: dict[str, Any], space: SweepSpace) -> dict[str, Any]:
    """``params`` (canonical: options at their defaults left out) with every parameter its
    kind reads, so that the enqueued trial is exactly this recipe."""
    from fnd_core.model.train.recipe import TrainOptions

    kind, defaults = params.get("kind", "fusion"), TrainOptions()
    full = {"kind": kind, **params}
    for name in [*space.values, *space.ranges]:
        if name not in full and kind in PARAMETERS[name].kinds:
            full[name] = getattr(defaults, name)
    return full


def run_holdout(bench, name: str, test: np.ndarray, space, budget: int, startup: int) -> dict:
    train = np.setdiff1d(np.arange(len(bench.events)), test)
    started = time.perf_counter()
    part, plan = bench.split(train, strip=True, repeats=bench.settings.cv_repeats)
    pool = Pool(bench, part, plan, test)
    print(f"\n### {name}: random", flush=True)
    drawn = space.expand(budget)
    rows = {"random": [pool.row(params) for params in drawn]}
    print(f"\n### {name}: tpe (first {startup} = random's first {startup})", flush=True)
    rows["tpe"] = tpe(pool, space, budget, drawn[:startup])
    base = sweep.base_recipe(bench.settings)
    out, lines = {}, []
    for sampler, found in rows.items():
        result = {"best_estimate": max(r["estimate"] for r in found)}
        for rule in sweep.RULES:
            pick = sweep.choose(found, None, bench.settings.gate_metric, base=base, rule=rule)
            winner = next(r for r in found if r["candidate"] == pick["winner"])
            result[rule] = (winner["config"], winner["estimate"], winner["held_out"])
        out[sampler] = result
        lines.append([name, sampler, len(found), fmt(result["best_estimate"]),
                      *(f"{c} {fmt(e)} → {fmt(h)}" for c, e, h in
                        (result[rule] for rule in sweep.RULES)),
                      fmt(max(r["held_out"] for r in found)),
                      "{} / {}".format(*(fmt(np.mean([r[k] for r in _own(rows, sampler, startup)]))
                                         for k in ("estimate", "held_out")))])  # fmt: skip
    seconds = time.perf_counter() - started
    print(f"\n{name}: {len(pool.rows)} recipes estimated, {seconds:.0f} s\n")
    print(table(lines, _HEADER))
    return out


_HEADER = ("hold-out", "sampler", "candidates", "best estimate",
           "1-SE winner: estimate → held out", "best-estimate winner: estimate → held out",
           "best held out among them (hindsight)",
           "its own draws after the startup: mean estimate / mean held out")  # fmt: skip


def _own(rows: dict[str, list[dict]], sampler: str, startup: int) -> list[dict]:
    """The candidates ``sampler`` drew after the shared startup that random did not draw."""
    if sampler == "random":
        return rows["random"][startup:]
    drawn = {r["candidate"] for r in rows["random"]}
    return [r for r in rows[sampler][startup:] if r["candidate"] not in drawn]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--space", type=Path, default=None, help="default: sweeps/default.yaml")
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--startup", type=int, default=8, help="random candidates TPE starts on")
    parser.add_argument("--named", default="H1,H2,H3")
    parser.add_argument("--seed", type=int, default=7, help="the sandy draw of H3")
    parser.add_argument("--home", type=Path, default=None, help="reuse a feature cache")
    args = parser.parse_args()
    if not 1 <= args.startup < args.budget:
        parser.error("--startup must be at least 1 and below --budget")
    space = load_space(args.space)
    with bench_home() as scratch:
        settings = dataclasses.replace(Settings.from_env(), home=args.home or scratch)
        bench = load(args.data, settings, None)
        print(
            f"# {machine()}; {len(bench.examples):,} posts; budget {args.budget}, TPE startup "
            f"{args.startup}; space {space.sha256[:12]}; {settings.cv_repeats} fold draw(s)"
        )
        results = []
        for name in args.named.split(","):
            test = named_test(bench, name, args.seed)  # as topic_holdouts holds out
            results.append(run_holdout(bench, name, test, space, args.budget, args.startup))
        print("\n## Mean over the hold-outs\n")
        lines = []
        for sampler in ("random", "tpe"):
            mean = {key: np.mean([r[sampler][key][2] for r in results]) for key in sweep.RULES}
            best = np.mean([r[sampler]["best_estimate"] for r in results])
            lines.append([sampler, fmt(best), *(fmt(mean[k]) for k in sweep.RULES)])
        print(table(lines, ("sampler", "best estimate", "1-SE winner held out",
                            "best-estimate winner held out")))  # fmt: skip


if __name__ == "__main__":
    main()
