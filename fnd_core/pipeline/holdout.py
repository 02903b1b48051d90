"""``fnd evaluate``: how the training recipe does on groups of posts it has never seen.

Reads a labelled landing folder (or file) the way ingest does — same readers, same row and
image checks, images copied into a scratch content-addressed store — without touching the
database. Then, for each held-out group (an event, a story, a source: any landing column),
trains the recipe on every other post and scores the held-out posts, next to the two
baselines of the gate (prior, text logistic regression) trained on the same posts:

- ``--holdout-groups event``: leave-one-group-out over every value of ``event``;
- ``--holdout-groups event --holdout-values a,b``: one split, ``a`` and ``b`` held out; the
  gate's cross-validated estimate on the rest is printed beside what the held-out posts got
  (does the gate's number predict new events?);
- ``--time-holdout 0.2``: the newest 20 % of posts (``created_utc``) held out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fnd_core.model import metrics
from fnd_core.model.examples import PostExample
from fnd_core.settings import Settings

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
        if not uri.lower().endswith(tuple(FORMATS_BY_SUFFIX)):
            log.info("not a landing file, skipped: %s", uri)
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
            out.examples.append(
                PostExample(
                    post.post_id,
                    post.text,
                    post.image_uri,
                    post.image_sha256,
                    post.label,
                    group=None if group is None else str(group),
                )
            )
            value = post.extra.get(holdout_field) if holdout_field else None
            out.holdout_values.append(None if value is None else str(value))
            out.created.append(post.created_at.timestamp() if post.created_at else None)
    if not out.examples:
        raise ValueError(f"no labelled posts at {path}: fnd evaluate needs labels to compare")
    return out


@dataclass(frozen=True)
class HeldOut:
    """One held-out part: which posts, and the P(fake) each model gave them."""

    name: str
    rows: np.ndarray
    p: dict[str, np.ndarray]  # model name -> P(fake) of ``rows``
    estimate: dict[str, Any] | None = None  # the gate's CV estimate on the training part


def evaluate_holdouts(
    posts: LabelledPosts,
    settings: Settings,
    parts: Sequence[tuple[str, np.ndarray]],
    *,
    preset: str | None = None,
    epochs: int,
    with_estimate: bool = False,
    seed: int = 0,
) -> list[HeldOut]:
    """For each (name, held-out rows): train on the rest, score the held-out posts."""
    from fnd_core.model.config import ModelConfig
    from fnd_core.model.feature_encoding import encode_examples
    from fnd_core.model.features import head_proba
    from fnd_core.model.grouping import leak_groups
    from fnd_core.model.network import build_model
    from fnd_core.model.runtime import resolve_device
    from fnd_core.model.train_options import encode_kwargs
    from fnd_core.pipeline import evaluation
    from fnd_core.pipeline.candidate_training import train_options

    examples = posts.examples
    y = evaluation.labels_of(examples)
    groups = leak_groups(examples)
    config = ModelConfig.for_preset(
        preset or settings.model_preset,
        image_size=settings.image_size,
        max_tokens=settings.max_tokens,
    )
    options = train_options(settings)
    recipe = evaluation.Recipe(epochs=epochs, options=options, seed=seed)
    base = build_model(config).to(resolve_device("auto"))
    base.set_encoders_trainable(False)
    features = encode_examples(
        base, examples, cache_dir=options.cache_dir, **encode_kwargs(options)
    )
    text = features.text.float().numpy()
    results = []
    for name, test in parts:
        train = np.setdiff1d(np.arange(len(y)), test)
        if len(np.unique(y[train])) < 2:
            log.warning("holdout %s: the other posts hold one class only; skipped", name)
            continue
        model = evaluation.fresh_head(base, config, seed)
        evaluation.fit_on(model, features, y, groups, train, recipe, n_folds=settings.cv_folds)
        model.eval()
        p = {
            "fnd": head_proba(model, features.subset(test)),
            "text_lr": evaluation.text_lr_proba(text[train], y[train], groups[train], text[test]),
            "prior": np.full(len(test), float(y[train].mean() >= 0.5)),
        }
        estimate = None
        if with_estimate:
            estimate = _gate_estimate(base, config, features, y, groups, train, recipe, settings)
        results.append(HeldOut(name, test, p, estimate))
        log.info("holdout %s: %d posts scored", name, len(test))
    return results


def _gate_estimate(base, config, features, y, groups, train, recipe, settings) -> dict[str, Any]:
    """What the gate would have recorded had the snapshot been the training part only."""
    from fnd_core.pipeline import evaluation

    _, cv, _, base_cv = evaluation.gate_evidence(
        base, config, features.subset(train), y[train], groups[train], recipe,
        n_folds=settings.cv_folds, repeats=settings.cv_repeats, metric=settings.gate_metric,
    )  # fmt: skip
    return {
        "fnd": cv["estimate"],
        "fnd_fold_std": cv["fold_std"],
        "fnd_by_post": cv["posts"]["estimates"][cv["metric"]],
        **{k: v["estimate"] for k, v in base_cv.items()},
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


MODELS = ("fnd", "text_lr", "prior")


def report_lines(posts: LabelledPosts, results: list[HeldOut]) -> list[str]:
    """The table ``fnd evaluate`` prints (Markdown, so it pastes into the README)."""
    from fnd_core.model.grouping import leak_groups
    from fnd_core.pipeline.evaluation import labels_of

    y = labels_of(posts.examples)
    lines = [
        "| held out | posts | fake share | fnd | text baseline | prior |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        yt = y[r.rows]
        cells = [_score(yt, r.p[m]) for m in MODELS]
        lines.append(f"| {r.name} | {len(yt)} | {yt.mean():.2f} | " + " | ".join(cells) + " |")
    if len(results) > 1:
        rows = np.concatenate([r.rows for r in results])
        pooled = {m: np.concatenate([r.p[m] for r in results]) for m in MODELS}
        cells = [_score(y[rows], pooled[m]) for m in MODELS]
        lines.append(
            f"| **all held-out posts** | {len(rows)} | {y[rows].mean():.2f} | "
            + " | ".join(f"**{c}**" for c in cells)
            + " |"
        )
    for r in results:
        if r.estimate:
            lines += ["", _estimate_line(r, y, leak_groups(posts.examples))]
    lines.append("")
    lines.append(
        "cells: balanced accuracy where the held-out posts hold both classes, else accuracy "
        "(the recall of their one class) in italics"
    )
    return lines


def _estimate_line(r: HeldOut, y: np.ndarray, groups: np.ndarray) -> str:
    """The gate's recorded estimate (each story once) beside what the held-out posts got."""
    from fnd_core.pipeline.evaluation import story_weights

    pred = metrics.predict_labels(r.p["fnd"], 0.5)
    by_post = metrics.balanced_accuracy(y[r.rows], pred)
    by_story = metrics.balanced_accuracy(y[r.rows], pred, story_weights(groups[r.rows]))
    e = r.estimate or {}
    return (
        f"gate estimate from the other posts (grouped CV, each story once): fnd {e['fnd']:.3f} "
        f"± {e['fnd_fold_std']:.3f} (by post {e['fnd_by_post']:.3f}), text baseline "
        f"{e['text_lr']:.3f}; held-out {r.name}: fnd {by_post:.3f} by post, {by_story:.3f} by "
        f"story (gap by post {by_post - e['fnd']:+.3f} to the gate's estimate)"
    )


def _score(y: np.ndarray, p: np.ndarray) -> str:
    pred = metrics.predict_labels(p, 0.5)
    if len(np.unique(y)) == 2:
        return f"{metrics.balanced_accuracy(y, pred):.3f}"
    return f"*{metrics.accuracy(y, pred):.3f}*"
