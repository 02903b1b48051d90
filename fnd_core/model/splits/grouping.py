"""Leak groups and grouped folds: what keeps a test figure honest about *new* posts.

Posts that share a picture (same sha256) or a near-identical text (case, URLs, @mentions, a
leading "RT" and whitespace ignored) are reposts of one story; a landing column ``group`` (an
event or story id) joins them further. Groups are transitive (a union-find): repost A shares
B's picture, B shares C's caption, so A, B and C are one story. A group never straddles train
and test, so a model cannot score well by recognising a picture it trained on.

Groups are formed when a training snapshot is taken, never at ingest: a repost landing next
week joins a group whose first post is old.

Measured on the MediaEval dev tweets (11,576 posts, 275 pictures): joining on every
normalised text, however short, chained 7,389 posts into one group through captions such as
"#sandy"; texts under :data:`MIN_TEXT_CHARS` characters after normalisation say nothing about
a repost and are not joined on (245 groups, the largest 1,280 posts).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

MIN_TEXT_CHARS = 25

_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_MENTION = re.compile(r"@\w+")
_RETWEET = re.compile(r"^(rt\b[\s:]*)+", re.IGNORECASE)


def normalise_text(text: str) -> str:
    """The text as a repost detector sees it: lower case, no URLs, mentions, RT, extra spaces."""
    text = _URL.sub(" ", text.casefold())
    text = _MENTION.sub(" ", text)
    text = " ".join(text.split())
    return _RETWEET.sub("", text).strip(" :")


class Linkable(Protocol):
    """What links one post to others (a :class:`PostKeys` or a model ``PostExample``)."""

    @property
    def image_sha256(self) -> str | None: ...
    @property
    def text(self) -> str: ...
    @property
    def group(self) -> str | None: ...


@dataclass(frozen=True)
class PostKeys:
    """What links one post to others: its picture, its text and an optional source group."""

    image_sha256: str | None
    text: str
    group: str | None = None


def leak_groups(posts: Sequence[Linkable], *, min_text_chars: int = MIN_TEXT_CHARS) -> np.ndarray:
    """A group number per post (0..n_groups-1, in order of first appearance)."""
    parent = list(range(len(posts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_seen: dict[tuple[str, str], int] = {}
    for i, post in enumerate(posts):
        keys = []
        if post.image_sha256:
            keys.append(("image", post.image_sha256))
        text = normalise_text(post.text)
        if len(text) >= min_text_chars:
            keys.append(("text", text))
        if post.group not in (None, ""):
            keys.append(("group", str(post.group)))
        for key in keys:
            if key in first_seen:
                parent[find(i)] = find(first_seen[key])
            else:
                first_seen[key] = i
    roots = [find(i) for i in range(len(posts))]
    numbering: dict[int, int] = {}
    return np.array([numbering.setdefault(r, len(numbering)) for r in roots], dtype=np.int64)


def group_weights(
    groups: np.ndarray | None,
    labels: np.ndarray,
    *,
    balance_classes: bool = True,
    topics: np.ndarray | None = None,
) -> np.ndarray:
    """Per-post training weights: each group counts once, and both classes weigh the same.

    300 reposts of one picture are one story, not 300; then the weights of each class are
    scaled to the same total, so a snapshot that is 67 % fake trains a model for any prior.
    ``groups=None``: every post its own group. Weights average 1 over the posts given.
    ``topics``: topic x class balance as well — every (topic, class) cell weighs the same
    within its class, so one event holding most real stories cannot define "real" alone.
    """
    labels = np.asarray(labels, dtype=int)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    sizes = Counter(groups.tolist())
    weights = np.array([1.0 / sizes[g] for g in groups.tolist()])
    if topics is not None:
        cells = np.asarray(topics).astype(np.int64) * 2 + labels
        totals = np.bincount(np.unique(cells, return_inverse=True)[1], weights=weights)
        weights = weights / totals[np.unique(cells, return_inverse=True)[1]]
    for label in (0, 1) if balance_classes else ():
        mask = labels == label
        if mask.any():
            weights[mask] *= 0.5 / weights[mask].sum()
    return weights * len(weights) / weights.sum()


def grouped_folds(
    labels: Sequence[int] | np.ndarray, groups: np.ndarray, *, n_folds: int, seed: int = 0
) -> list[np.ndarray]:
    """Test indices of ``n_folds`` folds: whole groups, class mix as even as groups allow.

    scikit-learn's StratifiedGroupKFold; fewer groups than folds is an error that says so.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.asarray(labels, dtype=int)
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise ValueError(
            f"{n_folds}-fold grouped cross-validation needs at least {n_folds} leak groups; "
            f"these {len(labels)} labelled posts form only {n_groups} (posts sharing a picture "
            "or a caption are one group): land more varied posts or lower FND_CV_FOLDS"
        )
    if np.bincount(labels, minlength=2).min() < n_folds:
        # too few posts of a class to stratify: whole groups, dealt out in a seeded order
        from sklearn.model_selection import GroupKFold

        order = np.random.default_rng(seed).permutation(n_groups)
        shuffled = order[np.unique(groups, return_inverse=True)[1]]
        return [test for _, test in GroupKFold(n_splits=n_folds).split(labels, labels, shuffled)]
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros(len(labels)), labels, groups)]


def early_stopping_split(
    labels: Sequence[int] | np.ndarray, groups: np.ndarray, *, n_folds: int, seed: int = 0
) -> np.ndarray:
    """Indices (into ``labels``) of a validation part for early stopping: whole groups if possible.

    The first grouped fold that leaves both classes on both sides; with too few groups for
    that, a stratified share of posts instead (logged: early stopping may then see reposts of
    training pictures, which only makes it stop later, never changes what is measured).
    """
    labels = np.asarray(labels, dtype=int)
    k = min(n_folds, len(np.unique(groups)))
    if k >= 2:
        for rows in grouped_folds(labels, groups, n_folds=k, seed=seed):
            rest = np.setdiff1d(np.arange(len(labels)), rows)
            if len(set(labels[rows])) == 2 and len(set(labels[rest])) == 2:
                return rows
    log.warning(
        "too few leak groups (%d) for a grouped early-stopping split: using a post split",
        len(np.unique(groups)),
    )
    rng = np.random.default_rng(seed)
    picked = [
        rng.choice(idx, max(1, len(idx) // n_folds), replace=False)
        for idx in (np.flatnonzero(labels == c) for c in (0, 1))
        if len(idx) > 1
    ]
    return np.sort(np.concatenate(picked)) if picked else np.array([], dtype=int)


def leak_report(groups: np.ndarray, folds: Sequence[np.ndarray]) -> dict[str, int]:
    """Leak statistics stored with the model: groups, largest, and groups on two sides (0)."""
    sizes = Counter(np.asarray(groups).tolist())
    fold_of_group: dict[int, set[int]] = {}
    for k, rows in enumerate(folds):
        for g in np.asarray(groups)[rows].tolist():
            fold_of_group.setdefault(g, set()).add(k)
    return {
        "n_posts": int(len(groups)),
        "n_groups": len(sizes),
        "largest_group": max(sizes.values(), default=0),
        "groups_straddling_folds": sum(1 for f in fold_of_group.values() if len(f) > 1),
    }
