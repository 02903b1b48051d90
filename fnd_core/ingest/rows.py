"""Row checks: one raw landing row in, an accepted post or a rejected row (rule + reason) out.

Every rule has a stable code (``RejectedRow.rule``) and a reason that says what was wrong, the
offending value (cut short) and what is allowed. Checks run cheapest first; the image — read,
decoded, hashed and stored — comes last, so a row with a bad id or text costs no image work.
Each field's own rule and conventions (text, created_utc, label, extra, the image reference)
are in :mod:`~fnd_core.ingest.field_parsers`; this module runs them in order over a file's
rows and remembers what a file has used so far:

- an id is claimed by the first readable row of the file that carries it; later rows with the
  same id are ``id_duplicate_in_file``, whatever became of the first.
- an image used by several rows is read, checked and stored once.
"""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fnd_core.ingest.field_parsers import (
    InvalidField,
    parse_created_utc,
    parse_extra,
    parse_image_ref,
    parse_label,
    parse_post_id,
    parse_text,
    quoted,
)
from fnd_core.ingest.images import (
    DEFAULT_MAX_IMAGE_BYTES,
    ImageStore,
    RemoteImages,
    StoredImage,
    ingest_image,
)
from fnd_core.ingest.readers import LandingFile, RawRow
from fnd_core.io.imaging import ImageRejected, RuleViolation
from fnd_core.settings import default

__all__ = [
    "AcceptedPost",
    "CheckedFile",
    "InvalidField",
    "RejectedRow",
    "RowContext",
    "check_file",
    "check_row",
    "check_rows",
    "parse_created_utc",
    "parse_extra",
    "parse_label",
    "parse_post_id",
    "parse_text",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AcceptedPost:
    """A row that passed every check, its image already in the store."""

    row_number: int
    post_id: str
    source: str
    text: str
    image_uri: str
    image_sha256: str
    image_width: int
    image_height: int
    created_at: dt.datetime | None
    label: int | None
    extra: dict[str, Any]
    image_phashes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class RejectedRow:
    """A row for the quarantine: verbatim ``raw``, the ``rule`` it broke and a ``reason``."""

    row_number: int
    raw: str
    rule: str
    reason: str
    post_id: str | None = None


@dataclass
class RowContext:
    """What checking a file's rows needs, and what it remembers between rows.

    Attributes:
        folder: the data file's folder (relative image paths are resolved against it).
        source: ``posts.source`` for the file's posts (``<format>:<file name>``).
        store: where accepted images are copied.
        max_text_chars: longest accepted text, in characters.
        max_image_pixels: largest accepted image (width x height).
        max_image_bytes: largest image file read (bytes); larger ones are refused unread.
        max_image_decoded_bytes: largest decoded picture (bytes in memory), from its header.
        gcs_endpoint: GCS endpoint override for reading landing images (emulator).
        remote: the ``http(s)`` image hosts that may be fetched from (none by default).
        picture_hashes: compute each picture's perceptual hashes (``FND_PICTURE_EVIDENCE``).
        seen_ids: post ids already claimed in this file -> the row that claimed them.
        images: resolved image URI -> its outcome, so an image used twice is checked once.
    """

    folder: str
    source: str
    store: ImageStore
    max_text_chars: int = default("max_text_chars")
    max_image_pixels: int = default("max_image_pixels")
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_image_decoded_bytes: int = default("max_image_decoded_bytes")
    gcs_endpoint: str | None = None
    remote: RemoteImages = field(default_factory=RemoteImages)
    picture_hashes: bool = default("picture_evidence")
    seen_ids: dict[str, int] = field(default_factory=dict)
    images: dict[str, StoredImage | ImageRejected] = field(default_factory=dict)

    @classmethod
    def for_file(cls, landing: LandingFile, store: ImageStore, **limits: Any) -> RowContext:
        """A fresh context for one landing file (limits: max_text_chars, max_image_pixels...)."""
        return cls(folder=landing.folder, source=landing.source, store=store, **limits)


@dataclass(frozen=True)
class _Checked:
    """A row whose fields passed; only its image is left to check."""

    raw: RawRow
    post_id: str
    text: str
    created_at: dt.datetime | None
    label: int | None
    extra: dict[str, Any]
    image_uri: str


def check_row(raw: RawRow, ctx: RowContext) -> AcceptedPost | RejectedRow:
    """Check one row; accepted rows have their image stored. Updates ``ctx`` (ids, images)."""
    checked = _check_fields(raw, ctx)
    if isinstance(checked, RejectedRow):
        return checked
    return _finish(checked, _image_outcome(checked.image_uri, ctx), ctx.source)


def check_rows(
    rows: list[RawRow], ctx: RowContext, *, workers: int = 1
) -> list[AcceptedPost | RejectedRow]:
    """Check rows in order; with ``workers`` > 1, images are read and decoded in threads.

    Field checks (and id claims) stay sequential, so the outcome is the same for any
    ``workers``; Pillow and the storage reads release the GIL, so threads overlap them.
    """
    fields_done = [_check_fields(raw, ctx) for raw in rows]
    pending = list(dict.fromkeys(c.image_uri for c in fields_done if isinstance(c, _Checked)))
    todo = [uri for uri in pending if uri not in ctx.images]
    if workers > 1 and len(todo) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda uri: _image_outcome(uri, ctx), todo))  # fills ctx.images
    return [
        c
        if isinstance(c, RejectedRow)
        else _finish(c, _image_outcome(c.image_uri, ctx), ctx.source)
        for c in fields_done
    ]


@dataclass(frozen=True)
class CheckedFile:
    """A landing file's verdicts; ``n_received == len(accepted) + len(rejected)``."""

    accepted: list[AcceptedPost]
    rejected: list[RejectedRow]

    @property
    def n_received(self) -> int:
        return len(self.accepted) + len(self.rejected)


def check_file(
    landing: LandingFile,
    store: ImageStore,
    *,
    max_text_chars: int = default("max_text_chars"),
    max_image_pixels: int = default("max_image_pixels"),
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    gcs_endpoint: str | None = None,
    workers: int = 1,
) -> CheckedFile:
    """Check every row of a read landing file (accepted images land in ``store``)."""
    ctx = RowContext.for_file(
        landing,
        store,
        max_text_chars=max_text_chars,
        max_image_pixels=max_image_pixels,
        max_image_bytes=max_image_bytes,
        gcs_endpoint=gcs_endpoint,
    )
    results = check_rows(landing.rows, ctx, workers=workers)  # small files: held whole
    return CheckedFile(
        accepted=[r for r in results if isinstance(r, AcceptedPost)],
        rejected=[r for r in results if isinstance(r, RejectedRow)],
    )


def _check_fields(raw: RawRow, ctx: RowContext) -> _Checked | RejectedRow:
    fields = raw.fields or {}
    if raw.error:
        rule = raw.error_rule or "parse_error"
        return RejectedRow(raw.row_number, raw.raw, rule, raw.error, _readable_id(fields.get("id")))
    post_id = None
    try:
        post_id = parse_post_id(fields.get("id"))
        first = ctx.seen_ids.setdefault(post_id, raw.row_number)
        if first != raw.row_number:
            raise InvalidField(
                "id_duplicate_in_file",
                f"id {quoted(post_id)} already used by row {first} of this file; "
                "ids must be unique",
            )
        return _Checked(
            raw=raw,
            post_id=post_id,
            text=parse_text(fields.get("text"), ctx.max_text_chars),
            created_at=parse_created_utc(fields.get("created_utc")),
            label=parse_label(fields.get("label")),
            extra=parse_extra(fields.get("extra") or {}),
            image_uri=parse_image_ref(fields.get("image"), ctx.folder, ctx.remote.hosts),
        )
    except RuleViolation as exc:  # a field, or an image reference refused before any read
        return RejectedRow(raw.row_number, raw.raw, exc.rule, exc.reason, post_id)
    except Exception as exc:  # noqa: BLE001 — one row no check foresaw never sinks the file
        log.warning("row %d: unexpected %s while checking it", raw.row_number, type(exc).__name__)
        reason = f"the row could not be checked ({type(exc).__name__})"
        return RejectedRow(raw.row_number, raw.raw, "row_unreadable", reason, post_id)


def _finish(
    c: _Checked, image: StoredImage | ImageRejected, source: str
) -> AcceptedPost | RejectedRow:
    row = c.raw
    if isinstance(image, ImageRejected):
        return RejectedRow(row.row_number, row.raw, image.rule, image.reason, c.post_id)
    return AcceptedPost(
        row_number=row.row_number,
        post_id=c.post_id,
        source=source,
        text=c.text,
        image_uri=image.uri,
        image_sha256=image.sha256,
        image_width=image.width,
        image_height=image.height,
        image_phashes=image.phashes,
        created_at=c.created_at,
        label=c.label,
        extra=c.extra,
    )


def _image_outcome(uri: str, ctx: RowContext) -> StoredImage | ImageRejected:
    """Check and store an image once per file; the outcome is remembered either way."""
    known = ctx.images.get(uri)
    if known is None:
        try:
            known = ingest_image(
                uri,
                ctx.store,
                max_pixels=ctx.max_image_pixels,
                zone=ctx.folder,
                max_bytes=ctx.max_image_bytes,
                gcs_endpoint=ctx.gcs_endpoint,
                remote=ctx.remote,
                max_decoded_bytes=ctx.max_image_decoded_bytes,
                phash=ctx.picture_hashes,
            )
        except ImageRejected as exc:
            known = exc
        except Exception as exc:  # noqa: BLE001 — one bad image never fails the file
            log.warning("image %s: unexpected %s: %s", uri, type(exc).__name__, exc)
            known = ImageRejected(
                "image_unreadable", f"cannot read or decode image {uri}: {type(exc).__name__}"
            )
        ctx.images[uri] = known
    return known


def _readable_id(value: Any) -> str | None:
    """The row's id for the quarantine record, when it has a usable one."""
    try:
        return parse_post_id(value)
    except InvalidField:
        return None
