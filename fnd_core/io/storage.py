"""Thin storage helpers: one small API for local folders and ``gs://bucket/prefix`` URIs.

Local paths (and ``file://`` URIs) use the OS directly: it is faster than fsspec, and a write
is atomic (temp file + rename). Any other URI goes through fsspec; ``gs://`` through gcsfs.

``gs://`` filesystems come from :func:`fnd_core.io.gcp.gcs_filesystem`, with the credentials of the
Airflow connection inside Airflow and Application Default Credentials elsewhere.

Why gcsfs is built by hand when ``gcs_endpoint`` is set (a local emulator): gcsfs's default
class (``ExtendedGcsFileSystem``, enabled unless ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false``)
asks the Storage Control API over gRPC for each bucket's layout before most calls. An emulator
speaks only the JSON API, the probe retries for 60 s, and its failure is not cached, so every
call stalls a minute. The plain ``gcsfs.core.GCSFileSystem`` makes no such probe. Against real
GCS (no endpoint) the default class is kept. Moves are copy + delete for the same reason:
gcsfs's ``mv`` first tries the ``moveTo`` API, which the emulator answers with 501 after ~35 s
of retries; on GCS a copy is a server-side rewrite, so nothing passes through this process.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from fnd_core.io import localfs

_FILE_SCHEME = "file://"


def is_local(uri: str) -> bool:
    """True for plain paths and ``file://`` URIs."""
    return uri.startswith(_FILE_SCHEME) or "://" not in uri


def local_path(uri: str) -> str:
    """The filesystem path of a local URI (``file:///a/b`` -> ``/a/b``)."""
    return uri[len(_FILE_SCHEME) :] if uri.startswith(_FILE_SCHEME) else uri


def is_within(path: str, root: str, *, resolve_links: bool = True) -> bool:
    """Whether ``path`` is ``root`` or lies under it: local paths compared after resolving
    links (unless ``resolve_links`` is off: then as written, normalised), URIs by prefix."""
    if is_local(path) != is_local(root):
        return False
    if is_local(path):
        norm = os.path.realpath if resolve_links else os.path.abspath
        path, root = norm(local_path(path)), norm(local_path(root))
        return os.path.commonpath([path, root]) == root
    path = path.rstrip("/").replace("gcs://", "gs://")
    root = root.rstrip("/").replace("gcs://", "gs://")
    return path == root or path.startswith(root + "/")


def join(base: str, *parts: str) -> str:
    """Join path segments under ``base`` with the separator its kind uses."""
    if is_local(base):
        return os.path.join(base, *parts)
    return posixpath.join(base.rstrip("/"), *(p.strip("/") for p in parts))


def parent(uri: str) -> str:
    """The folder holding ``uri``."""
    if is_local(uri):
        return os.path.dirname(uri.rstrip(os.sep)) or "."
    return uri.rstrip("/").rsplit("/", 1)[0]


def basename(uri: str) -> str:
    """The last segment of ``uri`` (a file name)."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def filesystem(uri: str, *, gcs_endpoint: str | None = None) -> tuple[Any, str]:
    """The fsspec filesystem for a remote ``uri`` and the path within it.

    Args:
        uri: a remote URI, e.g. ``gs://bucket/prefix/file.jsonl``.
        gcs_endpoint: GCS JSON API endpoint override (``http://127.0.0.1:9023``); with it,
            gcsfs's gRPC bucket-layout probe is avoided. Default: the process's (see
            :mod:`fnd_core.io.gcp`, which also says where the credentials come from).
    """
    protocol, _, path = uri.partition("://")
    if protocol in ("gs", "gcs"):
        from fnd_core.io import gcp

        return gcp.gcs_filesystem(gcs_endpoint), path
    import fsspec

    fs, fs_path = fsspec.core.url_to_fs(uri)
    return fs, fs_path


def read_bytes(uri: str, *, gcs_endpoint: str | None = None) -> bytes:
    """The whole content of a file; ``FileNotFoundError`` when there is none."""
    if is_local(uri):
        with open(local_path(uri), "rb") as f:
            return f.read()
    fs, path = filesystem(uri, gcs_endpoint=gcs_endpoint)
    return fs.cat_file(path)


@contextlib.contextmanager
def open_read(
    uri: str, *, gcs_endpoint: str | None = None, regular_only: bool = False
) -> Iterator[IO[bytes]]:
    """A file opened for streamed binary reads (GCS objects are fetched in blocks, not whole).

    ``regular_only``: a local ``uri`` must be a regular file itself, not a link, FIFO or
    device (checked on the opened descriptor: :func:`fnd_core.io.localfs.open_regular`).
    """
    if is_local(uri):
        opened = localfs.open_regular(local_path(uri)) if regular_only else None
        with opened or open(local_path(uri), "rb") as f:
            yield f
        return
    fs, path = filesystem(uri, gcs_endpoint=gcs_endpoint)
    with fs.open(path, "rb") as f:
        yield f


def write_bytes(uri: str, data: bytes, *, gcs_endpoint: str | None = None) -> None:
    """Write a whole file atomically: readers see the old state or the new file, never a part.

    Locally the bytes go to a hidden temp file in the same folder, then a rename; a GCS
    object only appears once its upload completes. Parent folders are created as needed.
    """
    if not is_local(uri):
        fs, path = filesystem(uri, gcs_endpoint=gcs_endpoint)
        fs.pipe_file(path, data)
        return
    path = local_path(uri)
    folder, name = os.path.split(path)
    folder = folder or "."
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    except FileNotFoundError:  # create the folder only when missing: one syscall less per file
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def exists(uri: str, *, gcs_endpoint: str | None = None) -> bool:
    """Whether a file (or, for a prefix, any object under it) exists."""
    if is_local(uri):
        return os.path.exists(local_path(uri))
    fs, path = filesystem(uri, gcs_endpoint=gcs_endpoint)
    return fs.exists(path)


def is_dir(uri: str, *, gcs_endpoint: str | None = None) -> bool:
    """Whether ``uri`` is a folder (on GCS: a prefix with objects under it)."""
    if is_local(uri):
        return os.path.isdir(local_path(uri))
    fs, path = filesystem(uri, gcs_endpoint=gcs_endpoint)
    return fs.isdir(path)


def list_files(
    prefix: str, *, gcs_endpoint: str | None = None, recursive: bool = False
) -> list[str]:
    """URIs of the files under ``prefix``, sorted; hidden names (``.*``) are skipped.

    Args:
        prefix: a folder (local or remote); a missing one lists as empty.
        recursive: include files in sub-folders. Off by default, so the landing zone's
            ``archive/`` and ``failed/`` folders are not listed with the new files.
    """
    if is_local(prefix):
        return _list_local(local_path(prefix), recursive)
    fs, path = filesystem(prefix, gcs_endpoint=gcs_endpoint)
    fs.invalidate_cache(path)  # a long-lived worker must see files landed since its last look
    if recursive:
        paths = fs.find(path)
    else:
        try:
            paths = [e["name"] for e in fs.ls(path, detail=True) if e["type"] == "file"]
        except FileNotFoundError:
            return []
    scheme = prefix.partition("://")[0]
    names = [p for p in paths if not basename(p).startswith(".")]
    return sorted(f"{scheme}://{p.lstrip('/')}" for p in names)


def list_entries(prefix: str, *, gcs_endpoint: str | None = None) -> list[tuple[str, str]]:
    """(URI, kind) of each entry directly in ``prefix`` but hidden ones and sub-folders.

    Locally the kind comes from ``lstat`` (:func:`fnd_core.io.localfs.list_entries`): links,
    FIFOs, sockets and devices are listed as such, never followed or opened. Objects of a
    remote store are all ``file``.
    """
    if is_local(prefix):
        folder = local_path(prefix)
        return [(join(prefix, name), kind) for name, kind in localfs.list_entries(folder)]
    return [(uri, "file") for uri in list_files(prefix, gcs_endpoint=gcs_endpoint)]


def printable(text: str) -> str:
    """``text`` as printable UTF-8: bytes of a file name that are not UTF-8 (held as
    surrogates) and control characters (a newline in a name) as ``\\xNN`` escapes, backslashes
    then doubled; text without such characters is returned as is."""
    if not _NEEDS_ESCAPE.search(text):
        return text
    return "".join(_ESCAPES.get(c) or _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, as os.fsdecode holds it
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if 0xD800 <= code <= 0xDFFF:  # any other lone surrogate: never from a file name
        return f"\\u{code:04x}"
    return char


_NEEDS_ESCAPE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_ESCAPES = {"\\": "\\\\"}


_ESCAPED = "fnd-escaped:"
_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2})")


def portable(uri: str) -> str:
    """``uri`` as text any JSON store keeps (an XCom): itself, or for a name holding bytes
    that are not UTF-8, ``fnd-escaped:`` + :func:`printable` (:func:`from_portable` inverts)."""
    shown = printable(uri)
    return uri if shown == uri else _ESCAPED + shown


def from_portable(text: str) -> str:
    """The URI :func:`portable` was given."""
    if not text.startswith(_ESCAPED):
        return text

    def byte(match: re.Match) -> str:
        code = match.group(1)
        if code == "\\":
            return "\\"
        value = int(code[1:], 16)
        return chr(value if value < 0x80 else 0xDC00 + value)

    return _ESCAPE.sub(byte, text[len(_ESCAPED) :])


def _list_local(folder: str, recursive: bool) -> list[str]:
    if not os.path.isdir(folder):
        return []
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        found.extend(os.path.join(root, f) for f in files if not f.startswith("."))
        if not recursive:
            break
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return sorted(found)


def move(
    src: str,
    dst: str,
    *,
    gcs_endpoint: str | None = None,
    overwrite: bool = False,
    root: str | None = None,
) -> str:
    """Move a file (e.g. into ``archive/`` or ``failed/``) and return its new URI.

    Refuses to replace an existing ``dst`` unless ``overwrite``: moved files are kept, never
    silently lost. Both ends must be of the same kind (local or the same remote store).
    Locally, without ``overwrite``, both ends must lie below ``root`` (default: ``src``'s
    folder) and no link below it is followed (:func:`fnd_core.io.localfs.move`): a link
    moves as the link, and a link where a folder should be is refused.
    """
    if is_local(src) != is_local(dst):
        raise ValueError(f"cannot move between a local path and a remote URI: {src} -> {dst}")
    if is_local(src) and not overwrite:
        base = local_path(root) if root else os.path.dirname(local_path(src))
        localfs.move(local_path(src), local_path(dst), base)
        return dst
    if not overwrite and exists(dst, gcs_endpoint=gcs_endpoint):
        raise FileExistsError(f"refusing to overwrite {dst} (moving {src})")
    if is_local(src):
        target = local_path(dst)
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        shutil.move(local_path(src), target)
        return dst
    fs, src_path = filesystem(src, gcs_endpoint=gcs_endpoint)
    _, dst_path = filesystem(dst, gcs_endpoint=gcs_endpoint)
    if not fs.isfile(src_path):
        raise FileNotFoundError(src)
    fs.copy(src_path, dst_path)
    fs.rm_file(src_path)
    return dst


def write_new(uri: str, data: bytes, *, root: str, gcs_endpoint: str | None = None) -> None:
    """Create a small file that must not exist yet (a note beside a moved file).

    Locally no link below ``root`` is followed, on the way or at the end
    (:func:`fnd_core.io.localfs.write_new`); a remote object is simply written.
    """
    if is_local(uri):
        localfs.write_new(local_path(uri), data, local_path(root))
        return
    write_bytes(uri, data, gcs_endpoint=gcs_endpoint)


def lexists(uri: str, *, gcs_endpoint: str | None = None) -> bool:
    """Whether an entry exists at ``uri`` itself (locally a link counts, even a broken one)."""
    if is_local(uri):
        return os.path.lexists(local_path(uri))
    return exists(uri, gcs_endpoint=gcs_endpoint)
