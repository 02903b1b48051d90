"""Files and pictures the tests build in code: JPEG and PNG bytes, crafted headers, JSONL
landing files, and a learnable toy task of coloured pictures."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from fnd_core.model import PostExample

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220)}


def jpeg_bytes(size=(32, 24), colour=(200, 40, 40), mode="RGB", **save) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="JPEG", quality=90, **save)
    return buf.getvalue()


def noisy_jpeg(side: int = 64, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression-bomb stand-in)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    signature = b"\x89PNG\r\n\x1a\n"
    return (
        signature + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def write_jsonl(path: Path, records: list) -> Path:
    lines = [
        r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode() for r in records
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def toy_posts(folder, n: int, seed: int = 0) -> list[PostExample]:
    """A colour-matching task: fake when the caption names another colour than the picture.

    Neither the caption nor the picture alone says anything about the label.
    """
    rng = np.random.default_rng(seed)
    posts = []
    for i in range(n):
        shown = list(COLOURS)[rng.integers(3)]
        fake = int(rng.integers(2))
        said = [c for c in COLOURS if c != shown][rng.integers(2)] if fake else shown
        pixels = np.array(COLOURS[shown])[None, None] + rng.normal(0, 20, (24, 24, 3))
        path = folder / f"{i}.png"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
        post_id = f"toy-{i}"
        text = f"look at this {said} thing"
        split = ("test", "val", "train", "train", "train", "train")[i % 6]
        posts.append(PostExample(post_id, text, str(path), None, fake, split))
    return posts
