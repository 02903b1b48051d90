"""Image references at ingest (confined to the landing zone) and the content-addressed store.

An image is accepted once its bytes decode completely into an upright RGB picture of at most
``max_pixels`` whose decoded form fits ``max_decoded_bytes`` (:mod:`fnd_core.io.imaging`); its
original bytes are then stored once under ``<store>/images/<sha256>.<ext>`` (never
re-encoded), so later steps never read the landing zone and a meme shared by many posts is
stored, and can be encoded, once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from fnd_core.io import storage
from fnd_core.io.imaging import ImageRejected, inspect_image, sha256_hex
from fnd_core.settings import default


@dataclass(frozen=True)
class StoredImage:
    """An accepted image, in the store."""

    uri: str
    sha256: str
    width: int
    height: int
    format: str
    phashes: tuple[int, ...] | None = None  # perceptual hashes: whole picture, then centres


DEFAULT_MAX_IMAGE_BYTES: int = default("max_image_bytes")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_OUTSIDE = "image_outside_zone"


def resolve_image_ref(ref: str, folder: str, remote_hosts: frozenset[str] = frozenset()) -> str:
    """Where an image reference points, confined to ``folder``'s tree; nothing is opened.

    A reference is a path relative to the landing file's folder (``images/x.jpg``), or, in a
    ``gs://`` landing zone, a ``gs://`` URI under the landing file's own prefix. Refused with
    :class:`ImageRejected`: absolute paths, ``..`` escapes, ``file://`` and every other scheme,
    and ``http(s)`` URLs unless their host is in ``remote_hosts`` (``FND_REMOTE_IMAGE_HOSTS``;
    see :mod:`fnd_core.ingest.remote`). The reason never says whether a path outside the zone
    exists: nothing outside is looked at.
    """
    remote_root = not storage.is_local(folder)
    if _SCHEME.match(ref) or "://" in ref:
        scheme = ref.split(":", 1)[0].lower()
        if scheme in ("http", "https"):
            from fnd_core.ingest.remote import check_url

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
        from fnd_core.ingest.remote import fetch

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
    max_decoded_bytes: int = default("max_image_decoded_bytes"),
    phash: bool = True,
) -> StoredImage:
    """Read (confined to ``zone``, capped at ``max_bytes``), check and store one landing image;
    ``phash``: with its perceptual hashes (``FND_PICTURE_EVIDENCE``).

    Raises:
        ImageRejected: with the rule the image broke.
    """
    data = read_image_bytes(
        uri, zone=zone, max_bytes=max_bytes, gcs_endpoint=gcs_endpoint, remote=remote
    )
    info = inspect_image(data, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes,
                         phash=phash)  # fmt: skip
    digest = sha256_hex(data)
    stored_uri = store.put(data, sha256=digest, ext=info.ext)
    return StoredImage(
        uri=stored_uri, sha256=digest, width=info.width, height=info.height, format=info.format,
        phashes=info.phashes,
    )  # fmt: skip
