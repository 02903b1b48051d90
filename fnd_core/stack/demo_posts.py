"""What a demo post is: its picture's attributes, its caption's claim, its label and its text.

Split from :mod:`fnd_core.stack.demo` (which writes batches, and explains the design): here
are the attribute vocabulary, the per-post random streams, and :func:`make_post`, which
draws everything about post ``i`` of a seed except its pixels
(:mod:`fnd_core.stack.demo_images`) and its file row (:mod:`fnd_core.stack.demo_files`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")

# Few, very distinct values: frozen ImageNet features must tell them apart at a glance.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 165, 50),
    "blue": (35, 75, 225),
    "yellow": (250, 210, 20),
}
SHAPES: dict[str, tuple[str, str]] = {  # drawn shape -> caption noun (singular, plural)
    "circle": ("balloon", "balloons"),
    "square": ("box", "boxes"),
    "triangle": ("tent", "tents"),
    "star": ("star", "stars"),
}
COUNTS = (1, 2, 3)
SCENES = ("night", "snow", "desert")
ATTRIBUTES = ("colour", "shape", "count", "scene")
CONFLICT_ATTRIBUTES = ("shape", "scene")  # what a fake caption may contradict (see demo.py)
_VALUES: dict[str, tuple] = {
    "colour": tuple(COLOURS),
    "shape": tuple(SHAPES),
    "count": COUNTS,
    "scene": SCENES,
}

_COUNT_WORDS = {1: ("one", "a single"), 2: ("two", "a pair of"), 3: ("three",)}
_SCENE_PHRASES = {
    "night": ("at night", "late at night", "after dark", "under the night sky"),
    "snow": ("in the snow", "on a snowy field", "in deep snow", "after a snowstorm"),
    "desert": ("in the desert", "on desert sand dunes", "in the hot desert", "on a desert road"),
}
_SOURCES = (
    "City Wire",
    "the Daily Ledger",
    "Metro Times",
    "local police",
    "a witness",
    "@newsdesk",
)
_TEMPLATES = (
    "{obj} {be} spotted {scene}, according to {src}.",
    "{src_cap} reports {obj} {scene} this morning.",
    "Local residents photographed {obj} {scene}.",
    "Caught on camera: {obj} {scene}, officials confirm.",
    "Eyewitness photo shows {obj} {scene}.",
    "{obj} appeared {scene}, says {src}.",
    "Officials say {obj} {be} found {scene}.",
    "This photo of {obj} {scene} is going viral.",
)
_PREFIXES = ("", "", "", "BREAKING: ", "JUST IN: ", "Photo: ", "UPDATE: ")
_SUFFIXES = ("", "", "", " #news", " #breaking", " #viral #photo", " More to follow.",
             " Developing story.", " Share if you saw it!")  # fmt: skip
_BASE_UTC = 1_704_067_200  # 2024-01-01T00:00:00Z; created_utc = base + seed offset + index steps
# Every six hours of posts (24 at one every ~15 minutes) are one simulated news event: the
# landing field `event`, which the gate's folds hold out whole. The demo's events mix every
# scene, so a new event brings new posts, not new kinds of picture (an unseen scene would).
EVENT_POSTS = 24


@dataclass(frozen=True)
class DemoPost:
    """One generated post before it is written: the picture's truth and the caption's claim."""

    post_id: str
    seed: int
    index: int
    image_attrs: dict
    caption_attrs: dict
    is_fake: bool  # ground truth by construction (before label noise)
    label: int | None  # what the file says: 0 real, 1 fake, None unlabelled
    text: str
    created_utc: int
    event: str  # the simulated news event (six hours of posts)


def post_rng(seed: int, index: int, stream: str) -> np.random.Generator:
    """Independent random stream per (seed, post, purpose): stable whatever else changes."""
    stream_id = ("label", "attrs", "caption", "image", "meta", "fakeddit").index(stream)
    return np.random.default_rng([seed, index, stream_id])


def pick(rng: np.random.Generator, values: Sequence[T]) -> T:
    """One of ``values``, drawn uniformly with ``rng``."""
    return values[int(rng.integers(len(values)))]


def make_post(
    seed: int,
    index: int,
    *,
    unlabelled_share: float = 0.0,
    fake_share: float = 0.5,
    label_noise: float = 0.0,
) -> DemoPost:
    """Draw one post's attributes, its caption claim, label and text (no image drawn here)."""
    flags = post_rng(seed, index, "label").random(3)  # fake?, unlabelled?, noisy?
    is_fake = bool(flags[0] < fake_share)
    attrs_rng = post_rng(seed, index, "attrs")
    image_attrs = {name: pick(attrs_rng, _VALUES[name]) for name in ATTRIBUTES}
    caption_attrs = dict(image_attrs)
    if is_fake:  # swap one attribute for a different, uniformly drawn value
        name = pick(attrs_rng, CONFLICT_ATTRIBUTES)
        others = [v for v in _VALUES[name] if v != image_attrs[name]]
        caption_attrs[name] = pick(attrs_rng, others)
    label: int | None = int(is_fake) ^ int(flags[2] < label_noise)
    if flags[1] < unlabelled_share:
        label = None
    # One post every ~15 minutes: a 2,000-post batch spans three weeks of daily summaries.
    offset = (seed % 1000) * 86_400 + index * 900 + int(post_rng(seed, index, "meta").integers(900))
    return DemoPost(
        post_id=f"s{seed}-{index:06d}",
        seed=seed,
        index=index,
        image_attrs=image_attrs,
        caption_attrs=caption_attrs,
        is_fake=is_fake,
        label=label,
        text=write_caption(caption_attrs, post_rng(seed, index, "caption")),
        created_utc=_BASE_UTC + offset,
        event=f"s{seed}-e{index // EVENT_POSTS:04d}",
    )


def write_caption(attrs: dict, rng: np.random.Generator) -> str:
    """A news-style sentence claiming ``attrs``, with varied phrasing, sources and hashtags."""
    count = attrs["count"]
    singular, plural = SHAPES[attrs["shape"]]
    obj = f"{pick(rng, _COUNT_WORDS[count])} {attrs['colour']} {singular if count == 1 else plural}"
    src = pick(rng, _SOURCES)
    sentence = pick(rng, _TEMPLATES).format(
        obj=obj,
        be="was" if count == 1 else "were",
        scene=pick(rng, _SCENE_PHRASES[attrs["scene"]]),
        src=src,
        src_cap=src[0].upper() + src[1:],
    )
    text = pick(rng, _PREFIXES) + sentence[0].upper() + sentence[1:] + pick(rng, _SUFFIXES)
    return text
