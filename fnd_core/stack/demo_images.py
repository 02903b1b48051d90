"""Drawing a demo post's picture: a scene, then a few objects of one shape and colour.

Split from :mod:`fnd_core.stack.demo` (which writes batches): the pixels only. The attributes
drawn come from :func:`fnd_core.stack.demo_posts.make_post`; what frozen image encoders can
and cannot see in them is discussed in :mod:`fnd_core.stack.demo`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from fnd_core.stack.demo_posts import COLOURS

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


def _scene_details(
    draw: ImageDraw.ImageDraw, scene: str, rng: np.random.Generator, size: int, horizon: int
) -> None:
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


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    cx: float,
    cy: float,
    d: float,
    colour: tuple[int, int, int],
    rng: np.random.Generator,
) -> None:
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
