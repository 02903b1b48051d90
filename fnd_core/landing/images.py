"""Image checks at ingest and the content-addressed image store.

An image is accepted once its bytes decode completely into an upright RGB picture of at most
``max_pixels``; its original bytes are then stored once under ``<store>/images/<sha256>.<ext>``
(never re-encoded), so later steps never read the landing zone and a meme shared by many posts
is stored, and can be encoded, once.

Why the checks run in this order: the header (size, format) is parsed first and the pixel
budget checked before any pixel is decoded (decompression bombs); then the whole image is
decoded, because a truncated file only fails there. JPEGs are decoded at 1/8 scale during the
check (libjpeg's DCT scaling): the whole compressed stream is still read, so truncation is still
caught, at a fraction of the cost of a full-size decode.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from fnd_core.landing import storage

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


@dataclass(frozen=True)
class StoredImage:
    """An accepted image, in the store."""

    uri: str
    sha256: str
    width: int
    height: int
    format: str


DEFAULT_MAX_IMAGE_BYTES = 50 * 1024 * 1024
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_OUTSIDE = "image_outside_zone"


def resolve_image_ref(ref: str, folder: str, remote_hosts: frozenset[str] = frozenset()) -> str:
    """Where an image reference points, confined to ``folder``'s tree; nothing is opened.

    A reference is a path relative to the landing file's folder (``images/x.jpg``), or, in a
    ``gs://`` landing zone, a ``gs://`` URI under the landing file's own prefix. Refused with
    :class:`ImageRejected`: absolute paths, ``..`` escapes, ``file://`` and every other scheme,
    and ``http(s)`` URLs unless their host is in ``remote_hosts`` (``FND_REMOTE_IMAGE_HOSTS``;
    see :mod:`fnd_core.landing.remote`). The reason never says whether a path outside the zone
    exists: nothing outside is looked at.
    """
    remote_root = not storage.is_local(folder)
    if _SCHEME.match(ref) or "://" in ref:
        scheme = ref.split(":", 1)[0].lower()
        if scheme in ("http", "https"):
            from fnd_core.landing.remote import check_url

            return check_url(ref, remote_hosts)
        if remote_root and scheme in ("gs", "gcs"):
            return _inside(_posix_norm(ref.split("://", 1)[1]), folder.split("://", 1)[1], ref,
                           prefix=folder.split("://", 1)[0] + "://")  # fmt: skip
        raise ImageRejected(
            _OUTSIDE, f"image reference {_shown(ref)} is not a path relative to the landing file"
        )
    if ref.startswith(("/", "\\")) or "\x00" in ref:
        raise ImageRejected(
            _OUTSIDE, f"image reference {_shown(ref)} is absolute: give a path relative to the "
            "landing file's folder"
        )  # fmt: skip
    if remote_root:
        root = folder.split("://", 1)[1]
        return _inside(
            _posix_norm(f"{root}/{ref}"), root, ref, prefix=folder.split("://", 1)[0] + "://"
        )
    root = os.path.abspath(storage.local_path(folder))
    candidate = os.path.normpath(os.path.join(root, ref))
    if candidate == root or not storage.is_within(candidate, root, resolve_links=False):
        raise ImageRejected(_OUTSIDE, _escape_reason(ref))
    return candidate


def _inside(path: str, root: str, ref: str, *, prefix: str) -> str:
    root = root.rstrip("/")
    if not path.startswith(root + "/"):
        raise ImageRejected(_OUTSIDE, _escape_reason(ref))
    return prefix + path


def _posix_norm(path: str) -> str:
    import posixpath

    return posixpath.normpath(path)


def _escape_reason(ref: str) -> str:
    return f"image reference {_shown(ref)} leads outside the landing file's folder"


def _shown(ref: str) -> str:
    return repr(ref if len(ref) <= 200 else ref[:200] + "…")


def read_image_bytes(
    uri: str,
    *,
    zone: str | None = None,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    gcs_endpoint: str | None = None,
    remote: RemoteImages | None = None,
) -> bytes:
    """The image file's bytes (at most ``max_bytes``), or an :class:`ImageRejected` saying why not.

    ``zone``: the folder the file must really be in. Locally, symlinks are resolved first and
    a file whose real path leaves the zone is refused unopened, as are device files, FIFOs and
    folders (``/dev/zero`` costs nothing); the size is checked before reading.
    """
    if storage.is_local(uri):
        return _read_local(storage.local_path(uri), zone, max_bytes)
    if uri.lower().startswith(("http://", "https://")):
        from fnd_core.landing.remote import fetch

        remote = remote or RemoteImages()
        data = fetch(uri, max_bytes=max_bytes, timeout_s=remote.timeout_s, hosts=remote.hosts)
        return _non_empty(data, uri, max_bytes)
    try:
        fs, path = storage.filesystem(uri, gcs_endpoint=gcs_endpoint)
        size = fs.size(path)
        if size is not None and size > max_bytes:
            raise ImageRejected("image_too_big", _too_big(uri, size, max_bytes))
        data = fs.cat_file(path)
    except ImageRejected:
        raise
    except FileNotFoundError as exc:
        raise ImageRejected("image_missing", f"image file not found: {uri}") from exc
    except Exception as exc:  # noqa: BLE001 — any storage error is this row's problem only
        raise ImageRejected(
            "image_unreadable", f"cannot read image {uri}: {type(exc).__name__}"
        ) from exc
    return _non_empty(data, uri, max_bytes)


@dataclass(frozen=True)
class RemoteImages:
    """Which ``http(s)`` image hosts may be fetched from (none by default), and how long to wait."""

    hosts: frozenset[str] = frozenset()
    timeout_s: float = 10.0


def _read_local(path: str, zone: str | None, max_bytes: int) -> bytes:
    import stat

    real = os.path.realpath(path)
    if zone is not None:
        real_zone = os.path.realpath(storage.local_path(zone))
        if real == real_zone or not storage.is_within(real, real_zone):
            raise ImageRejected(
                _OUTSIDE, f"image {_shown(os.path.relpath(path, zone))} leads outside the landing "
                "file's folder (a link out of it)"
            )  # fmt: skip
    try:
        info = os.stat(real)
        if not stat.S_ISREG(info.st_mode):
            raise ImageRejected("image_not_a_file", f"image {path} is not a regular file")
        if info.st_size > max_bytes:
            raise ImageRejected("image_too_big", _too_big(path, info.st_size, max_bytes))
        fd = os.open(
            real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        )
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped since the stat
                raise ImageRejected("image_not_a_file", f"image {path} is not a regular file")
            data = f.read(max_bytes + 1)
    except ImageRejected:
        raise
    except FileNotFoundError as exc:
        raise ImageRejected("image_missing", f"image file not found: {path}") from exc
    except OSError as exc:
        raise ImageRejected(
            "image_unreadable", f"cannot read image file {path}: {exc.strerror}"
        ) from exc
    return _non_empty(data, path, max_bytes)


def _non_empty(data: bytes, uri: str, max_bytes: int) -> bytes:
    if not data:
        raise ImageRejected("image_empty", f"image file is empty (0 bytes): {uri}")
    if len(data) > max_bytes:
        raise ImageRejected("image_too_big", _too_big(uri, len(data), max_bytes))
    return data


def _too_big(uri: str, size: int, max_bytes: int) -> str:
    return f"image {uri} has {size:,} bytes, more than FND_MAX_IMAGE_BYTES ({max_bytes:,})"


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


def inspect_image(data: bytes, *, max_pixels: int) -> ImageInfo:
    """Check that ``data`` is a complete, convertible image and return its upright size."""
    image = _open_checked(data, max_pixels)
    image_format, mode = image.format or "", image.mode
    width, height = image.size
    if image_format in ("JPEG", "MPO"):
        image.draft(image.mode, (1, 1))  # 1/8 scale: every byte is still decoded
    _, orientation = _decode_rgb(image)
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    ext = _EXTENSIONS.get(image_format, image_format.lower())
    return ImageInfo(format=image_format, ext=ext, width=width, height=height, mode=mode)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@functools.cache
def _openers() -> tuple[str, ...]:
    """The accepted formats this Pillow build can open (MPO opens through JPEG)."""
    Image.init()
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


def _decode_rgb(image: Image.Image) -> tuple[Image.Image, int]:
    """Decode every pixel (truncation fails here) and convert to RGB; also the EXIF orientation.

    The orientation is read after decoding: a PNG's EXIF chunk may follow its pixel data.
    """
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(_broken_rule(exc), f"image data cannot be decoded: {exc}") from exc
    try:
        rgb = _to_rgb(image)
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


@dataclass
class ImageStore:
    """Content-addressed store: ``<root>/images/<sha256>.<ext>``, each content written once.

    Args:
        root: the model/data store (local folder or ``gs://bucket/prefix``); a relative
            local folder is made absolute, so stored URIs work from any working directory.
        gcs_endpoint: GCS endpoint override (emulator).
    """

    root: str
    gcs_endpoint: str | None = None
    _present: set[str] = field(default_factory=set, repr=False)  # names known to be stored

    def __post_init__(self) -> None:
        if storage.is_local(self.root):
            self.root = os.path.abspath(storage.local_path(self.root))

    def uri_for(self, sha256: str, ext: str) -> str:
        return storage.join(self.root, "images", f"{sha256}.{ext}")

    def put(self, data: bytes, *, sha256: str, ext: str) -> str:
        """Store ``data`` unless that content is already there; return its URI."""
        uri = self.uri_for(sha256, ext)
        if uri in self._present:
            return uri
        if not storage.exists(uri, gcs_endpoint=self.gcs_endpoint):
            storage.write_bytes(uri, data, gcs_endpoint=self.gcs_endpoint)
        self._present.add(uri)
        return uri


def ingest_image(
    uri: str,
    store: ImageStore,
    *,
    max_pixels: int,
    zone: str | None = None,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    gcs_endpoint: str | None = None,
    remote: RemoteImages | None = None,
) -> StoredImage:
    """Read (confined to ``zone``, capped at ``max_bytes``), check and store one landing image.

    Raises:
        ImageRejected: with the rule the image broke.
    """
    data = read_image_bytes(
        uri, zone=zone, max_bytes=max_bytes, gcs_endpoint=gcs_endpoint, remote=remote
    )
    info = inspect_image(data, max_pixels=max_pixels)
    digest = sha256_hex(data)
    stored_uri = store.put(data, sha256=digest, ext=info.ext)
    return StoredImage(
        uri=stored_uri, sha256=digest, width=info.width, height=info.height, format=info.format
    )
