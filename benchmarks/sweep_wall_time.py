"""Wall time of a 16-candidate model search against training those recipes one at a time.

Usage::

    python -m benchmarks.sweep_wall_time [--posts 1000] [--budget 16] [--preset offline]

On demo posts in a throwaway database, with the feature cache warmed first (every path reads
the same cached features, so encoding is not what is compared):

- **sweep**: ``fnd sweep --budget 16`` (:func:`fnd_core.pipeline.sweep.run`): each candidate on
  the topic folds and on every outer fold's inner folds (the nested estimate), the winner
  trained and gated;
- **one fnd train**: :func:`fnd_core.pipeline.retrain.run` (every kind, the prior, the nested
  choice among kinds, the final fit, the gate), and 16 times that figure, as the issue asks;
- **16 recipes trained one by one**: each candidate's recipe through
  :func:`~fnd_core.pipeline.candidate_training.train_candidate` (its kind on the folds, the
  prior, the champion's recipe, the final fit): what a user without a sweep would run.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from benchmarks.common import bench_database, bench_home, bench_settings, machine, table
from fnd_core.ingest.load import ingest_file
from fnd_core.io.db import make_engine
from fnd_core.pipeline import candidate_training, retrain, sweep
from fnd_core.pipeline.sweep_space import load_space
from fnd_core.stack.demo import generate_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--preset", default="offline")
    parser.add_argument("--space", type=Path, default=None)
    args = parser.parse_args()
    space = load_space(args.space)
    with bench_database() as url, bench_home() as home:
        settings = bench_settings(home, url, model_preset=args.preset, gate_min_accuracy=0.0)
        engine = make_engine(url)
        batch = generate_batch(Path(settings.landing), args.posts, seed=7)
        ingest_file(engine, str(batch.data_file), settings)
        snap = retrain.snapshot(engine)
        sweep.prepare(engine, settings, snap)  # warm the feature cache for every path
        folds = f"{settings.cv_folds} folds x {settings.cv_repeats} draws"
        print(f"# {machine()}; {args.posts} demo posts; preset {args.preset}; {folds}; "
              f"budget {args.budget}")  # fmt: skip

        started = time.perf_counter()
        outcome = sweep.run(engine, settings, space, budget=args.budget, run_id="bench-sweep")
        sweep_s = time.perf_counter() - started
        n = outcome["sweep"]["n_candidates"]

        started = time.perf_counter()
        retrain.run(engine, settings, run_id="bench-train")
        train_s = time.perf_counter() - started

        started = time.perf_counter()
        for i, params in enumerate(space.expand(args.budget)):
            candidate_training.train_candidate(
                engine, dataclasses.replace(settings, nested_selection=False), snap,
                epochs=settings.train_epochs, run_id=f"bench-recipe-{i}", overrides=params,
            )  # fmt: skip
        one_by_one_s = time.perf_counter() - started
        engine.dispose()
    print(table(
        [["sweep (nested estimate, winner trained and gated)", n, f"{sweep_s:.0f}", "1.00×"],
         ["one `fnd train` × 16", 16, f"{16 * train_s:.0f} (one: {train_s:.0f})",
          f"{16 * train_s / sweep_s:.2f}×"],
         ["each recipe trained one by one", n, f"{one_by_one_s:.0f}",
          f"{one_by_one_s / sweep_s:.2f}×"]],
        ("path", "recipes", "seconds", "time against the sweep"),
    ))  # fmt: skip


if __name__ == "__main__":
    main()
