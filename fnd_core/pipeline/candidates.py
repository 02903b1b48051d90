"""The candidates the gate chooses among, each fitted one way on every fold and at the end.

No single recipe is safe on real tweets: the model that looks best within known events can be
worse than a coin on a new one. So every retraining estimates several kinds of model on the
*same* topic-disjoint folds (:mod:`fnd_core.pipeline.evaluation`) and the best estimate ships:

- ``fusion``: the multimodal head (projections, fusion, MLP) on frozen image + text features —
  the only kind that can learn that a caption contradicts its picture (the demo data);
- ``linear``: a logistic regression on the unit-length image and text features;
- ``text_linear``: the same on the text features alone (the gate's former text baseline);
- ``char_ngram``: a logistic regression on hashed character n-grams of the text (style, not
  topic; :mod:`fnd_core.model.char_ngrams`).

Each is a real model version when it wins: ``fusion`` and the linear kinds are
:class:`~fnd_core.model.network.FakeNewsModel` artifacts, ``char_ngram`` its own small one.
The simplest kind within one standard error of the best estimate wins (:func:`choose`).
``prior`` (the training folds' majority class) is estimated beside them as the floor every kind
must clear.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from fnd_core.model.splits.grouping import early_stopping_split, group_weights

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fnd_core.model.char_ngrams import CharNgramModel
    from fnd_core.model.config import ModelConfig
    from fnd_core.model.examples import PostExample
    from fnd_core.model.features.encoding import EncodedFeatures
    from fnd_core.model.network import FakeNewsModel
    from fnd_core.model.train.recipe import TrainOptions
    from fnd_core.model.train.stacked_heads import HeadJob
    from fnd_core.pipeline.evaluation import CVPlan, CVSummary, Recipe
    from fnd_core.settings import Settings

log = logging.getLogger(__name__)

KINDS = ("fusion", "linear", "text_linear", "char_ngram")
SIMPLEST_FIRST = ("text_linear", "linear", "char_ngram", "fusion")  # fewest inputs, then size
Z_90 = 1.6449  # a 90 % interval spans +-Z_90 standard errors
PRIOR = "prior"


@dataclass(frozen=True)
class FoldData:
    """What every candidate's folds read: labels, stories, texts and cached frozen features."""

    y: np.ndarray
    stories: np.ndarray
    texts: list[str]
    features: EncodedFeatures
    base: FakeNewsModel  # frozen encoders every head shares
    config: ModelConfig  # the fusion candidate's architecture
    topics: np.ndarray | None = None  # topic per post, for topic x class weights

    def subset(self, rows: np.ndarray) -> FoldData:
        """The same data for ``rows`` only (hashed n-grams carried over, not recomputed)."""
        part = FoldData(
            self.y[rows],
            self.stories[rows],
            [self.texts[i] for i in rows],
            self.features.subset(rows),
            self.base,
            self.config,
            None if self.topics is None else self.topics[rows],
        )
        if "ngram_counts" in self.__dict__:
            part.__dict__["ngram_counts"] = self.ngram_counts[rows]
        return part

    @cached_property
    def ngram_counts(self) -> Any:
        from fnd_core.model.char_ngrams import NgramConfig, ngram_counts

        return ngram_counts(self.texts, NgramConfig())

    def available(self, wanted: str | None = None) -> list[str]:
        """The ``wanted`` kinds (comma-separated; all by default) whose inputs the fusion
        config reads: a text-only ablation has no ``linear``, an image-only one no text kinds."""
        kinds = parse_kinds(wanted) if wanted else list(KINDS)
        has_text = self.features.text is not None and self.config.uses_text
        has_image = self.features.image is not None and self.config.uses_image
        usable = {
            "fusion": True,
            "linear": has_text and has_image,
            "text_linear": has_text,
            "char_ngram": self.config.uses_text,
        }
        return [kind for kind in KINDS if kind in kinds and usable[kind]]


def parse_kinds(value: str) -> list[str]:
    """``"fusion,char_ngram"`` -> the kinds; an unknown name is an error that lists them."""
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ValueError(f"FND_CANDIDATE_KINDS must name some of {', '.join(KINDS)}; got {value!r}")
    return kinds


def fresh_head(base: FakeNewsModel, config: ModelConfig, seed: int) -> FakeNewsModel:
    """A new, seeded head sharing ``base``'s frozen encoders (nothing is copied)."""
    import torch

    from fnd_core.model.network import FakeNewsModel

    torch.manual_seed(seed)
    model = FakeNewsModel(
        config,
        image_encoder=base.image_encoder if config.uses_image else None,
        text_encoder=base.text_encoder if config.uses_text else None,
    )
    return model.to(next(base.parameters()).device)


def head_job(
    y: np.ndarray,
    groups: np.ndarray,
    rows: np.ndarray,
    recipe: Recipe,
    *,
    n_folds: int,
    post_weights: np.ndarray | None = None,
) -> HeadJob:
    """How a fusion head is trained on ``rows``: one grouped fold of them early-stops the rest.

    ``post_weights``: a loss weight per post (indexed like ``y``); default: each story once,
    the classes balanced (``recipe.options``), in each part on its own."""
    from fnd_core.model.train.stacked_heads import HeadJob

    val = rows[early_stopping_split(y[rows], groups[rows], n_folds=n_folds, seed=recipe.seed)]
    train = np.setdiff1d(rows, val)

    def weights(idx: np.ndarray) -> np.ndarray:
        if post_weights is not None:
            return np.asarray(post_weights[idx], dtype=np.float32)
        return group_weights(
            groups[idx] if recipe.options.group_weights else None,
            y[idx],
            balance_classes=recipe.options.class_weights,
        ).astype(np.float32)

    return HeadJob(train, val, weights(train), weights(val), recipe.seed)


def fit_on(
    model: FakeNewsModel,
    features: EncodedFeatures,
    y: np.ndarray,
    groups: np.ndarray,
    rows: np.ndarray,
    recipe: Recipe,
    *,
    n_folds: int,
    post_weights: np.ndarray | None = None,
    topics: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Train ``model``'s head on ``rows`` as :func:`head_job` says. ``topics`` (indexed like
    ``y``): for the topic adversary of ``recipe.options.topic_adversary``."""
    import torch

    from fnd_core.model.train.heads import fit_head
    from fnd_core.model.train.stacked_heads import fit_heads, stackable

    job = head_job(y, groups, rows, recipe, n_folds=n_folds, post_weights=post_weights)
    if stackable(recipe.options):
        return fit_heads(
            [model], features, y, [job], epochs=recipe.epochs, options=recipe.options,
            seed=recipe.seed,
        )[0]  # fmt: skip
    from fnd_core.model.train.topic_adversary import topic_ids

    topics_train = None if topics is None else topic_ids(topics[job.train])

    def labels(idx: np.ndarray) -> torch.Tensor:
        return torch.tensor(y[idx], dtype=torch.float32)

    return fit_head(
        model, features.subset(job.train), labels(job.train), features.subset(job.val),
        labels(job.val), epochs=recipe.epochs, options=recipe.options, seed=recipe.seed,
        w_train=torch.as_tensor(job.w_train), w_val=torch.as_tensor(job.w_val),
        topics_train=topics_train,
    )  # fmt: skip


def topic_plan(
    examples: Sequence[PostExample], data: FoldData, settings: Settings, seed: int
) -> CVPlan:
    """Folds of whole topics (the landing field, else discovered;
    :mod:`~fnd_core.model.splits.topics`)."""
    from fnd_core.model.splits.topics import plan_topics
    from fnd_core.pipeline.evaluation import CVPlan

    features = data.features
    topics = plan_topics(
        data.stories,
        data.y,
        [e.topic for e in examples],
        [e.created_at for e in examples],
        None if features.text is None else features.text.float().numpy(),
        None if features.image is None else features.image.float().numpy(),
    )
    log.info("fold units: %s", topics.summary())
    return CVPlan.make(
        data.y, topics.units, n_folds=settings.cv_folds, repeats=settings.cv_repeats,
        seed=seed, topics=topics.summary(), topic_of=topics.topics, train_only=topics.train_only,
    )  # fmt: skip


def frozen_features(
    examples: Sequence[PostExample], config: ModelConfig, options: TrainOptions
) -> tuple[FakeNewsModel, EncodedFeatures]:
    """A fresh model with frozen encoders, and its features of every post (through the
    cache): what every fold's head trains on."""
    from fnd_core.model.features.encoding import encode_examples
    from fnd_core.model.network import build_model
    from fnd_core.model.runtime import resolve_device
    from fnd_core.model.train.recipe import encode_kwargs

    base = build_model(config).to(resolve_device("auto"))
    base.set_encoders_trainable(False)
    features = encode_examples(
        base, examples, cache_dir=options.cache_dir, **encode_kwargs(options)
    )
    return base, features


def kind_config(kind: str, config: ModelConfig) -> ModelConfig:
    """The architecture of ``kind`` on ``config``'s encoders (``char_ngram``: not a network)."""
    if kind == "fusion":
        return config
    if kind == "linear":
        return config.replace(head="linear", fusion="concat", modalities="both")
    if kind == "text_linear":
        return config.replace(head="linear", fusion="concat", modalities="text")
    raise ValueError(f"{kind!r} has no network config; kinds: {', '.join(KINDS)}")


def kind_of(config: dict[str, Any]) -> str:
    """The candidate kind of a registered version's config (older versions: ``fusion``)."""
    if config.get("kind") == "char_ngram":
        return "char_ngram"
    if config.get("head") == "linear":
        return "text_linear" if config.get("modalities") == "text" else "linear"
    return "fusion"


def fit(
    kind: str,
    data: FoldData,
    rows: np.ndarray,
    recipe: Recipe,
    *,
    n_folds: int,
    seed: int,
    history: list[dict[str, Any]] | None = None,
) -> FakeNewsModel | CharNgramModel:
    """``kind`` fitted on ``rows``: the one fitting procedure, which every fold of the gate's
    estimate and the final (shipped) model both call, so the estimate describes what ships.

    Weights, seeding and early stopping are decided here: each story counts once and the
    classes weigh the same (``recipe.options``); the head is seeded by ``seed``; fusion
    early-stops on a grouped fold of ``rows`` drawn with ``recipe.seed``. With
    ``options.worst_topic_rounds`` (and topics known), the fit is repeated with weight moved
    toward the (topic, class) cells it fits worst (:mod:`fnd_core.model.train.worst_topic`).
    ``history``, when given, receives fusion's epoch records (the last fit's)."""
    rounds = recipe.options.worst_topic_rounds
    topics = data.topics
    if not rounds or topics is None:
        # fusion's default: each of its splits (training, early stopping) balanced on its own
        plain = kind == "fusion" and not recipe.options.topic_weights
        weights = None if plain else _weights(data, rows, recipe)
        return _fit_weighted(
            kind, data, rows, recipe, weights, n_folds=n_folds, seed=seed, history=history
        )
    from fnd_core.model.train.worst_topic import fit_worst_topic

    def fit_once(w: np.ndarray) -> FakeNewsModel | CharNgramModel:
        if history is not None:
            history.clear()
        return _fit_weighted(
            kind, data, rows, recipe, w, n_folds=n_folds, seed=seed, history=history
        )

    stories = data.stories[rows] if recipe.options.group_weights else None
    result = fit_worst_topic(
        fit_once,
        lambda model: proba(model, data, rows),
        data.y[rows],
        topics[rows],
        group_weights(stories, data.y[rows], balance_classes=False),
        rounds=rounds,
    )
    log.debug("%s worst-topic weights: largest cell %.3f", kind, float(result.q.max()))
    return result.model


def _fit_weighted(
    kind: str,
    data: FoldData,
    rows: np.ndarray,
    recipe: Recipe,
    weights: np.ndarray | None,
    *,
    n_folds: int,
    seed: int,
    history: list[dict[str, Any]] | None = None,
) -> FakeNewsModel | CharNgramModel:
    """``kind`` fitted on ``rows`` with per-post ``weights`` (aligned with ``rows``; None:
    fusion's own per-split weights)."""
    if kind == "fusion":
        model = fresh_head(data.base, data.config, seed)
        epochs = fit_on(
            model, data.features, data.y, data.stories, rows, recipe,
            n_folds=n_folds, post_weights=_all_posts(data, rows, weights), topics=data.topics,
        )  # fmt: skip
        if history is not None:
            history.extend(epochs)
        return model.eval()
    if kind == "char_ngram":
        from fnd_core.model.char_ngrams import CharNgramModel

        texts = [data.texts[i] for i in rows]
        return CharNgramModel.fit(texts, data.y[rows], weights, counts=data.ngram_counts[rows])
    from fnd_core.model.train.heads import fit_linear_head

    model = fresh_head(data.base, kind_config(kind, data.config), seed)
    return fit_linear_head(model, data.features.subset(rows), data.y[rows], weights).eval()


def _all_posts(data: FoldData, rows: np.ndarray, weights: np.ndarray | None) -> np.ndarray | None:
    """``weights`` of ``rows`` as a weight per post of ``data`` (0 elsewhere)."""
    if weights is None:
        return None
    post_weights = np.zeros(len(data.y))
    post_weights[rows] = weights
    return post_weights


def _weights(data: FoldData, rows: np.ndarray, recipe: Recipe) -> np.ndarray:
    options = recipe.options
    topics = data.topics if options.topic_weights else None
    return group_weights(
        data.stories[rows] if options.group_weights else None,
        data.y[rows],
        balance_classes=options.class_weights,
        topics=None if topics is None else topics[rows],
    )


def proba(model: FakeNewsModel | CharNgramModel, data: FoldData, rows: np.ndarray) -> np.ndarray:
    """P(fake) of ``rows`` under a fitted candidate."""
    from fnd_core.model.char_ngrams import CharNgramModel
    from fnd_core.model.features.inference import head_proba

    if isinstance(model, CharNgramModel):
        texts = [data.texts[i] for i in rows]
        return model.predict_proba(texts, counts=data.ngram_counts[rows])
    return head_proba(model, data.features.subset(rows))


def out_of_fold(kind: str, data: FoldData, plan: CVPlan, recipe: Recipe) -> list[np.ndarray]:
    """Each repeat's out-of-fold P(fake) of ``kind`` (``prior``: the majority class).

    Fusion's heads of every fold and repeat are fitted at once, as one stack
    (:mod:`fnd_core.model.train.stacked_heads`), where the recipe allows."""
    return out_of_fold_parts(kind, data, [(np.arange(len(data.y)), plan)], recipe)[0]


def out_of_fold_parts(
    kind: str, data: FoldData, parts: list[tuple[np.ndarray, CVPlan]], recipe: Recipe
) -> list[list[np.ndarray]]:
    """:func:`out_of_fold` of ``kind`` on each part of ``data``: ``(rows, plan)``, the plan's
    indices counting within ``rows`` (what :func:`out_of_fold` of ``data.subset(rows)`` gives).

    Every fold of every part is fitted on ``data`` itself, its rows mapped, so fusion's heads
    of all the parts are one stack (a nested choice's inner folds of every outer fold)."""
    oofs = [[np.zeros(len(rows)) for _ in plan.repeats] for rows, plan in parts]
    started = time.perf_counter()
    fits: list[tuple[int, int, np.ndarray, np.ndarray, int, int]] = []
    for i, (part_rows, plan) in enumerate(parts):
        y = data.y[part_rows]
        everyone = np.arange(len(part_rows))
        for r, folds in enumerate(plan.repeats):
            for k, test in enumerate(folds):
                rows = np.setdiff1d(everyone, test)
                if kind == PRIOR or len(np.unique(y[rows])) < 2:
                    # one class left to train on (its topics are all held out): nothing can be
                    # learnt about the other, and the honest prediction is the class seen
                    oofs[i][r][test] = float(y[rows].mean() >= 0.5)
                    continue
                seed = recipe.seed + 1000 * r + k
                fits.append((i, r, test, part_rows[rows], seed, plan.n_folds))
    models: Sequence[FakeNewsModel | CharNgramModel]
    if kind == "fusion" and _stacks(data, recipe):
        models = _fit_stacked(data, [(rows, seed, n) for *_, rows, seed, n in fits], recipe)
    else:
        models = [fit(kind, data, rows, recipe, n_folds=n, seed=seed) for *_, rows, seed, n in fits]
    for (i, r, test, *_), model in zip(fits, models, strict=True):
        oofs[i][r][test] = proba(model, data, parts[i][0][test])
    if kind != PRIOR:
        log.info(
            "%s: %d fold fits in %.1f s", kind, len(fits), time.perf_counter() - started
        )  # fmt: skip
    return oofs


def _stacks(data: FoldData, recipe: Recipe) -> bool:
    """Whether fusion's folds can be one stack: no topic adversary, no worst-topic rounds."""
    from fnd_core.model.train.stacked_heads import stackable

    rounds = recipe.options.worst_topic_rounds and data.topics is not None
    return stackable(recipe.options) and not rounds


def _fit_stacked(
    data: FoldData, fits: list[tuple[np.ndarray, int, int]], recipe: Recipe
) -> list[FakeNewsModel]:
    """Fusion fitted on each ``(rows, seed, n_folds)`` as :func:`fit` would, all heads in one
    stack."""
    from fnd_core.model.train.stacked_heads import fit_heads

    if not fits:
        return []
    plain = not recipe.options.topic_weights
    models, jobs = [], []
    for rows, seed, n_folds in fits:
        weights = None if plain else _weights(data, rows, recipe)
        models.append(fresh_head(data.base, data.config, seed))
        jobs.append(head_job(
            data.y, data.stories, rows, recipe, n_folds=n_folds,
            post_weights=_all_posts(data, rows, weights),
        ))  # fmt: skip
    fit_heads(models, data.features, data.y, jobs, epochs=recipe.epochs,
              options=recipe.options, seed=recipe.seed)  # fmt: skip
    return models


def cross_validate(
    kind: str, data: FoldData, plan: CVPlan, recipe: Recipe, *, metric: str
) -> tuple[CVSummary, list[np.ndarray]]:
    """``kind``'s summary on the plan's folds (:func:`evaluation.summarise`) and its
    out-of-fold P(fake) per repeat."""
    return cross_validate_parts(
        kind, data, [(np.arange(len(data.y)), plan)], recipe, metric=metric
    )[0]


def cross_validate_parts(
    kind: str,
    data: FoldData,
    parts: list[tuple[np.ndarray, CVPlan]],
    recipe: Recipe,
    *,
    metric: str,
) -> list[tuple[CVSummary, list[np.ndarray]]]:
    """:func:`cross_validate` of ``kind`` on each part of ``data`` (see
    :func:`out_of_fold_parts`), the parts' fusion heads fitted as one stack."""
    from fnd_core.pipeline.evaluation import DEFAULT_THRESHOLD, summarise

    started = time.perf_counter()
    oofs = out_of_fold_parts(kind, data, parts, recipe)
    seconds = round(time.perf_counter() - started, 1)
    return [
        (
            dataclasses.replace(
                summarise(data.y[rows], oof, plan, metric, DEFAULT_THRESHOLD, data.stories[rows]),
                kind=kind,
                seconds=seconds,
            ),
            oof,
        )  # fmt: skip
        for (rows, plan), oof in zip(parts, oofs, strict=True)
    ]


def choose(summaries: dict[str, CVSummary]) -> dict[str, Any]:
    """The kind that ships: the simplest whose estimate is within one standard error of the
    best (Breiman's one-standard-error rule), simplest first as :data:`SIMPLEST_FIRST` says.

    Estimates of close kinds differ by noise: on the MediaEval dev events fusion's estimate
    matched the linear head's (0.899 vs 0.898) where its held-out figure was 0.12 lower. The
    standard error is the best kind's, read off its 90 % interval. Recorded beside the winner:
    every kind's estimate and interval, the best, the bar, the winner's margin over the best
    other kind and the spread (picking among several makes the winner's figure optimistic by up
    to about that much; :mod:`fnd_core.pipeline.nested_selection` measures by how much).
    """
    kinds = [k for k in KINDS if k in summaries]
    if not kinds:
        raise ValueError("no candidate kind was estimated")
    estimates = {k: summaries[k].estimate for k in kinds}
    best = max(kinds, key=lambda k: (estimates[k], -SIMPLEST_FIRST.index(k)))
    low, high = summaries[best].interval
    se = max(0.0, (high - low) / (2 * Z_90))
    bar = estimates[best] - se
    winner = next(k for k in SIMPLEST_FIRST if k in estimates and estimates[k] >= bar)
    others = [estimates[k] for k in kinds if k != winner]
    return {
        "winner": winner,
        "rule": "simplest kind within one standard error of the best",
        "best": best,
        "standard_error": round(se, 6),
        "bar": round(bar, 6),
        "estimates": estimates,
        "intervals": {k: list(summaries[k].interval) for k in kinds},
        "margin": round(estimates[winner] - max(others), 6) if others else None,
        "spread": round(max(estimates.values()) - min(estimates.values()), 6),
    }
