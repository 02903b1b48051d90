"""Files the pages serve: Data Docs HTML, model plots, image thumbnails — never anything else.

Each reader only opens what fnd recorded: a path inside the Data Docs folder (no ``..``, no
symlink out), a plot listed in a model artifact's manifest (whose sha256 is the one in
``fnd.model_versions``), an image whose content hash is in ``fnd.posts``. Artifacts and images
may be local or ``gs://`` (through :mod:`fnd_core.io.storage`).
"""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
import os
import re
from functools import lru_cache
from pathlib import Path

from fnd_core.io import storage

# fnd_core.model.artifacts names these; importing it would import torch into the API server.
MANIFEST = "manifest.json"
PLOTS_FOLDER = "plots/"
_PLOT_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.png$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
THUMBNAIL_SIZES = (96, 160, 320)


class NotServable(LookupError):
    """The file does not exist, or is not one the plugin may serve."""


def data_docs_file(root: str | os.PathLike[str], relative: str) -> Path:
    """The file at ``relative`` under the Data Docs folder ``root``, refusing any escape.

    Raises:
        NotServable: empty, absolute or ``..`` paths, a path leaving ``root`` (also through a
            symlink), or no such file.
    """
    parts = Path(relative).parts
    if not relative or Path(relative).is_absolute() or ".." in parts or "\\" in relative:
        raise NotServable(f"not a Data Docs path: {relative!r}")
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base) or not target.is_file():
        raise NotServable(f"no Data Docs file {relative!r}")
    return target


def published_data_docs(root_uri: str, relative: str) -> tuple[bytes, str]:
    """The bytes and name of a Data Docs file published under ``root_uri`` (``gs://...``,
    ``FND_DATA_DOCS_URI``), refusing the same escapes as :func:`data_docs_file`."""
    parts = Path(relative).parts
    if (not relative or relative.startswith("/") or ".." in parts or "\\" in relative
            or "//" in relative or ":" in relative):  # fmt: skip
        raise NotServable(f"not a Data Docs path: {relative!r}")
    try:
        return storage.read_bytes(storage.join(root_uri, relative)), Path(relative).name
    except FileNotFoundError as exc:
        raise NotServable(f"no Data Docs file {relative!r}") from exc


def media_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


@lru_cache(maxsize=256)
def artifact_manifest(uri: str, sha256: str, gcs_endpoint: str | None = None) -> dict[str, str]:
    """The artifact's ``{file name: sha256}``, after checking the manifest is the recorded one.

    Cached: an artifact never changes once recorded (its sha256 is the cache key).

    Raises:
        NotServable: no manifest, or one whose sha256 is not ``sha256``.
    """
    try:
        data = storage.read_bytes(storage.join(uri, MANIFEST), gcs_endpoint=gcs_endpoint)
    except FileNotFoundError as exc:
        raise NotServable(f"no {MANIFEST} in {uri}") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise NotServable(f"{uri} changed since it was recorded (manifest sha256 differs)")
    return dict(json.loads(data)["files"])


def plot_names(uri: str, sha256: str, gcs_endpoint: str | None = None) -> list[str]:
    """The PNG plots of an artifact, by file name (``roc_test.png``...), sorted."""
    files = artifact_manifest(uri, sha256, gcs_endpoint)
    return sorted(n.removeprefix(PLOTS_FOLDER) for n in files if n.startswith(PLOTS_FOLDER))


def plot_bytes(uri: str, sha256: str, name: str, gcs_endpoint: str | None = None) -> bytes:
    """One plot's PNG bytes, checked against the artifact's manifest.

    Raises:
        NotServable: a name that is not a plain ``*.png``, not in the manifest, or whose
            bytes do not match it.
    """
    if not _PLOT_NAME.match(name):
        raise NotServable(f"not a plot name: {name!r}")
    files = artifact_manifest(uri, sha256, gcs_endpoint)
    key = PLOTS_FOLDER + name
    if key not in files:
        raise NotServable(f"no plot {name} in {uri}")
    try:
        data = storage.read_bytes(storage.join(uri, key), gcs_endpoint=gcs_endpoint)
    except FileNotFoundError as exc:
        raise NotServable(f"{key} listed in {uri}'s manifest is missing") from exc
    if hashlib.sha256(data).hexdigest() != files[key]:
        raise NotServable(f"{key} of {uri} does not match its manifest")
    return data


def thumbnail(data: bytes, size: int, *, max_pixels: int) -> bytes:
    """A JPEG at most ``size`` pixels on its longer side, EXIF orientation applied.

    Raises:
        NotServable: not a decodable image, or larger than ``max_pixels`` (a decompression
            bomb is refused from its header, before decoding).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise NotServable(f"image of {width}x{height} pixels is over the limit")
            image.draft("RGB", (size, size))  # JPEG: decode at reduced scale, much faster
            small = ImageOps.exif_transpose(image).convert("RGB")
            small.thumbnail((size, size))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise NotServable(f"not a readable image: {exc}") from exc
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=80)
    return out.getvalue()


@lru_cache(maxsize=1024)
def cached_thumbnail(
    image_uri: str, size: int, *, max_pixels: int, gcs_endpoint: str | None = None
) -> bytes:
    """:func:`thumbnail` of a stored image; cached (store images are content-addressed)."""
    try:
        data = storage.read_bytes(image_uri, gcs_endpoint=gcs_endpoint)
    except FileNotFoundError as exc:
        raise NotServable(f"image {image_uri} is missing from the store") from exc
    return thumbnail(data, size, max_pixels=max_pixels)
