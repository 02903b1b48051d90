"""Demo data generator: labelled "semantic conflict" posts (a drawn picture plus a news caption).

Each post shows a few coloured objects in a scene and carries a caption that either describes the
picture (real, label 0) or contradicts it in exactly one attribute (fake, label 1). Attributes are
drawn independently and uniformly, and a fake swaps one attribute *in the caption* for another
uniformly drawn value, so captions alone and pictures alone have the same distribution in both
classes: only a model that compares the two can learn the label.

Only the object kind and the scene are ever contradicted. Frozen ImageNet features (the offline
preset's EfficientNet-Lite0) barely encode hue or small counts: colour and count explain ~2-3 % of
their variance against ~17 % for the object and ~9 % for the scene, and a fusion head trained on
3,000 posts caught only 26-58 % of colour or count contradictions. So colour and count stay in
picture and caption as truthful detail (variety), and fakes lie about what frozen encoders can see.
See ``benchmarks/demo_learnability.py`` for the measurement.

Everything is derived from ``(seed, post index)`` through per-post random streams: the same call
gives byte-identical files, post ``i`` is the same whatever the batch size, and no clock is read.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw

FORMATS = ("jsonl", "csv", "fakeddit")
FAKEDDIT_COLUMNS = (
    "author", "clean_title", "created_utc", "domain", "hasImage", "id", "image_url",
    "linked_submission_id", "num_comments", "score", "subreddit", "title", "upvote_ratio",
    "2_way_label", "3_way_label", "6_way_label",
)  # fmt: skip

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
CONFLICT_ATTRIBUTES = ("shape", "scene")  # what a fake caption may contradict (module docstring)
_VALUES: dict[str, tuple] = {
    "colour": tuple(COLOURS),
    "shape": tuple(SHAPES),
    "count": COUNTS,
    "scene": SCENES,
}

# Scene palette: sky top, sky at the horizon, ground. Strongly different backgrounds.
_SCENE_COLOURS = {
    "night": ((8, 12, 35), (28, 34, 78), (22, 24, 30)),
    "snow": ((175, 190, 210), (220, 226, 235), (244, 246, 250)),
    "desert": (
        (250, 200, 120),
        (252, 228, 170),
        (214, 158, 82),
    ),
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
_SUBREDDITS = ("pics", "mildlyinteresting", "news", "photoshopbattles", "nottheonion")
_BASE_UTC = 1_704_067_200  # 2024-01-01T00:00:00Z; created_utc = base + seed offset + index steps
_JPEG_QUALITY = 90


@dataclass(frozen=True)
class DemoBatch:
    """What :func:`generate_batch` wrote: the data file, its images folder and label counts."""

    data_file: Path
    images_dir: Path
    n_posts: int
    n_fake: int
    n_real: int
    n_unlabelled: int

    def summary(self) -> dict[str, str | int]:
        """Plain JSON-ready view for the CLI and XCom."""
        return {
            "data_file": str(self.data_file),
            "images_dir": str(self.images_dir),
            "n_posts": self.n_posts,
            "n_fake": self.n_fake,
            "n_real": self.n_real,
            "n_unlabelled": self.n_unlabelled,
        }


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


def generate_batch(
    out_dir: Path,
    n_posts: int,
    *,
    seed: int = 0,
    fmt: str = "jsonl",
    unlabelled_share: float = 0.0,
    fake_share: float = 0.5,
    label_noise: float = 0.0,
    image_size: int = 224,
) -> DemoBatch:
    """Write ``n_posts`` demo posts and their JPEG images into ``out_dir``.

    Args:
        out_dir: landing folder; the data file goes here, images into ``out_dir/images``.
        n_posts: number of posts (>= 1).
        seed: non-negative; ids are ``s{seed}-{index:06d}`` so batches can share a folder.
        fmt: ``jsonl``, ``csv`` or ``fakeddit`` (Fakeddit TSV, 2_way_label 0 = fake).
        unlabelled_share: share of posts written without a label.
        fake_share: share of posts whose caption contradicts the picture.
        label_noise: share of written labels flipped (deliberately wrong).
        image_size: side of the square images in pixels (>= 64).

    Returns:
        A :class:`DemoBatch` with the paths and label counts as written.
    """
    _validate(n_posts, seed, fmt, unlabelled_share, fake_share, label_noise, image_size)
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    posts = [
        make_post(seed, i, unlabelled_share=unlabelled_share, fake_share=fake_share,
                  label_noise=label_noise)
        for i in range(n_posts)
    ]  # fmt: skip
    for post in posts:
        image = render_image(post.image_attrs, _rng(seed, post.index, "image"), image_size)
        image.save(images_dir / f"{post.post_id}.jpg", format="JPEG", quality=_JPEG_QUALITY)
    data_file = _WRITERS[fmt](out_dir, seed, posts)
    labels = [p.label for p in posts]
    return DemoBatch(
        data_file=data_file,
        images_dir=images_dir,
        n_posts=n_posts,
        n_fake=labels.count(1),
        n_real=labels.count(0),
        n_unlabelled=labels.count(None),
    )


def _validate(
    n_posts: int,
    seed: int,
    fmt: str,
    unlabelled_share: float,
    fake_share: float,
    label_noise: float,
    image_size: int,
) -> None:
    """Reject arguments that would write a misleading batch, naming the argument."""
    if isinstance(n_posts, bool) or not isinstance(n_posts, int) or n_posts < 1:
        raise ValueError(f"n_posts must be a positive integer, got {n_posts!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}; got {fmt!r}")
    shares = {"unlabelled_share": unlabelled_share, "fake_share": fake_share,
              "label_noise": label_noise}  # fmt: skip
    for name, value in shares.items():
        if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    if label_noise > 0.5:
        raise ValueError(f"label_noise above 0.5 inverts the labels; got {label_noise!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 64:
        raise ValueError(f"image_size must be an integer >= 64 pixels, got {image_size!r}")


def _rng(seed: int, index: int, stream: str) -> np.random.Generator:
    """Independent random stream per (seed, post, purpose): stable whatever else changes."""
    stream_id = ("label", "attrs", "caption", "image", "meta", "fakeddit").index(stream)
    return np.random.default_rng([seed, index, stream_id])


def _pick(rng: np.random.Generator, values: tuple | list):
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
    flags = _rng(seed, index, "label").random(3)  # fake?, unlabelled?, noisy?
    is_fake = bool(flags[0] < fake_share)
    attrs_rng = _rng(seed, index, "attrs")
    image_attrs = {name: _pick(attrs_rng, _VALUES[name]) for name in ATTRIBUTES}
    caption_attrs = dict(image_attrs)
    if is_fake:  # swap one attribute for a different, uniformly drawn value
        name = _pick(attrs_rng, CONFLICT_ATTRIBUTES)
        others = [v for v in _VALUES[name] if v != image_attrs[name]]
        caption_attrs[name] = _pick(attrs_rng, others)
    label: int | None = int(is_fake) ^ int(flags[2] < label_noise)
    if flags[1] < unlabelled_share:
        label = None
    # One post every ~15 minutes: a 2,000-post batch spans three weeks of daily summaries.
    offset = (seed % 1000) * 86_400 + index * 900 + int(_rng(seed, index, "meta").integers(900))
    return DemoPost(
        post_id=f"s{seed}-{index:06d}",
        seed=seed,
        index=index,
        image_attrs=image_attrs,
        caption_attrs=caption_attrs,
        is_fake=is_fake,
        label=label,
        text=write_caption(caption_attrs, _rng(seed, index, "caption")),
        created_utc=_BASE_UTC + offset,
    )


def write_caption(attrs: dict, rng: np.random.Generator) -> str:
    """A news-style sentence claiming ``attrs``, with varied phrasing, sources and hashtags."""
    count = attrs["count"]
    singular, plural = SHAPES[attrs["shape"]]
    obj = (
        f"{_pick(rng, _COUNT_WORDS[count])} {attrs['colour']} {singular if count == 1 else plural}"
    )
    src = _pick(rng, _SOURCES)
    sentence = _pick(rng, _TEMPLATES).format(
        obj=obj,
        be="was" if count == 1 else "were",
        scene=_pick(rng, _SCENE_PHRASES[attrs["scene"]]),
        src=src,
        src_cap=src[0].upper() + src[1:],
    )
    text = _pick(rng, _PREFIXES) + sentence[0].upper() + sentence[1:] + _pick(rng, _SUFFIXES)
    return text


# Drawing ---------------------------------------------------------------------------------------
def render_image(attrs: dict, rng: np.random.Generator, size: int = 224) -> Image.Image:
    """Draw ``attrs``: a scene background, then ``count`` large objects of one shape and colour."""
    horizon = int(size * rng.uniform(0.45, 0.65))
    canvas = _background(attrs["scene"], rng, size, horizon)
    draw = ImageDraw.Draw(canvas)
    _scene_details(draw, attrs["scene"], rng, size, horizon)
    for cx, cy, diameter in _layout(attrs["count"], rng, size):
        colour = _jitter(COLOURS[attrs["colour"]], rng, 18)
        _draw_shape(draw, attrs["shape"], cx, cy, diameter, colour, rng)
    dx, dy = (int(v) for v in rng.integers(size, size=2))
    window = (dx, dy, dx + size, dy + size)
    brighten, darken = (grain.crop(window) for grain in _grain(size))
    return ImageChops.subtract(ImageChops.add(canvas, brighten), darken)


def _jitter(colour: tuple[int, int, int], rng: np.random.Generator, amount: int) -> tuple:
    deltas = rng.integers(-amount, amount + 1, size=3)
    return tuple(int(min(255, max(0, c + d))) for c, d in zip(colour, deltas, strict=True))


def _background(scene: str, rng: np.random.Generator, size: int, horizon: int) -> Image.Image:
    """Sky gradient above the horizon, flat ground below, each colour slightly jittered."""
    palette = [np.array(_jitter(c, rng, 12), dtype=np.float32) for c in _SCENE_COLOURS[scene]]
    top, low, ground = palette
    t = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None]
    rows = np.concatenate([top * (1 - t) + low * t, np.repeat(ground[None], size - horizon, 0)])
    column = Image.fromarray(rows.astype(np.uint8)[:, None, :])
    return column.resize((size, size), Image.Resampling.NEAREST)


@functools.lru_cache(maxsize=4)
def _grain(size: int) -> tuple[Image.Image, Image.Image]:
    """Fixed mild noise (+/-6 levels) as two saturating layers; each image uses a random window."""
    noise = np.random.default_rng(1234).integers(-6, 7, size=(2 * size, 2 * size, 3))
    to_image = Image.fromarray
    return to_image(np.maximum(noise, 0).astype(np.uint8)), to_image(
        np.maximum(-noise, 0).astype(np.uint8)
    )


def _scene_details(draw: ImageDraw.ImageDraw, scene: str, rng, size: int, horizon: int) -> None:
    """Small scene cues (moon, snow drifts, dunes): background variety that hides no object."""
    s = size / 224
    if scene == "night":
        x, y, r = rng.uniform(20, 204) * s, rng.uniform(12, 40) * s, rng.uniform(8, 13) * s
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(235, 232, 200))
        draw.ellipse((x - r + 0.5 * r, y - r, x + r + 0.5 * r, y + r), fill=(12, 16, 42))
    else:
        shade = (205, 215, 232) if scene == "snow" else (192, 136, 66)
        for _ in range(int(rng.integers(1, 4))):
            x, w = rng.uniform(-40, 200) * s, rng.uniform(60, 140) * s
            h = rng.uniform(8, 20) * s
            y = horizon + rng.uniform(0.2, 0.8) * (size - horizon)
            draw.ellipse((x, y - h, x + w, y + h), fill=_jitter(shade, rng, 8))


def _layout(
    count: int, rng: np.random.Generator, size: int
) -> Iterator[tuple[float, float, float]]:
    """Centres and sizes of ``count`` non-overlapping objects, one per horizontal slot."""
    s = size / 224
    lo, hi = {1: (80, 110), 2: (64, 84), 3: (50, 62)}[count]
    slot = (size - 16 * s) / count
    for i in range(count):
        diameter = rng.uniform(lo, hi) * s
        slack = max(0.0, (slot - diameter) / 2)
        cx = 8 * s + slot * (i + 0.5) + rng.uniform(-slack, slack)
        cy = rng.uniform(0.3, 0.7) * size
        yield cx, cy, diameter


def _draw_shape(draw, shape: str, cx: float, cy: float, d: float, colour: tuple, rng) -> None:
    """One object with a dark outline; polygons get a small random tilt."""
    r = d / 2
    outline, width = (15, 15, 15), max(1, round(d / 30))
    if shape == "circle":
        draw.line((cx, cy + r, cx + rng.uniform(-6, 6), cy + r * 1.5), fill=outline, width=width)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour, outline=outline, width=width)
        return
    tilt = rng.uniform(-0.2, 0.2)
    if shape == "square":
        angles, radii = [math.pi / 4 + k * math.pi / 2 for k in range(4)], [r * 1.1] * 4
    elif shape == "triangle":
        angles, radii = [-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)], [r * 1.2] * 3
    else:  # five-pointed star
        angles = [-math.pi / 2 + k * math.pi / 5 for k in range(10)]
        radii = [r * 1.1 if k % 2 == 0 else r * 0.45 for k in range(10)]
    points = [
        (cx + q * math.cos(a + tilt), cy + q * math.sin(a + tilt))
        for a, q in zip(angles, radii, strict=True)
    ]
    draw.polygon(points, fill=colour, outline=outline, width=width)


# Writers ---------------------------------------------------------------------------------------
def _write_jsonl(out_dir: Path, seed: int, posts: list[DemoPost]) -> Path:
    path = out_dir / f"demo_s{seed}.jsonl"
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for post in posts:
            row: dict = {"id": post.post_id, "text": post.text, "image": _image_rel(post),
                         "created_utc": post.created_utc}  # fmt: skip
            if post.label is not None:
                row["label"] = post.label
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _write_csv(out_dir: Path, seed: int, posts: list[DemoPost]) -> Path:
    path = out_dir / f"demo_s{seed}.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "text", "image", "created_utc", "label"])
        for p in posts:
            label = "" if p.label is None else p.label
            writer.writerow([p.post_id, p.text, _image_rel(p), p.created_utc, label])
    return path


def _write_fakeddit(out_dir: Path, seed: int, posts: list[DemoPost]) -> Path:
    """Fakeddit's TSV layout; its 2_way_label is 1 = true, 0 = fake (the inverse of ours)."""
    path = out_dir / f"demo_s{seed}_multimodal.tsv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(FAKEDDIT_COLUMNS)
        for p in posts:
            writer.writerow(_fakeddit_row(p))
    return path


def _fakeddit_row(p: DemoPost) -> list:
    meta = _rng(p.seed, p.index, "fakeddit")
    if p.label is None:
        two, three, six = "", "", ""
    else:  # fake: 3-way 2 = "fake with false text", 6-way 4 = "false connection"
        two, three, six = (0, 2, 4) if p.label == 1 else (1, 0, 0)
    return [
        f"demo_user_{int(meta.integers(500)):03d}",
        re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", p.text.lower())).strip(),
        f"{p.created_utc}.0",
        "demo.fnd.invalid",
        "True",
        p.post_id,
        f"https://demo.fnd.invalid/{p.post_id}.jpg",
        "",
        int(meta.integers(300)),
        int(meta.integers(5000)),
        _pick(meta, _SUBREDDITS),
        p.text,
        f"{meta.uniform(0.5, 1.0):.2f}",
        two,
        three,
        six,
    ]


def _image_rel(post: DemoPost) -> str:
    return f"images/{post.post_id}.jpg"


_WRITERS = {"jsonl": _write_jsonl, "csv": _write_csv, "fakeddit": _write_fakeddit}
