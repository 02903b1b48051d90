"""Does the gate's topic-disjoint estimate predict what *new events* get? Real tweets decide.

Usage::

    python -m benchmarks.topic_holdouts [--data ../shared/data/mediaeval-dev] [--kinds K,K]
        [--random 20] [--random-repeats 1] [--seed 7] [--home DIR] [--skip PART,PART]
        [--topic-objective none|balanced|worst|adversarial] [--named H1,H2,H3]

On the MediaEval dev tweets (13 events; ``event`` is a landing field), for every candidate kind
the gate chooses among (``FND_CANDIDATE_KINDS``; :mod:`fnd_core.pipeline.candidates`) and the
prior:

- ``loeo``: leave-one-event-out, pooled over every held-out post;
- ``named``: three hold-outs — H1 {eclipse, malaysia, sochi, underwater}, H2 {garissa,
  bringback, columbianChemicals, samurai}, H3 {3,000 sandy posts drawn with ``--seed``,
  passport, pigFish, elephant, livr} — each with the ``event`` field given to training and
  stripped (topics discovered). Per kind: the gate's estimate on the training part (topic
  folds, 90 % interval), then the held-out balanced accuracy, real and fake recall, all counted
  by post; the kind the gate would ship is marked. The gap is judged against
  max(0.05, 2 x the held-out figure's standard error from a bootstrap over its stories).
  Then the choice itself, nested (:mod:`fnd_core.pipeline.nested_selection`): its estimate
  against the winner's naive one, and against the shipped kind's held-out figure;
- ``random``: ``--random`` hold-outs of 2 to 4 events whose held-out posts hold both classes
  (and whose training part too), event field stripped: the shipped kind's estimate against
  its held-out figure — mean |gap| and how often the interval holds the held-out figure —
  for the naive estimate and for the nested one (what the gate reads). Beside the gate's choice,
  what two other rules would ship: the best estimate, and the simplest kind within one *paired*
  standard error of the best (:func:`paired_choice`; measured, not adopted).

Figures are printed as Markdown (the README's "Verdicts on new events" pastes them).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time
from pathlib import Path

import numpy as np

from benchmarks.common import bench_home, machine, table
from fnd_core.model import metrics
from fnd_core.model.config import ModelConfig
from fnd_core.pipeline import candidates, holdout, nested_selection
from fnd_core.pipeline.candidate_training import train_options
from fnd_core.pipeline.evaluation import Recipe
from fnd_core.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mediaeval-dev"
NAMED = {
    "H1": ["eclipse", "malaysia", "sochi", "underwater"],
    "H2": ["garissa", "bringback", "columbianChemicals", "samurai"],
    "H3": ["passport", "pigFish", "elephant", "livr"],  # + 3,000 sandy posts
}
SANDY_DRAW = 3000


@dataclasses.dataclass
class Bench:
    """The dev posts with their features, ready for any split."""

    examples: list
    events: np.ndarray
    data: candidates.FoldData
    kinds: list[str]
    settings: Settings
    recipe: Recipe
    paired: str = ""  # the last estimates()' kind under the paired rule (paired_choice)

    def split(self, train: np.ndarray, *, strip: bool, repeats: int):
        """The training part (with its topics) and its topic folds."""
        examples = [self.examples[i] for i in train]
        if strip:
            examples = [dataclasses.replace(e, topic=None) for e in examples]
        settings = dataclasses.replace(self.settings, cv_repeats=repeats)
        return holdout.training_part(examples, self.data.subset(train), settings)

    def fit_and_score(self, part, plan, test: np.ndarray) -> dict[str, np.ndarray]:
        everyone = np.arange(len(part.y))
        p = {}
        for kind in self.kinds:
            model = candidates.fit(kind, part, everyone, self.recipe, n_folds=plan.n_folds, seed=0)
            p[kind] = candidates.proba(model, self.data, test)
        p["prior"] = np.full(len(test), float(part.y.mean() >= 0.5))
        return p

    def estimates(self, part, plan, *, nested: bool) -> tuple[dict[str, dict], dict | None, str]:
        """Each kind's gate estimate (JSON), the choice's nested estimate (None unless asked,
        or when it cannot be made), and the kind the gate would ship."""
        metric = "balanced_accuracy"
        cvs, oofs = {}, {}
        for kind in self.kinds:
            cvs[kind], oofs[kind] = candidates.cross_validate(
                kind, part, plan, self.recipe, metric=metric
            )
        winner = candidates.choose(cvs)["winner"]
        self.paired = paired_choice(part, plan, cvs, oofs)  # another rule, to compare
        found = None
        if nested:
            found = nested_selection.nested_estimate(
                part, plan, self.recipe, oofs, winner=winner, naive=cvs[winner].estimate,
                metric=metric,
            )  # fmt: skip
        est = {kind: summary.to_json() for kind, summary in cvs.items()}
        return est, None if found is None else found.to_json(), winner


def paired_choice(part, plan, cvs: dict, oofs: dict, draws: int = 1000) -> str:
    """The simplest kind within one *paired* standard error of the best: the spread of the
    difference between its pooled balanced accuracy and the best's over the same bootstrap
    draws of topics (class-stratified, as the interval's), instead of the best's own spread.
    Two kinds scored on the same topics share most of their noise; only the difference's noise
    says whether they are tied. Measured here, not used by the gate."""
    from fnd_core.pipeline.evaluation import _scored_only, bootstrap_balanced_accuracy

    y, groups, oof_of, scored_plan = part.y, part.stories, dict(oofs), plan
    if plan.scored is not None:  # posts always trained on are not scored
        for kind in oofs:
            y, oof_of[kind], scored_plan, groups = _scored_only(
                part.y, oofs[kind], plan, part.stories
            )
    units = scored_plan.units if scored_plan.units is not None else groups

    def ba_draws(kind: str) -> np.ndarray:  # the same resamples for every kind: paired
        found = bootstrap_balanced_accuracy(y, oof_of[kind], units, 0.5, draws=draws)
        assert found is not None, "both classes are scored"
        return found

    estimates = {kind: cvs[kind].estimate for kind in cvs}
    best = max(estimates, key=lambda k: (estimates[k], -candidates.SIMPLEST_FIRST.index(k)))
    best_draws = ba_draws(best)
    for kind in candidates.SIMPLEST_FIRST:
        if kind in estimates:
            se = float(np.std(ba_draws(kind) - best_draws))
            if estimates[kind] >= estimates[best] - se:
                return kind
    return best


def load(data_dir: Path, settings: Settings, kinds: str | None) -> Bench:
    posts = holdout.read_labelled(str(data_dir), settings, holdout_field="event")
    config = ModelConfig.for_preset(
        settings.model_preset, image_size=settings.image_size, max_tokens=settings.max_tokens
    )
    options = train_options(settings)  # FND_TOPIC_OBJECTIVE included
    base, features = candidates.frozen_features(posts.examples, config, options)
    data = holdout._fold_data(posts.examples, features, base, config)
    recipe = Recipe(epochs=settings.train_epochs, options=options, seed=0)
    return Bench(
        posts.examples, np.array(posts.holdout_values, dtype=object), data,
        data.available(kinds or settings.candidate_kinds), settings, recipe,
    )  # fmt: skip


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    pred = metrics.predict_labels(p, 0.5)
    recall = metrics.per_class_recall(y, pred)
    both = len(np.unique(y)) == 2
    return {
        "ba": metrics.balanced_accuracy(y, pred) if both else None,
        "real": recall["real"],
        "fake": recall["fake"],
    }


def story_se(y: np.ndarray, p: np.ndarray, stories: np.ndarray, draws: int = 500) -> float:
    """Standard error of held-out balanced accuracy (by post) from a bootstrap over stories."""
    rng = np.random.default_rng(0)
    ids, of = np.unique(stories, return_inverse=True)
    right = metrics.predict_labels(p, 0.5) == y
    values = []
    for _ in range(draws):
        counts = np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids))
        w = counts[of].astype(float)
        recalls = [
            (w * right)[y == c].sum() / w[y == c].sum() for c in (0, 1) if w[y == c].sum() > 0
        ]
        if len(recalls) == 2:
            values.append(np.mean(recalls))
    return float(np.std(values))


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def loeo(bench: Bench) -> None:
    names = sorted(set(bench.events))
    pooled: dict[str, list[np.ndarray]] = {}
    rows_all = []
    for name in names:
        test = np.flatnonzero(bench.events == name)
        train = np.setdiff1d(np.arange(len(bench.events)), test)
        part, plan = bench.split(train, strip=False, repeats=1)
        for kind, p in bench.fit_and_score(part, plan, test).items():
            pooled.setdefault(kind, []).append(p)
        rows_all.append(test)
    y = bench.data.y[np.concatenate(rows_all)]
    print("\n## Leave one event out, pooled over all 13 events (counted by post)\n")
    rows = []
    for kind, parts in pooled.items():
        s = scores(y, np.concatenate(parts))
        rows.append([kind, fmt(s["real"]), fmt(s["fake"]), fmt(s["ba"])])
    print(table(rows, ("kind", "real recall", "fake recall", "balanced accuracy")))


def named_test(bench: Bench, name: str, seed: int) -> np.ndarray:
    """The held-out rows of named hold-out ``name`` (H3: with ``SANDY_DRAW`` sandy posts drawn
    with ``seed``); every benchmark on the named hold-outs holds out these."""
    test = np.flatnonzero(np.isin(bench.events, NAMED[name]))
    if name == "H3":
        sandy = [i for i, e in enumerate(bench.events) if e == "sandy"]
        test = np.union1d(test, sorted(random.Random(seed).sample(sandy, SANDY_DRAW)))
    return test


def named(bench: Bench, seed: int, repeats: int, which: list[str], strips: list[bool]) -> None:
    for name in NAMED:
        if name not in which:
            continue
        test = named_test(bench, name, seed)
        train = np.setdiff1d(np.arange(len(bench.events)), test)
        y = bench.data.y[test]
        for strip in strips:
            started = time.perf_counter()
            part, plan = bench.split(train, strip=strip, repeats=repeats)
            p = bench.fit_and_score(part, plan, test)
            est, nested, chosen = bench.estimates(part, plan, nested=True)
            label = f"{name} ({'event stripped: topics discovered' if strip else 'event given'})"
            topics = next(iter(est.values()))["topic_plan"]
            print(f"\n### {label}: {len(test)} held-out posts ({int(y.sum())} fake), "
                  f"{topics['n_topics']} training topics, {topics['n_units']} fold units, "
                  f"{time.perf_counter() - started:.0f} s\n")  # fmt: skip
            rows = []
            for kind in [*bench.kinds, "prior"]:
                s = scores(y, p[kind])
                summary = est.get(kind)
                gap = bound = None
                if summary and s["ba"] is not None:
                    gap = summary["estimate"] - s["ba"]
                    bound = max(0.05, 2 * story_se(y, p[kind], bench.data.stories[test]))
                interval = summary and "[{:.3f}, {:.3f}]".format(*summary["interval"])
                rows.append([
                    kind + (" **(ships)**" if kind == chosen else ""), fmt(s["real"]),
                    fmt(s["fake"]), fmt(s["ba"]), fmt(summary and summary["estimate"]),
                    fmt(summary and _other(summary, "stories")),
                    fmt(summary and _other(summary, "topics")),
                    interval or "–", "–" if gap is None else f"{gap:+.3f}",
                    "–" if bound is None else ("yes" if abs(gap) <= bound else "no")
                    + f" ({bound:.3f})",
                ])  # fmt: skip
            print(table(rows, ("kind", "real recall", "fake recall", "balanced accuracy",
                               "estimate", "by story", "by topic", "90 % interval", "gap",
                               "within bound")))  # fmt: skip
            print(_nested_line(nested, scores(y, p[chosen])["ba"]))
            print(f"one paired standard error would ship {bench.paired}: held out "
                  f"{fmt(scores(y, p[bench.paired])['ba'])}")  # fmt: skip


def _nested_line(nested: dict | None, held_out: float | None) -> str:
    """The choice's nested estimate beside what the shipped kind got on the held-out events."""
    if nested is None:
        return "\nthe choice, nested: no figure (an outer fold left too few topics)"
    low, high = nested["interval"]
    gap = "–" if held_out is None else f"{nested['estimate'] - held_out:+.3f}"
    return (
        f"\nthe choice, nested: {nested['estimate']:.3f} [{low:.3f}, {high:.3f}] against "
        f"{nested['naive']:.3f} naive (optimism {nested['optimism']:+.3f}); chosen per outer "
        f"fold: {', '.join(nested['chosen'])}; gap to the shipped kind's held-out figure {gap}; "
        f"{nested['seconds']:.0f} s"
    )


def _other(summary: dict, unit: str) -> float | None:
    """The estimate counted by ``unit`` (the recorded one when it is the gate's counting)."""
    if summary["counted_by"] == unit:
        return summary["estimate"]
    return (summary.get(unit) or {}).get("estimates", {}).get("balanced_accuracy")


def random_holdouts(bench: Bench, n: int, seed: int, repeats: int) -> None:
    rng = random.Random(seed)
    names = sorted(set(bench.events))
    seen, splits = set(), []
    while len(splits) < n:
        pick = tuple(sorted(rng.sample(names, rng.randint(2, 4))))
        test = np.flatnonzero(np.isin(bench.events, pick))
        train_y = np.delete(bench.data.y, test)
        if pick in seen or len(set(bench.data.y[test])) < 2 or len(set(train_y)) < 2:
            continue
        seen.add(pick)
        splits.append((pick, test))
    print(f"\n## {n} random hold-outs of 2-4 events (event stripped; {repeats} fold draw(s))\n")
    rows, gaps, inside = [], [], 0
    by_counting: dict[str, list[float]] = {}
    by_rule: dict[str, list[tuple[float, float, bool]]] = {}
    for pick, test in splits:
        train = np.setdiff1d(np.arange(len(bench.events)), test)
        part, plan = bench.split(train, strip=True, repeats=repeats)
        est, nested, chosen = bench.estimates(part, plan, nested=True)
        everything = bench.fit_and_score(part, plan, test)
        p = everything[chosen]
        s = scores(bench.data.y[test], p)
        if nested is not None:  # the figure the gate reads
            n_low, n_high = nested["interval"]
            by_rule.setdefault("nested (the gate reads)", []).append(
                (abs(nested["estimate"] - s["ba"]), s["ba"], n_low <= s["ba"] <= n_high)
            )
        best = max(est, key=lambda k: est[k]["estimate"])  # the other rule: the best estimate
        b = scores(bench.data.y[test], everything[best])
        paired = bench.paired
        q = scores(bench.data.y[test], everything[paired])
        by_rule.setdefault("selection by one paired standard error", []).append(
            (
                abs(est[paired]["estimate"] - q["ba"]),
                q["ba"],
                est[paired]["interval"][0] <= q["ba"] <= est[paired]["interval"][1],
            )
        )
        by_rule.setdefault("selection by best estimate", []).append(
            (
                abs(est[best]["estimate"] - b["ba"]),
                b["ba"],
                est[best]["interval"][0] <= b["ba"] <= est[best]["interval"][1],
            )
        )
        by_rule.setdefault("selection by one standard error", []).append(
            (
                abs(est[chosen]["estimate"] - s["ba"]),
                s["ba"],
                est[chosen]["interval"][0] <= s["ba"] <= est[chosen]["interval"][1],
            )
        )
        low, high = est[chosen]["interval"]
        gap = est[chosen]["estimate"] - s["ba"]
        gaps.append(abs(gap))
        for unit in ("posts", "stories", "topics"):
            figure = (
                est[chosen]["estimate"]
                if est[chosen]["counted_by"] == unit
                else (est[chosen][unit]["estimates"]["balanced_accuracy"])
            )
            by_counting.setdefault(unit, []).append(abs(figure - s["ba"]))
        inside += low <= s["ba"] <= high
        rows.append([
            "+".join(pick), len(test), chosen, fmt(s["real"]), fmt(s["fake"]), fmt(s["ba"]),
            fmt(est[chosen]["estimate"]), f"[{low:.3f}, {high:.3f}]", f"{gap:+.3f}",
            f"{best} {fmt(b['ba'])}", f"{paired} {fmt(q['ba'])}",
            "–" if nested is None else f"{fmt(nested['estimate'])} [{n_low:.3f}, {n_high:.3f}]",
        ])  # fmt: skip
        print(f"  {rows[-1]}", flush=True)
    print(table(rows, ("held out", "posts", "ships", "real recall", "fake recall",
                       "balanced accuracy", "estimate", "90 % interval", "gap",
                       "best estimate's kind: held out", "paired 1-SE kind: held out",
                       "nested [90 %]")))  # fmt: skip
    print(f"\nmean |estimate - held-out| {np.mean(gaps):.3f}; largest {np.max(gaps):.3f}; "
          f"held-out inside the interval in {inside} of {n}")  # fmt: skip
    print("mean |gap| by the estimate's counting: " + ", ".join(
        f"{unit} {np.mean(v):.3f}" for unit, v in by_counting.items()))  # fmt: skip
    for rule, outcomes in by_rule.items():
        gaps_, held, inside_ = zip(*outcomes, strict=True)
        print(
            f"{rule}: mean |gap| {np.mean(gaps_):.3f}, held-out balanced accuracy "
            f"mean {np.mean(held):.3f}, inside the interval {sum(inside_)} of {len(outcomes)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--kinds", default=None, help="default: FND_CANDIDATE_KINDS")
    parser.add_argument("--random", type=int, default=20)
    parser.add_argument("--random-repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--home", type=Path, default=None, help="reuse a feature cache")
    parser.add_argument("--skip", default="", help="comma-separated: loeo,named,random")
    parser.add_argument(
        "--topic-objective", default="none", help="none | balanced | worst | adversarial"
    )
    parser.add_argument("--named", default="H1,H2,H3", help="which named hold-outs")
    parser.add_argument("--event", default="given,stripped", help="named: given, stripped")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    with bench_home() as scratch:
        settings = dataclasses.replace(  # FND_* from the environment (FND_CV_REPEATS, ...)
            Settings.from_env(), home=args.home or scratch, topic_objective=args.topic_objective
        )
        bench = load(args.data, settings, args.kinds)
        print(f"# {machine()}; {len(bench.examples):,} posts; kinds {', '.join(bench.kinds)}; "
              f"seed {args.seed}; topic objective {args.topic_objective}")  # fmt: skip
        if "loeo" not in skip:
            loeo(bench)
        if "named" not in skip:
            strips = [{"given": False, "stripped": True}[e] for e in args.event.split(",")]
            named(bench, args.seed, settings.cv_repeats, args.named.split(","), strips)
        if "random" not in skip:
            random_holdouts(bench, args.random, args.seed, args.random_repeats)


if __name__ == "__main__":
    main()
