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

This module validates a request and writes a batch; what a post is (attributes, caption,
label) is :mod:`fnd_core.stack.demo_posts`, its picture :mod:`fnd_core.stack.demo_images`, and
the landing file's formats :mod:`fnd_core.stack.demo_files`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fnd_core.stack.demo_files import WRITERS
from fnd_core.stack.demo_images import render_image
from fnd_core.stack.demo_posts import make_post, post_rng

FORMATS = ("jsonl", "csv", "fakeddit")
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
        image = render_image(post.image_attrs, post_rng(seed, post.index, "image"), image_size)
        image.save(images_dir / f"{post.post_id}.jpg", format="JPEG", quality=_JPEG_QUALITY)
    data_file = WRITERS[fmt](out_dir, seed, posts)
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
