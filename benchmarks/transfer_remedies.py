"""Does anything beside today's linear kind carry veracity to new events? Real tweets decide.

Usage::

    python -m benchmarks.transfer_remedies [--data ../shared/data/mediaeval-dev]
        [--splits EG,E,H1,H2,H3] [--seed 7] [--home DIR]

On the MediaEval dev tweets, event field stripped (topics discovered, the path of posts from a
source without one), each remedy is fitted on a split's training part and scored on its
held-out events; beside that, its topic-disjoint estimate on the training part (the gate's
folds, ``FND_CV_REPEATS`` draws) — the only figure a remedy may be chosen on. Remedies
(measured here, none shipped):

- ``linear``: today's kind (caption + picture, unit-length frozen features, class- and
  story-balanced logistic regression, C = 1);
- ``linear C=…``: the same with weaker or stronger L2 regularisation;
- ``picture-only linear``: the picture's features alone;
- ``style cues``: 19 event-free statistics of the text (length, ``?``/``!``, hashtags,
  mentions, links, casing, digits, emoji, pronouns, "fake/hoax" words), a balanced logistic
  regression; ``linear + style ¼``: their probabilities averaged 3:1;
- ``mean of …``: the candidate kinds' probabilities averaged;
- ``topic directions removed (r)``: the top ``r`` directions of the training topics' mean
  features projected out of both modalities before ``linear`` (a one-shot nullspace
  projection: what tells events apart cannot be read), fitted inside each fold.

Splits: ``EG`` holds out `eclipse` + `garissa` and ``E`` `eclipse` alone, `sandy` capped at
3,000 posts (``--seed``) in training — mostly-real new events, the shape of the checks on
unseen events; H1-H3 are :mod:`benchmarks.topic_holdouts`' named hold-outs. Printed as
Markdown, counted by post, with `eclipse`'s real recall (the real posts of a new event told in
many pictures) and the remedy the estimate would choose.

``--supply 1000,3000,6000 --draws 1,2,3,7`` instead measures today's ``linear`` on ``E`` and
``EG`` as `sandy`'s share of training grows: each cap, each seeded draw of its posts.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.common import bench_home, machine, table
from benchmarks.topic_holdouts import DATA, Bench, fmt, load, named_test, scores
from fnd_core.model.splits.grouping import group_weights
from fnd_core.pipeline import candidates
from fnd_core.pipeline.evaluation import DEFAULT_THRESHOLD, summarise
from fnd_core.settings import Settings

KINDS = "linear,text_linear,char_ngram"
SANDY_CAP = 3000
EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")
# fit(rows) on the training part's row indices (into the whole bench) -> predict(rows)
Remedy = Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]]


def style_cues(text: str) -> list[float]:
    """Statistics of a post's text that name no event: what is left when topic is not."""
    letters = sum(c.isalpha() for c in text) or 1
    size = max(1, len(text))
    words, low = text.split(), text.lower()
    return [
        float(np.log1p(len(text))), len(words), text.count("?"), text.count("!"),
        int(any(s in text for s in ("??", "!!", "?!"))), text.count("#"), text.count("@"),
        low.count("http"), int(text.startswith("RT ")),
        sum(c.isupper() for c in text) / letters, sum(c.isdigit() for c in text) / size,
        sum(ord(c) > 127 for c in text) / size, len(EMOJI.findall(text)),
        int('"' in text or "\u201c" in text), len(re.findall(r"\b(i|me|my|we|our|us)\b", low)),
        len(re.findall(r"\b(you|your)\b", low)),
        int(bool(re.search(r"fake|photoshop|hoax|not real|is this real", low))),
        int(bool(re.search(r"breaking|just in|\blive\b", low))),
        sum(w.isupper() and len(w) > 2 for w in words),
    ]  # fmt: skip


class Remedies:
    """Every remedy as ``fit(rows) -> predict(rows)`` over the bench's posts."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.style = np.array([style_cues(t or "") for t in bench.data.texts])
        self.topics: np.ndarray | None = None  # the current training part's, by bench row

    def weights(self, rows: np.ndarray) -> np.ndarray:
        data = self.bench.data
        return group_weights(data.stories[rows], data.y[rows], balance_classes=True)

    def kind(self, kind: str) -> Remedy:
        def fit(rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            data = self.bench.data
            model = candidates.fit(kind, data, rows, self.bench.recipe, n_folds=5, seed=0)
            return lambda test: candidates.proba(model, data, test)

        return fit

    def linear(self, *, c: float = 1.0, modalities: str = "both", drop: int = 0) -> Remedy:
        from fnd_core.model.features.inference import head_proba
        from fnd_core.model.train.heads import fit_linear_head

        data = self.bench.data
        config = data.config.replace(head="linear", fusion="concat", modalities=modalities)

        def fit(rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            features = data.features
            if drop:
                assert self.topics is not None
                features = without_topic_directions(features, rows, self.topics[rows], drop)
            model = candidates.fresh_head(data.base, config, 0)
            fit_linear_head(model, features.subset(rows), data.y[rows], self.weights(rows), c=c)
            model.eval()
            return lambda test: head_proba(model, features.subset(test))

        return fit

    def style_cues(self, rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scale = StandardScaler().fit(self.style[rows])
        model = LogisticRegression(max_iter=2000)
        model.fit(scale.transform(self.style[rows]), self.bench.data.y[rows], self.weights(rows))
        return lambda test: model.predict_proba(scale.transform(self.style[test]))[:, 1]

    def all(self) -> dict[str, Remedy]:
        def mean(*remedies: Remedy, weights: tuple[float, ...] | None = None) -> Remedy:
            def fit(rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
                fitted = [r(rows) for r in remedies]
                return lambda test: np.average([f(test) for f in fitted], axis=0, weights=weights)

            return fit

        lin, text, char = self.kind("linear"), self.kind("text_linear"), self.kind("char_ngram")
        return {
            "linear (today)": lin,
            "linear C=0.1": self.linear(c=0.1),
            "linear C=10": self.linear(c=10.0),
            "picture-only linear": self.linear(modalities="image"),
            "style cues": self.style_cues,
            "linear + style 1/4": mean(lin, self.style_cues, weights=(3, 1)),
            "mean of linear, char_ngram": mean(lin, char),
            "mean of linear, text_linear": mean(lin, text),
            "mean of the three": mean(lin, text, char),
            "topic directions removed (2)": self.linear(drop=2),
            "topic directions removed (10)": self.linear(drop=10),
        }


def without_topic_directions(features, rows: np.ndarray, topics: np.ndarray, r: int):
    """``features`` with the top ``r`` directions of ``rows``' topic means projected out of
    each modality (fitted on ``rows`` only, applied to every post)."""
    import torch

    out = {}
    for modality in ("image", "text"):
        x = getattr(features, modality).numpy().astype(np.float64)
        part = x[rows]
        ids = np.unique(topics)
        means = np.stack([part[topics == t].mean(0) for t in ids]) - part.mean(0)
        u = np.linalg.svd(means.T, full_matrices=False)[0][:, : min(r, len(ids) - 1)]
        out[modality] = torch.as_tensor((x - (x @ u) @ u.T).astype(np.float32))
    return dataclasses.replace(features, **out)


def splits(
    bench: Bench, seed: int, which: list[str], cap: int = SANDY_CAP
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(training rows, held-out rows) of each named split; ``cap``: sandy's posts in E, EG."""
    events, everyone = bench.events, np.arange(len(bench.events))
    sandy = np.flatnonzero(events == "sandy")
    found = {}
    for name in which:
        if name in ("EG", "E"):
            held = ["eclipse", "garissa"] if name == "EG" else ["eclipse"]
            test = np.flatnonzero(np.isin(events, held))
            kept = np.array(sorted(random.Random(seed).sample(list(sandy), cap)))
            rest = np.flatnonzero(~np.isin(events, [*held, "sandy"]))
            found[name] = (np.union1d(rest, kept), test)
            continue
        test = named_test(bench, name, seed)
        found[name] = (np.setdiff1d(everyone, test), test)
    return found


def measure(bench: Bench, name: str, train: np.ndarray, test: np.ndarray) -> None:
    started = time.perf_counter()
    part, plan = bench.split(train, strip=True, repeats=bench.settings.cv_repeats)
    remedies = Remedies(bench)
    remedies.topics = np.zeros(len(bench.events), dtype=object)
    remedies.topics[train] = part.topics
    y, held = bench.data.y[test], bench.events[test]
    rows, chosen = [], ("", -1.0, None)
    for label, remedy in remedies.all().items():
        oof = [np.zeros(len(train)) for _ in plan.repeats]
        for r, folds in enumerate(plan.repeats):
            for fold in folds:
                kept = np.setdiff1d(np.arange(len(train)), fold)
                if len(np.unique(part.y[kept])) < 2:  # as the gate: the one class seen
                    oof[r][fold] = float(part.y[kept].mean() >= 0.5)
                    continue
                oof[r][fold] = remedy(train[kept])(train[fold])
        est = summarise(part.y, oof, plan, "balanced_accuracy", DEFAULT_THRESHOLD, part.stories)
        p = remedy(train)(test)
        s = scores(y, p)
        eclipse = held == "eclipse"
        real_eclipse = scores(y[eclipse], p[eclipse])["real"] if eclipse.any() else None
        rows.append([
            label, fmt(s["ba"]), fmt(s["real"]), fmt(s["fake"]), fmt(real_eclipse),
            f"{est.estimate:.3f} [{est.interval[0]:.3f}, {est.interval[1]:.3f}]",
        ])  # fmt: skip
        if est.estimate > chosen[1]:
            chosen = (label, est.estimate, s["ba"])
    print(f"\n### {name}: {len(test)} held-out posts ({int(y.sum())} fake), "
          f"{len(train)} training posts, {time.perf_counter() - started:.0f} s\n")  # fmt: skip
    print(table(rows, ("remedy", "held-out BA", "real recall", "fake recall",
                       "eclipse real recall", "estimate [90 %]")))  # fmt: skip
    print(f"\nchosen on the estimate: {chosen[0]} ({chosen[1]:.3f}), held out {fmt(chosen[2])}")


def supply(bench: Bench, caps: list[int], draws: list[int]) -> None:
    """``linear`` on E and EG with ``cap`` of `sandy`'s posts in training, per seeded draw."""
    rows = []
    for name in ("E", "EG"):
        for cap in caps:
            for seed in draws if cap < np.sum(bench.events == "sandy") else draws[:1]:
                train, test = splits(bench, seed, [name], cap)[name]
                part, plan = bench.split(train, strip=True, repeats=bench.settings.cv_repeats)
                p = bench.fit_and_score(part, plan, test)["linear"]
                est, _ = candidates.cross_validate(
                    "linear", part, plan, bench.recipe, metric="balanced_accuracy"
                )
                y, eclipse = bench.data.y[test], bench.events[test] == "eclipse"
                s = scores(y, p)
                real_stories = len(np.unique(part.stories[part.y == 0]))
                rows.append([
                    name, cap, seed, real_stories, fmt(s["ba"]),
                    fmt(scores(y[eclipse], p[eclipse])["real"]), fmt(s["fake"]),
                    f"{est.estimate:.3f}", f"{est.estimate - s['ba']:+.3f}",
                ])  # fmt: skip
    print(table(rows, ("held out", "sandy posts", "draw", "real stories in training",
                       "held-out BA", "eclipse real recall", "fake recall", "estimate",
                       "gap")))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--splits", default="EG,E,H1,H2,H3")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--home", type=Path, default=None, help="reuse a feature cache")
    parser.add_argument("--supply", default="", help="sandy caps, e.g. 1000,3000,6000")
    parser.add_argument("--draws", default="1,2,3,7", help="--supply: seeds of sandy's draw")
    args = parser.parse_args()
    with bench_home() as scratch:
        settings = dataclasses.replace(Settings.from_env(), home=args.home or scratch)
        bench = load(args.data, settings, KINDS)
        print(f"# {machine()}; {len(bench.examples):,} posts; event field stripped; "
              f"{settings.cv_repeats} fold draw(s); seed {args.seed}")  # fmt: skip
        if args.supply:
            supply(bench, [int(c) for c in args.supply.split(",")],
                   [int(d) for d in args.draws.split(",")])  # fmt: skip
            return
        for name, (train, test) in splits(bench, args.seed, args.splits.split(",")).items():
            measure(bench, name, train, test)


if __name__ == "__main__":
    main()
