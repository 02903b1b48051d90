"""Row checks: one raw landing row in, an accepted post or a rejected row (rule + reason) out.

Every rule has a stable code (``RejectedRow.rule``) and a reason that says what was wrong, the
offending value (cut short) and what is allowed. Checks run cheapest first; the image — read,
decoded, hashed and stored — comes last, so a row with a bad id or text costs no image work.

Conventions:
- text is trimmed of surrounding whitespace and otherwise kept byte-exact (no Unicode
  normalisation); NUL bytes and invalid UTF-8 are refused (Postgres ``text`` cannot hold them).
- created_utc: unix seconds (int, float or numeric string) or ISO 8601; a naive ISO time is
  taken as UTC; absent or empty -> ``None``.
- label: 0 / 1, "0" / "1", "real" / "fake" in any case; absent or empty -> ``None``.
- an id is claimed by the first readable row of the file that carries it; later rows with the
  same id are ``id_duplicate_in_file``, whatever became of the first.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fnd_core.ingest.images import (
    DEFAULT_MAX_IMAGE_BYTES,
    ImageStore,
    RemoteImages,
    StoredImage,
    ingest_image,
)
from fnd_core.ingest.images import resolve_image_ref as _resolve
from fnd_core.ingest.readers import LandingFile, RawRow
from fnd_core.io.imaging import ImageRejected, RuleViolation

log = logging.getLogger(__name__)

MAX_ID_CHARS = 256
_SHOWN_CHARS = 60  # offending values are quoted up to this many characters
_UNIX_RANGE = (0, 4_102_444_800)  # 1970-01-01 .. 2100-01-01: anything else is a mistake
_NUMERIC = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL and lone surrogates
_LABELS = {"0": 0, "1": 1, "real": 0, "fake": 1}


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
        gcs_endpoint: GCS endpoint override for reading landing images (emulator).
        remote: the ``http(s)`` image hosts that may be fetched from (none by default).
        seen_ids: post ids already claimed in this file -> the row that claimed them.
        images: resolved image URI -> its outcome, so an image used twice is checked once.
    """

    folder: str
    source: str
    store: ImageStore
    max_text_chars: int = 5000
    max_image_pixels: int = 40_000_000
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    gcs_endpoint: str | None = None
    remote: RemoteImages = field(default_factory=RemoteImages)
    seen_ids: dict[str, int] = field(default_factory=dict)
    images: dict[str, StoredImage | ImageRejected] = field(default_factory=dict)

    @classmethod
    def for_file(cls, landing: LandingFile, store: ImageStore, **limits: Any) -> RowContext:
        """A fresh context for one landing file (limits: max_text_chars, max_image_pixels...)."""
        return cls(folder=landing.folder, source=landing.source, store=store, **limits)


class InvalidField(RuleViolation):
    """A field that breaks a rule (same shape as an image rejection, kept apart from it)."""


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
    max_text_chars: int = 5000,
    max_image_pixels: int = 40_000_000,
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
                f"id {_show(post_id)} already used by row {first} of this file; ids must be unique",
            )
        return _Checked(
            raw=raw,
            post_id=post_id,
            text=parse_text(fields.get("text"), ctx.max_text_chars),
            created_at=parse_created_utc(fields.get("created_utc")),
            label=parse_label(fields.get("label")),
            extra=parse_extra(fields.get("extra") or {}),
            image_uri=_image_uri(fields.get("image"), ctx.folder, ctx.remote.hosts),
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


# Field parsers (public: the GX suites and tests use the same conventions) -----------------
def parse_post_id(value: Any) -> str:
    """A post id as text: a non-blank string (trimmed) or an integer."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidField("id_missing", "no id: every row needs a non-empty id")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidField("id_invalid", f"id must be a string or integer, got {_show(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidField("id_invalid", f"id must be a string or integer, got {value!r}")
        value = int(value)
    post_id = str(value).strip()
    if _UNSTORABLE.search(post_id):
        raise InvalidField(
            "id_invalid", f"id {_show(post_id)} contains a NUL byte or invalid UTF-8"
        )
    if len(post_id) > MAX_ID_CHARS:
        raise InvalidField(
            "id_invalid", f"id has {len(post_id):,} characters; at most {MAX_ID_CHARS} allowed"
        )
    return post_id


def parse_text(value: Any, max_chars: int) -> str:
    """The post text, trimmed of surrounding whitespace and otherwise untouched."""
    if value is None:
        raise InvalidField("text_missing", "no text: a 'text' (or 'title') field is required")
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidField("text_invalid_utf8", f"text is not valid UTF-8: {exc}") from exc
    if not isinstance(value, str):
        raise InvalidField("text_not_string", f"text must be a string, got {_show(value)}")
    text = value.strip()
    if not text:
        raise InvalidField("text_empty", f"text is empty or only whitespace ({_show(value)})")
    if "\x00" in text:
        raise InvalidField(
            "text_nul_byte", f"text contains a NUL byte at character {text.index(chr(0))}"
        )
    bad = _UNSTORABLE.search(text)
    if bad:
        raise InvalidField(
            "text_invalid_utf8",
            f"text holds a lone surrogate (invalid UTF-8) at character {bad.start()}",
        )
    if len(text) > max_chars:
        raise InvalidField(
            "text_too_long",
            f"text has {len(text):,} characters; at most {max_chars:,} allowed "
            f"(it starts {_show(text[:40])})",
        )
    return text


def parse_created_utc(value: Any) -> dt.datetime | None:
    """Unix seconds or ISO 8601 -> an aware UTC datetime; absent or empty -> None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dt.datetime):
        return _as_utc(value)
    if isinstance(value, str):
        text = value.strip()
        if _NUMERIC.fullmatch(text):
            return _from_unix(float(text), value)
        try:
            return _as_utc(dt.datetime.fromisoformat(text))
        except ValueError:
            pass
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_unix(float(value), value)
    raise InvalidField(
        "created_utc_invalid",
        f"created_utc {_show(value)} is neither unix seconds nor an ISO 8601 time "
        "(e.g. 1704067200 or 2024-01-01T00:00:00Z)",
    )


def _from_unix(seconds: float, shown: Any) -> dt.datetime:
    low, high = _UNIX_RANGE
    if not (math.isfinite(seconds) and low <= seconds < high):
        hint = " (milliseconds? use seconds)" if math.isfinite(seconds) and seconds >= high else ""
        raise InvalidField(
            "created_utc_invalid",
            f"created_utc {_show(shown)} is outside 1970..2100 as unix seconds{hint}",
        )
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def _as_utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def parse_label(value: Any) -> int | None:
    """0 / 1 / "real" / "fake" (any case) -> 0 real, 1 fake; absent or empty -> None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in _LABELS:
        return _LABELS[value.strip().lower()]
    raise InvalidField(
        "label_invalid",
        f"label {_show(value)} is not one of 0, 1, 'real', 'fake' (any case) or empty",
    )


MAX_EXTRA_DEPTH = 32  # lists and objects nested in an extra field, at most


def parse_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """Source-specific fields made JSON-safe for ``posts.extra`` (jsonb)."""
    return {str(k): _json_safe(k, v) for k, v in extra.items()}


def _json_safe(key: Any, value: Any, depth: int = 0) -> Any:
    if depth > MAX_EXTRA_DEPTH:
        raise InvalidField(
            "extra_invalid",
            f"field {_show(key)} nests lists or objects more than {MAX_EXTRA_DEPTH} deep",
        )
    if isinstance(value, str):
        if _UNSTORABLE.search(value) or _UNSTORABLE.search(str(key)):
            raise InvalidField(
                "extra_invalid", f"field {_show(key)} contains a NUL byte or invalid UTF-8"
            )
        return value
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(k, v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(key, v, depth + 1) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _image_uri(value: Any, folder: str, remote_hosts: frozenset[str]) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidField(
            "image_missing", "no image reference: an 'image' path or URI is required"
        )
    if not isinstance(value, str) or _UNSTORABLE.search(value):
        raise InvalidField(
            "image_ref_invalid", f"image reference {_show(value)} is not a path or URI"
        )
    return _resolve(value.strip(), folder, remote_hosts)


def _readable_id(value: Any) -> str | None:
    """The row's id for the quarantine record, when it has a usable one."""
    try:
        return parse_post_id(value)
    except InvalidField:
        return None


def _show(value: Any) -> str:
    """A value quoted for a reason, cut to a readable length."""
    text = repr(value)
    if len(text) <= _SHOWN_CHARS:
        return text
    return f"{text[:_SHOWN_CHARS]}... ({len(text):,} chars)"
