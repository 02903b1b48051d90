"""How far is the gate's estimate from what unseen events then get, over many event splits?

Usage::

    python -m benchmarks.gate_estimate_splits [--data ../shared/data/mediaeval-dev]
        [--splits 6] [--seed 7] [--repeats 3]

One split of the README's check ("does the gate's number predict new events?") is one draw:
on these tweets the held-out real side is always ``garissa`` (the only other event with real
posts; ``sandy`` must stay in training or nothing learns "real"), and five of the ten fake-only
events are drawn at random to join it. For each split the recipe (offline preset, the gate's
grouped folds) records its estimate on the other events, counted both ways — each story once
(the gate's) and by post — then the model trained on all of them scores the held-out events.
Printed: per split, both estimates beside the held-out balanced accuracy (by post, as a user
counts verdicts), and per estimator the mean absolute gap and how many splits fall within 0.10.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from benchmarks.common import bench_home, machine, table
from fnd_core.model import metrics
from fnd_core.pipeline import holdout
from fnd_core.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mediaeval-dev"
REAL_EVENT = "garissa"
MIXED_EVENT = "sandy"


def draw_splits(events: list[str], n: int, seed: int) -> list[list[str]]:
    """``n`` distinct draws of five fake-only events, each with the real-only event."""
    fake_only = sorted(set(events) - {REAL_EVENT, MIXED_EVENT})
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < n:
        pick = tuple(sorted(rng.sample(fake_only, 5)))
        if pick not in seen:
            seen.add(pick)
            out.append([REAL_EVENT, *pick])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--splits", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=None, help="default: FND_CV_REPEATS")
    args = parser.parse_args()
    with bench_home() as home:
        settings = Settings(home=home, **({"cv_repeats": args.repeats} if args.repeats else {}))
        posts = holdout.read_labelled(str(args.data), settings, holdout_field="event")
        splits = draw_splits([v for v in posts.holdout_values if v], args.splits, args.seed)
        parts = [holdout.chosen_part(posts.holdout_values, s)[0] for s in splits]
        print(f"# {machine()}; {len(posts.examples):,} posts, {len(parts)} splits, "
              f"{settings.cv_folds}x{settings.cv_repeats} grouped folds")  # fmt: skip
        results = holdout.evaluate_holdouts(
            posts, settings, parts, preset="offline", epochs=settings.train_epochs,
            with_estimate=True,
        )  # fmt: skip
    y = np.array([int(e.label) for e in posts.examples])
    rows, gaps = [], {"stories": [], "posts": []}
    for r in results:
        got = metrics.balanced_accuracy(y[r.rows], metrics.predict_labels(r.p["fnd"], 0.5))
        est = r.estimate or {}
        gaps["stories"].append(got - est["fnd"])
        gaps["posts"].append(got - est["fnd_by_post"])
        rows.append((r.name.replace("+", ", "), f"{est['fnd']:.3f} ± {est['fnd_fold_std']:.3f}",
                     f"{est['fnd_by_post']:.3f}", f"{got:.3f}", f"{gaps['stories'][-1]:+.3f}",
                     f"{gaps['posts'][-1]:+.3f}"))  # fmt: skip
    print(table(rows, ("held out", "estimate, each story once (gate)", "estimate by post",
                       "held-out by post", "gap (gate)", "gap (by post)")))  # fmt: skip
    for name, values in gaps.items():
        v = np.abs(values)
        print(f"estimate counted by {name}: mean |gap| {v.mean():.3f}, largest {v.max():.3f}, "
              f"within 0.10 in {int((v <= 0.10).sum())} of {len(v)} splits")  # fmt: skip


if __name__ == "__main__":
    main()
