"""Does a model search's winner keep its recorded figure on new events? Real tweets decide.

Usage::

    python -m benchmarks.sweep_holdouts [--data ../shared/data/mediaeval-dev] [--budget 8]
        [--space sweeps/default.yaml] [--named H1,H2,H3] [--seed 7] [--home DIR]

On the MediaEval dev tweets, for each named hold-out of ``benchmarks.topic_holdouts`` (event
field stripped: topics discovered, the path an unseen deployment takes), the sweep runs on the
training part exactly as ``fnd sweep`` does (:func:`fnd_core.pipeline.sweep.estimate_candidate`
per candidate, :func:`fnd_core.pipeline.sweep.choose`), its winner is fitted on the whole
training part and scores the held-out events. Printed per hold-out: every candidate's estimate
and held-out figure; then for each selection rule on the same rows (``one_se``, the sweep's:
the simplest within one standard error of the best; ``best``: the best estimate) the winner's
own (naive) estimate, its nested estimate (what the gate reads) and its held-out balanced
accuracy, and the mean |estimate - held-out| of both figures over the hold-outs: the winner's
curse, measured. ``FND_CV_REPEATS`` sets the fold draws (the nested choice uses the first).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from benchmarks.common import bench_home, machine, table
from benchmarks.topic_holdouts import DATA, fmt, load, named_test, scores
from fnd_core.pipeline import candidates, sweep
from fnd_core.pipeline.sweep_space import apply, load_space
from fnd_core.settings import Settings


def held_out_p(bench, part, plan, params: dict, test: np.ndarray) -> np.ndarray:
    """P(fake) of the held-out posts under the recipe ``params`` fitted on the training part."""
    base_config, base = sweep.base_recipe(bench.settings)
    kind, config, recipe = apply(params, base_config, base)
    part = dataclasses.replace(part, config=config)
    everyone = np.arange(len(part.y))
    model = candidates.fit(kind, part, everyone, recipe, n_folds=plan.n_folds, seed=0)
    return candidates.proba(model, dataclasses.replace(bench.data, config=config), test)


def run_holdout(bench, name: str, test: np.ndarray, space, budget: int) -> dict:
    train = np.setdiff1d(np.arange(len(bench.events)), test)
    started = time.perf_counter()
    part, plan = bench.split(train, strip=True, repeats=bench.settings.cv_repeats)
    y = bench.data.y[test]
    rows, lines = [], []
    for i, params in enumerate(space.expand(budget)):
        t0 = time.perf_counter()
        figures = sweep.estimate_candidate(bench.settings, params, part, plan)
        row = {"candidate": i, "config": params, **figures}
        row["held_out"] = scores(y, held_out_p(bench, part, plan, params, test))["ba"]
        rows.append(row)
        lines.append([i, params, fmt(row["estimate"]), fmt(row["held_out"]),
                      f"{time.perf_counter() - t0:.0f}"])  # fmt: skip
        print(f"  {lines[-1]}", flush=True)
    print(f"\n### {name} (event stripped): {len(test)} held-out posts ({int(y.sum())} fake), "
          f"{len(rows)} candidates, {time.perf_counter() - started:.0f} s\n")  # fmt: skip
    print(table(lines, ("#", "recipe", "estimate", "held out", "seconds")))
    results = {}
    for rule in sweep.RULES:  # both rules on the same rows
        selection = sweep.choose(rows, (part, plan), bench.settings.gate_metric,
                                 base=sweep.base_recipe(bench.settings), rule=rule)  # fmt: skip
        winner, nested = rows[selection["winner"]], selection["nested"]
        print(f"\n{rule}: winner {winner['candidate']}, own estimate {fmt(selection['naive'])}, "
              f"nested {fmt(nested and nested['estimate'])}, held out {fmt(winner['held_out'])};"
              f" chosen per outer fold {nested and nested['chosen']}")  # fmt: skip
        results[rule] = {"name": name, "rule": rule, "naive": selection["naive"],
                         "nested": nested and nested["estimate"],
                         "interval": nested and nested["interval"],
                         "held_out": winner["held_out"], "winner": winner["config"]}  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--space", type=Path, default=None, help="default: sweeps/default.yaml")
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--named", default="H1,H2,H3")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--home", type=Path, default=None, help="reuse a feature cache")
    args = parser.parse_args()
    space = load_space(args.space)
    with bench_home() as scratch:
        settings = dataclasses.replace(Settings.from_env(), home=args.home or scratch)
        bench = load(args.data, settings, None)
        print(f"# {machine()}; {len(bench.examples):,} posts; budget {args.budget}; space "
              f"{space.sha256[:12]}; {settings.cv_repeats} fold draw(s)")  # fmt: skip
        results: dict[str, list[dict]] = {rule: [] for rule in sweep.RULES}
        for name in args.named.split(","):
            test = named_test(bench, name, args.seed)  # as topic_holdouts holds out
            for rule, result in run_holdout(bench, name, test, space, args.budget).items():
                results[rule].append(result)
        for rule, rows in results.items():
            print(f"\n## The sweep's winner on the named hold-outs, rule {rule} (event stripped)\n")
            print(table(
                [[r["name"], r["winner"], fmt(r["naive"]), fmt(r["nested"]),
                  "[{:.3f}, {:.3f}]".format(*r["interval"]) if r["interval"] else "–",
                  fmt(r["held_out"])] for r in rows],
                ("hold-out", "winner", "own estimate (naive)", "nested (the gate reads)",
                 "90 % interval", "held out"),
            ))  # fmt: skip
            for key in ("naive", "nested"):
                gaps = [abs(r[key] - r["held_out"]) for r in rows if r[key] is not None]
                print(f"{rule}: mean |{key} - held out| {np.mean(gaps):.3f} over {len(gaps)}")


if __name__ == "__main__":
    main()
