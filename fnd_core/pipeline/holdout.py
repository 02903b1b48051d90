"""``fnd evaluate``: how the training recipe does on groups of posts it has never seen.

Reads a labelled landing folder (or file) the way ingest does — same readers, same row and
image checks, images copied into a scratch content-addressed store — without touching the
database. Then, for each held-out group (an event, a story, a source: any landing column),
trains every candidate kind of the gate (:mod:`fnd_core.pipeline.candidates`) and the prior on
every other post and scores the held-out posts:

- ``--holdout-groups event``: leave-one-group-out over every value of ``event``;
- ``--holdout-groups event --holdout-values a,b``: one split, ``a`` and ``b`` held out; the
  gate's cross-validated estimate on the rest is printed beside what the held-out posts got
  (does the gate's number predict new events?);
- ``--time-holdout 0.2``: the newest 20 % of posts (``created_utc``) held out;
- ``--strip-topics``: the ``topic`` / ``event`` fields are not given to training (the gate then
  discovers topics), as when landing rows carry none.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fnd_core.model import metrics
from fnd_core.model.examples import PostExample
from fnd_core.settings import Settings

if TYPE_CHECKING:
    from fnd_core.model.config import ModelConfig
    from fnd_core.model.features.encoding import EncodedFeatures
    from fnd_core.model.network import FakeNewsModel
    from fnd_core.pipeline.candidates import FoldData
    from fnd_core.pipeline.evaluation import CVPlan, CVSummary, Recipe

log = logging.getLogger(__name__)


@dataclass
class LabelledPosts:
    """The labelled posts of a folder, with the value of the holdout column of each."""

    examples: list[PostExample]
    holdout_values: list[str | None]
    created: list[float | None]
    n_rejected: int = 0
    rejected_rules: dict[str, int] = field(default_factory=dict)


def read_labelled(path: str, settings: Settings, *, holdout_field: str | None) -> LabelledPosts:
    """Labelled posts of every landing file at ``path``, checked as ingest checks them."""
    from fnd_core.ingest.images import ImageStore
    from fnd_core.ingest.load import list_new_files
    from fnd_core.ingest.readers import FORMATS_BY_SUFFIX, read_landing_file
    from fnd_core.ingest.rows import check_file

    store = ImageStore(str(settings.home / "evaluate_store"), gcs_endpoint=settings.gcs_endpoint)
    out = LabelledPosts([], [], [])
    for uri in list_new_files(path, settings):
        if not uri.lower().endswith(tuple(FORMATS_BY_SUFFIX)) or not _regular(uri):
            log.info("not a regular landing file, skipped: %s", uri)
            continue
        checked = check_file(
            read_landing_file(uri, gcs_endpoint=settings.gcs_endpoint),
            store,
            max_text_chars=settings.max_text_chars,
            max_image_pixels=settings.max_image_pixels,
            max_image_bytes=settings.max_image_bytes,
            gcs_endpoint=settings.gcs_endpoint,
        )
        out.n_rejected += len(checked.rejected)
        for row in checked.rejected:
            out.rejected_rules[row.rule] = out.rejected_rules.get(row.rule, 0) + 1
        for post in checked.accepted:
            if post.label is None:
                continue
            group = post.extra.get("group")
            topic = post.extra.get("topic", post.extra.get("event"))
            out.examples.append(
                PostExample(
                    post.post_id,
                    post.text,
                    post.image_uri,
                    post.image_sha256,
                    post.label,
                    group=None if group is None else str(group),
                    topic=None if topic is None else str(topic),
                    created_at=post.created_at.timestamp() if post.created_at else None,
                )
            )
            value = post.extra.get(holdout_field) if holdout_field else None
            out.holdout_values.append(None if value is None else str(value))
            out.created.append(post.created_at.timestamp() if post.created_at else None)
    if not out.examples:
        raise ValueError(f"no labelled posts at {path}: fnd evaluate needs labels to compare")
    return out


def _regular(uri: str) -> bool:
    """Ingest sets links, FIFOs and devices aside; evaluation reads none of them either."""
    from fnd_core.io import localfs, storage

    return not storage.is_local(uri) or localfs.entry_kind(storage.local_path(uri)) == "file"


@dataclass(frozen=True)
class HeldOut:
    """One held-out part: which posts, and the P(fake) each model gave them."""

    name: str
    rows: np.ndarray
    p: dict[str, np.ndarray]  # kind (or "chosen", "prior") -> P(fake) of ``rows``
    estimates: dict[str, CVSummary] | None = None  # kind -> the gate's CV summary
    chosen: str | None = None  # the kind the gate would ship, chosen on the training part


def evaluate_holdouts(
    posts: LabelledPosts,
    settings: Settings,
    parts: Sequence[tuple[str, np.ndarray]],
    *,
    preset: str | None = None,
    epochs: int,
    with_estimate: bool = False,
    strip_topics: bool = False,
    seed: int = 0,
) -> list[HeldOut]:
    """For each (name, held-out rows): train every kind on the rest, score the held-out posts.

    ``with_estimate``: also run the gate's topic-disjoint cross-validation on the rest and
    score the held-out posts with the kind it would ship (``chosen``).
    """
    import dataclasses

    from fnd_core.model.config import ModelConfig
    from fnd_core.pipeline import candidates
    from fnd_core.pipeline.candidate_training import train_options
    from fnd_core.pipeline.evaluation import Recipe

    examples = posts.examples
    if strip_topics:
        examples = [dataclasses.replace(e, topic=None) for e in examples]
    config = ModelConfig.for_preset(
        preset or settings.model_preset, image_size=settings.image_size,
        max_tokens=settings.max_tokens,
    )  # fmt: skip
    recipe = Recipe(epochs=epochs, options=train_options(settings), seed=seed)
    base, features = candidates.frozen_features(examples, config, recipe.options)
    data = _fold_data(examples, features, base, config)
    kinds = data.available(settings.candidate_kinds)
    results = []
    for name, test in parts:
        train = np.setdiff1d(np.arange(len(data.y)), test)
        if len(np.unique(data.y[train])) < 2:
            log.warning("holdout %s: the other posts hold one class only; skipped", name)
            continue
        part, plan = training_part([examples[i] for i in train], data.subset(train), settings)
        everyone = np.arange(len(train))
        p = {}
        for kind in kinds:
            model = candidates.fit(kind, part, everyone, recipe, n_folds=plan.n_folds, seed=seed)
            p[kind] = candidates.proba(model, data, test)
        p["prior"] = np.full(len(test), float(data.y[train].mean() >= 0.5))
        estimates = chosen = None
        if with_estimate:
            estimates = gate_estimates(part, plan, kinds, recipe, settings.gate_metric)
            chosen = candidates.choose(estimates)["winner"]
            p["chosen"] = p[chosen]
        results.append(HeldOut(name, test, p, estimates, chosen))
        log.info("holdout %s: %d posts scored", name, len(test))
    return results


def training_part(
    examples: list[PostExample], data: FoldData, settings: Settings
) -> tuple[FoldData, CVPlan]:
    """The training part's fold data with its topics, and its topic-disjoint folds."""
    import dataclasses

    from fnd_core.pipeline.candidates import topic_plan

    plan = topic_plan(examples, data, settings, 0)
    return dataclasses.replace(data, topics=plan.topic_of), plan


def _fold_data(
    examples: Sequence[PostExample],
    features: EncodedFeatures,
    base: FakeNewsModel,
    config: ModelConfig,
) -> FoldData:
    from fnd_core.model.splits.grouping import leak_groups
    from fnd_core.pipeline import candidates, evaluation

    return candidates.FoldData(
        evaluation.labels_of(examples), leak_groups(examples), [e.text for e in examples],
        features, base, config,
    )  # fmt: skip


def gate_estimates(
    data: FoldData, plan: CVPlan, kinds: Sequence[str], recipe: Recipe, metric: str
) -> dict[str, CVSummary]:
    """What the gate would have recorded had the snapshot been the training part only."""
    from fnd_core.pipeline import candidates

    return {
        kind: candidates.cross_validate(kind, data, plan, recipe, metric=metric)[0]
        for kind in kinds
    }


def leave_one_out_parts(values: Sequence[str | None]) -> list[tuple[str, np.ndarray]]:
    """One part per distinct value (posts without a value are always trained on)."""
    arr = np.array([v if v is not None else "" for v in values], dtype=object)
    names = sorted({v for v in values if v is not None})
    return [(name, np.flatnonzero(arr == name)) for name in names]


def chosen_part(
    values: Sequence[str | None], chosen: Sequence[str]
) -> list[tuple[str, np.ndarray]]:
    """One part: every post whose value is among ``chosen``."""
    missing = sorted(set(chosen) - set(values))
    if missing:
        raise ValueError(f"no labelled post has these holdout values: {', '.join(missing)}")
    rows = np.flatnonzero([v in set(chosen) for v in values])
    return [("+".join(chosen), rows)]


def newest_part(created: Sequence[float | None], share: float) -> list[tuple[str, np.ndarray]]:
    """One part: the newest ``share`` of the posts that have a timestamp."""
    if not 0 < share < 1:
        raise ValueError(f"--time-holdout must be within (0, 1), got {share}")
    dated = [(t, i) for i, t in enumerate(created) if t is not None]
    if not dated:
        raise ValueError("no post has created_utc: a time-ordered holdout needs timestamps")
    dated.sort()
    n = max(1, round(len(dated) * share))
    return [(f"newest {share:.0%}", np.array(sorted(i for _, i in dated[-n:])))]


def report_lines(posts: LabelledPosts, results: list[HeldOut]) -> list[str]:
    """The table ``fnd evaluate`` prints (Markdown, so it pastes into the README)."""
    from fnd_core.pipeline.evaluation import labels_of

    y = labels_of(posts.examples)
    models = [m for m in results[0].p if m != "prior"] + ["prior"] if results else []
    lines = [
        "| held out | posts | fake share | " + " | ".join(models) + " |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in models) + " |",
    ]
    for r in results:
        yt = y[r.rows]
        cells = [_score(yt, r.p[m]) for m in models]
        lines.append(f"| {r.name} | {len(yt)} | {yt.mean():.2f} | " + " | ".join(cells) + " |")
    if len(results) > 1:
        rows = np.concatenate([r.rows for r in results])
        pooled = {m: np.concatenate([r.p[m] for r in results]) for m in models}
        cells = [_score(y[rows], pooled[m]) for m in models]
        lines.append(
            f"| **all held-out posts** | {len(rows)} | {y[rows].mean():.2f} | "
            + " | ".join(f"**{c}**" for c in cells)
            + " |"
        )
    for r in results:
        if r.estimates:
            lines += ["", *_estimate_lines(r, y)]
    lines.append("")
    lines.append(
        "cells: balanced accuracy counted by post where the held-out posts hold both classes, "
        "else accuracy (the recall of their one class) in italics"
    )
    return lines


def _estimate_lines(r: HeldOut, y: np.ndarray) -> list[str]:
    """Each kind's recorded estimate (topic folds on the other posts) beside its held-out."""

    out = [f"gate estimates from the other posts (topic-disjoint CV) for {r.name}:"]
    for kind, summary in (r.estimates or {}).items():
        held = _score(y[r.rows], r.p[kind])
        mark = " ← the gate would ship this" if kind == r.chosen else ""
        out.append(f"- {kind}: estimate {summary.brief()}; held out {held}{mark}")
    return out


def _score(y: np.ndarray, p: np.ndarray) -> str:
    pred = metrics.predict_labels(p, 0.5)
    if len(np.unique(y)) == 2:
        return f"{metrics.balanced_accuracy(y, pred):.3f}"
    return f"*{metrics.accuracy(y, pred):.3f}*"
