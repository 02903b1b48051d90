"""Local folders walked without following links: a landing folder's listing and its moves.

Anyone who may write to a landing folder may also put links there: a link named ``failed``
would make a move into ``failed/`` write wherever it points (a ``.pth`` file into
site-packages is code execution), and a looping or dangling link makes ``stat`` raise. So
below a root (the landing zone; the root itself may be a link an operator made), every folder
is opened through a directory descriptor with ``O_NOFOLLOW | O_DIRECTORY``, each file is
named relative to its folder's descriptor (``dir_fd=``), and a link where a folder was
expected is refused (:class:`UnsafePathError`) before anything is moved or written. A listing
reports every entry's kind from ``lstat``: it never follows a link, never opens a FIFO.
:mod:`fnd_core.io.storage` uses this for every local listing, move and side-note, so every
landing folder (posts today, label files tomorrow) follows the same rules.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW_DIR = _DIR_FLAGS | os.O_NOFOLLOW
_KINDS = (
    (stat.S_ISREG, "file"),
    (stat.S_ISDIR, "folder"),
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "device"),
    (stat.S_ISBLK, "device"),
)


class UnsafePathError(OSError):
    """A link (or a file) where a folder was expected below the root: nothing was moved."""


def kind_of(mode: int) -> str:
    """``file``, ``folder``, ``symlink``, ``fifo``, ``socket``, ``device`` or ``other``."""
    return next((name for test, name in _KINDS if test(mode)), "other")


def entry_kind(path: str) -> str:
    """The kind of ``path`` itself (a link is ``symlink``, whatever it points at)."""
    return kind_of(os.lstat(path).st_mode)


def relative_parts(path: str, root: str) -> list[str]:
    """``path``'s components below ``root``, compared as written; outside it: ValueError."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    parts = [] if rel == "." else rel.split(os.sep)
    if parts and parts[0] == os.pardir:
        raise ValueError(f"{path!r} is not inside {root!r}")
    return parts


@contextlib.contextmanager
def open_folder(root: str, parts: list[str], *, create: bool = False) -> Iterator[int]:
    """A descriptor of ``root/parts...``: the root opened as given, each part never followed.

    Args:
        create: make missing parts (as folders) on the way.

    Raises:
        UnsafePathError: a part is a link or not a folder.
    """
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            if part in ("", os.curdir, os.pardir):
                raise UnsafePathError(errno.EINVAL, f"path component {part!r} below {root!r}")
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
            try:
                inner = os.open(part, _NOFOLLOW_DIR, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise
                raise UnsafePathError(
                    exc.errno,
                    f"{part!r} in {root!r} is a symbolic link or not a folder: refused "
                    "(links below the landing root are never followed), nothing moved",
                ) from exc
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


def list_entries(folder: str) -> list[tuple[str, str]]:
    """(name, kind) of every entry of ``folder`` but hidden ones (``.*``) and sub-folders.

    Kinds come from ``lstat``: a link is listed as ``symlink`` whatever it points at (a loop,
    nothing, a file, a folder elsewhere), a FIFO as ``fifo``; none is opened. One link is a
    sub-folder, not an entry: one to a folder inside ``folder`` (an ``images`` link to the
    pictures beside it, which image references may use). A missing folder lists empty.
    """
    try:
        fd = os.open(folder, _DIR_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return []
    try:
        found = []
        for name in os.listdir(fd):
            if name.startswith("."):
                continue
            try:
                kind = kind_of(os.lstat(name, dir_fd=fd).st_mode)
            except FileNotFoundError:  # gone since the listing
                continue
            if kind == "symlink" and _folder_inside(folder, name):
                kind = "folder"
            if kind != "folder":
                found.append((name, kind))
        return sorted(found)
    finally:
        os.close(fd)


def _folder_inside(folder: str, name: str) -> bool:
    """Whether the link ``folder/name`` leads to a folder inside ``folder`` (resolved, not
    opened; a loop or a dangling link is not one)."""
    root = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(folder, name))
    inside = target != root and os.path.commonpath([target, root]) == root
    return inside and os.path.isdir(target)


def move(src: str, dst: str, root: str) -> None:
    """Move the entry ``src`` (a link moves as the link) to ``dst``, both below ``root``.

    Never replaces an existing ``dst`` (a hard link is made, then ``src`` unlinked; where the
    file system refuses hard links, a rename after checking ``dst`` is free); folders on the
    way to ``dst`` are created; no link below ``root`` is followed.

    Raises:
        UnsafePathError: a folder on either path is a link.
        FileExistsError: ``dst`` exists.
    """
    *src_dir, src_name = relative_parts(src, root)
    *dst_dir, dst_name = relative_parts(dst, root)
    with open_folder(root, src_dir) as sfd, open_folder(root, dst_dir, create=True) as dfd:
        try:
            os.link(src_name, dst_name, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
        except FileExistsError as exc:
            raise FileExistsError(f"refusing to overwrite {dst} (moving {src})") from exc
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EMLINK):
                raise
            _rename_if_free(src_name, dst_name, sfd, dfd, dst)
            return
        os.unlink(src_name, dir_fd=sfd)


def _rename_if_free(src_name: str, dst_name: str, sfd: int, dfd: int, dst: str) -> None:
    try:
        os.lstat(dst_name, dir_fd=dfd)
    except FileNotFoundError:
        os.rename(src_name, dst_name, src_dir_fd=sfd, dst_dir_fd=dfd)
        return
    raise FileExistsError(f"refusing to overwrite {dst}")


def write_new(path: str, data: bytes, root: str) -> None:
    """Create ``path`` (below ``root``, never existing before) holding ``data``; no link is
    followed, on the way or at the end."""
    *folder, name = relative_parts(path, root)
    with open_folder(root, folder, create=True) as dfd:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o644, dir_fd=dfd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def open_regular(path: str) -> BinaryIO:
    """``path`` opened for binary reads if it is a regular file itself (not a link, FIFO or
    device: checked on the open descriptor, so nothing can be swapped in between)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafePathError(errno.EINVAL, f"{path!r} is a {kind_of(mode)}, not a file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
