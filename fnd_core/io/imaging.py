"""Image decoding with the rules every layer shares: header and pixel budget first, then a full
decode into an upright 8-bit RGB picture.

Why the checks run in this order: the header (size, format) is parsed first and the pixel
budget — and, at ingest, the budget of decoded bytes (mode-aware: a 16-bit or float picture
takes two or four bytes a pixel) — checked before any pixel is decoded (decompression bombs);
then the whole image is decoded, because a truncated file only fails there. JPEGs are decoded
at 1/8 scale during the check (libjpeg's DCT scaling): the whole compressed stream is still
read, so truncation is still caught, at a fraction of the cost of a full-size decode. Ingest
checks pictures with it, the model's data loading decodes them with it: one set of rules.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

# Formats a post's picture may come in; anything else (EPS, PSD, ...) is refused unopened.
ACCEPTED_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF")
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif"}
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_TRANSPOSES = {  # EXIF orientation -> the transpose that makes the picture upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")  # in Pillow's DecompressionBombError message
_SWAPS_SIDES = (5, 6, 7, 8)  # orientations that turn the picture a quarter


class RuleViolation(ValueError):
    """A value that breaks an ingest rule: ``rule`` is a stable code, ``reason`` is for people."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"{rule}: {reason}")
        self.rule = rule
        self.reason = reason


class ImageRejected(RuleViolation):
    """An image that cannot be accepted."""


@dataclass(frozen=True)
class ImageInfo:
    """What the check learnt: detected format, store extension, upright full-size dimensions."""

    format: str
    ext: str
    width: int
    height: int
    mode: str
    phashes: tuple[int, ...] | None = None  # perceptual hashes (fnd_core.io.picture_hash)


def open_rgb(data: bytes, *, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """Decode ``data`` into an upright 8-bit RGB image; the model's data loading uses it too.

    Args:
        data: encoded image bytes.
        max_pixels: refuse images with more pixels, checked from the header before decoding.
        draft_size: for JPEGs, let libjpeg decode at the smallest scale (1/2 .. 1/8) whose
            shorter side still covers ``draft_size`` pixels: far faster for large photos.

    Raises:
        ImageRejected: ``image_not_an_image``, ``image_too_large``, ``image_truncated``,
            ``image_corrupt`` or ``image_unsupported_mode``.
    """
    image = _open_checked(data, max_pixels)
    if draft_size and image.format in ("JPEG", "MPO"):
        image.draft("RGB", (draft_size, draft_size))
    rgb, orientation = _decode_rgb(image)
    method = _TRANSPOSES.get(orientation)
    return rgb.transpose(method) if method is not None else rgb


def inspect_image(
    data: bytes, *, max_pixels: int, max_decoded_bytes: int | None = None, phash: bool = True
) -> ImageInfo:
    """Check that ``data`` is a complete, convertible image and return its upright size.

    Memory stays within ``max_decoded_bytes`` (checked from the header, before decoding):
    JPEGs decode at 1/8 scale (every byte is still read, so truncation is still caught), and
    only a small corner is converted to RGB to prove the mode converts; the full picture is
    decoded once, in its own mode, never widened. ``phash``: also the perceptual hashes of what
    was decoded (:mod:`fnd_core.io.picture_hash`).
    """
    image = _open_checked(data, max_pixels)
    image_format, mode = image.format or "", image.mode
    width, height = image.size
    if image_format in ("JPEG", "MPO"):
        image.draft(image.mode, (1, 1))  # 1/8 scale: every byte is still decoded
    if max_decoded_bytes is not None:
        check_decoded_bytes(image, max_decoded_bytes)
    _, orientation = _decode_rgb(image, corner=True)
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    ext = _EXTENSIONS.get(image_format, image_format.lower())
    return ImageInfo(format=image_format, ext=ext, width=width, height=height, mode=mode,
                     phashes=_phashes(image, orientation) if phash else None)  # fmt: skip


def _phashes(image: Image.Image, orientation: int) -> tuple[int, ...] | None:
    """The decoded (JPEG: 1/8 scale) picture's perceptual hashes, upright; None when its mode
    has no grey form: a picture without hashes is still a good picture, only never matched."""
    from fnd_core.io.picture_hash import picture_hashes

    try:
        return picture_hashes(image, _TRANSPOSES.get(orientation))
    except (ValueError, OSError):
        return None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@functools.cache
def _openers() -> tuple[str, ...]:
    """The accepted formats this Pillow build can open (MPO opens through JPEG).

    Also caps the AVIF decoder at one thread a picture (libavif's default is one per core):
    pictures decode side by side in a fixed number of threads, so memory must not grow with
    the machine's cores.
    """
    Image.init()
    try:
        from PIL import AvifImagePlugin

        AvifImagePlugin.DEFAULT_MAX_THREADS = 1
    except ImportError:  # a Pillow built without AVIF
        pass
    return tuple(f for f in ACCEPTED_FORMATS if f in Image.OPEN)


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """Parse the header only; refuse non-images and images above the pixel budget."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_openers())
    except Image.DecompressionBombError as exc:
        found = _BOMB_PIXELS.search(str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise ImageRejected(
            "image_too_large",
            f"image header claims {size} (a decompression bomb?); at most {max_pixels:,} allowed",
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected(
            "image_not_an_image",
            f"not a recognised image ({len(data):,} bytes of {_content_kind(data)}); "
            f"accepted formats: {', '.join(ACCEPTED_FORMATS)}",
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(_broken_rule(exc), f"unreadable image header: {exc}") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(
            "image_too_large",
            f"image is {width}x{height} = {width * height:,} pixels; "
            f"at most {max_pixels:,} allowed",
        )
    if width < 1 or height < 1:
        raise ImageRejected("image_corrupt", f"image has no pixels ({width}x{height})")
    return image


def decoded_bytes(image: Image.Image) -> int:
    """Bytes the decoded picture takes in memory: pixels x bands x bytes per sample, as Pillow
    holds them (8-bit bands in a byte each, 3 bands padded to 4; 16-bit grey 2; 32-bit 4)."""
    width, height = image.size
    mode = image.mode
    if mode in ("1", "L", "P"):
        per_pixel = 1
    elif mode.startswith("I;16"):
        per_pixel = 2
    elif mode in ("I", "F", "LA", "PA", "La") or len(image.getbands()) in (2, 3, 4):
        per_pixel = 4
    else:
        per_pixel = 8  # anything wider (or unknown): counted generously
    return width * height * per_pixel


def check_decoded_bytes(image: Image.Image, max_bytes: int) -> None:
    """Refuse a picture whose decoded form would take more than ``max_bytes`` (the header
    says; nothing is decoded): a tiny 16-bit PNG or float TIFF can decode to gigabytes."""
    needed = decoded_bytes(image)
    if needed > max_bytes:
        width, height = image.size
        raise ImageRejected(
            "image_decoded_too_large",
            f"image decodes to {needed:,} bytes ({width}x{height} {image.mode}); at most "
            f"{max_bytes:,} allowed (FND_MAX_IMAGE_DECODED_BYTES)",
        )


def _decode_rgb(image: Image.Image, *, corner: bool = False) -> tuple[Image.Image, int]:
    """Decode every pixel (truncation fails here) and convert to RGB; also the EXIF orientation.

    ``corner``: convert only a small corner (the check that the mode converts), not the whole.
    The orientation is read after decoding: a PNG's EXIF chunk may follow its pixel data.
    """
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(_broken_rule(exc), f"image data cannot be decoded: {exc}") from exc
    try:
        rgb = _to_rgb(image.crop((0, 0, min(image.width, 64), min(image.height, 64))) if corner
                      else image)  # fmt: skip
    except (ValueError, OSError) as exc:
        raise ImageRejected(
            "image_unsupported_mode", f"cannot convert {image.mode} image to RGB: {exc}"
        ) from exc
    return rgb, _orientation(image)


def _content_kind(data: bytes) -> str:
    """A hint at what a non-image is, without quoting bytes of an arbitrary file."""
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    return "text"


def _broken_rule(exc: BaseException) -> str:
    """``image_truncated`` when Pillow says the data ends early, else ``image_corrupt``."""
    return "image_truncated" if "truncat" in str(exc).lower() else "image_corrupt"


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright) read from the header; bad EXIF counts as none."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError):
        return 1
    return value if isinstance(value, int) else 1


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: 16-bit scaled (not clipped), transparency composited on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(image).astype(np.int64)
        if mode != "I" or values.max(initial=0) > 255:
            values = values >> 8  # 16-bit range to 8-bit; convert() would clip to white
        grey = np.clip(values, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min(initial=0.0)), float(values.max(initial=1.0))
        scaled = (values - low) / max(high - low, 1e-12) * 255.0
        return Image.fromarray(scaled.astype(np.uint8), mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
