"""Field parsers: one raw field value in, its stored form out, or an :class:`InvalidField`.

Each parser is one field's rule with its stable code and a reason that says what was wrong,
the offending value (cut short) and what is allowed. They are kept apart from the row checks
of :mod:`~fnd_core.ingest.rows` (which run them in order, claim ids and store images) because
they are pure functions the GX suites and tests share: the same conventions everywhere.

Conventions:
- text is trimmed of surrounding whitespace and otherwise kept byte-exact (no Unicode
  normalisation); NUL bytes and invalid UTF-8 are refused (Postgres ``text`` cannot hold them).
- created_utc: unix seconds (int, float or numeric string) or ISO 8601; a naive ISO time is
  taken as UTC; absent or empty -> ``None``.
- label: 0 / 1, "0" / "1", "real" / "fake" in any case; absent or empty -> ``None``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from fnd_core.ingest.images import resolve_image_ref
from fnd_core.io.imaging import RuleViolation

MAX_ID_CHARS = 256
_SHOWN_CHARS = 60  # offending values are quoted up to this many characters
_UNIX_RANGE = (0, 4_102_444_800)  # 1970-01-01 .. 2100-01-01: anything else is a mistake
_NUMERIC = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL and lone surrogates
_LABELS = {"0": 0, "1": 1, "real": 0, "fake": 1}


class InvalidField(RuleViolation):
    """A field that breaks a rule (same shape as an image rejection, kept apart from it)."""


def parse_post_id(value: Any) -> str:
    """A post id as text: a non-blank string (trimmed) or an integer."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidField("id_missing", "no id: every row needs a non-empty id")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidField("id_invalid", f"id must be a string or integer, got {quoted(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidField("id_invalid", f"id must be a string or integer, got {value!r}")
        value = int(value)
    post_id = str(value).strip()
    if _UNSTORABLE.search(post_id):
        raise InvalidField(
            "id_invalid", f"id {quoted(post_id)} contains a NUL byte or invalid UTF-8"
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
        raise InvalidField("text_not_string", f"text must be a string, got {quoted(value)}")
    text = value.strip()
    if not text:
        raise InvalidField("text_empty", f"text is empty or only whitespace ({quoted(value)})")
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
            f"(it starts {quoted(text[:40])})",
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
        f"created_utc {quoted(value)} is neither unix seconds nor an ISO 8601 time "
        "(e.g. 1704067200 or 2024-01-01T00:00:00Z)",
    )


def _from_unix(seconds: float, shown: Any) -> dt.datetime:
    low, high = _UNIX_RANGE
    if not (math.isfinite(seconds) and low <= seconds < high):
        hint = " (milliseconds? use seconds)" if math.isfinite(seconds) and seconds >= high else ""
        raise InvalidField(
            "created_utc_invalid",
            f"created_utc {quoted(shown)} is outside 1970..2100 as unix seconds{hint}",
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
        f"label {quoted(value)} is not one of 0, 1, 'real', 'fake' (any case) or empty",
    )


MAX_EXTRA_DEPTH = 32  # lists and objects nested in an extra field, at most
_MAX_INT_BITS = 13_000  # ~3,900 digits: under Python's int-string limit (4,300) and jsonb's


def parse_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """Source-specific fields made JSON-safe for ``posts.extra`` (jsonb)."""
    return {str(k): _json_safe(k, v) for k, v in extra.items()}


def _json_safe(key: Any, value: Any, depth: int = 0) -> Any:
    if depth > MAX_EXTRA_DEPTH:
        raise InvalidField(
            "extra_invalid",
            f"field {quoted(key)} nests lists or objects more than {MAX_EXTRA_DEPTH} deep",
        )
    if _UNSTORABLE.search(str(key)) or (isinstance(value, str) and _UNSTORABLE.search(value)):
        raise InvalidField(  # Postgres cannot store NUL or a lone surrogate, in a key or value
            "extra_invalid", f"field {quoted(key)} contains a NUL byte or invalid UTF-8"
        )
    if isinstance(value, str):
        return value
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        raise InvalidField("extra_invalid", f"field {quoted(key)} holds an integer too long to "
                           f"store ({value.bit_length():,} bits)")  # fmt: skip
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


def parse_image_ref(value: Any, folder: str, remote_hosts: frozenset[str]) -> str:
    """The image reference resolved against the file's folder (refused before any read)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidField(
            "image_missing", "no image reference: an 'image' path or URI is required"
        )
    if not isinstance(value, str) or _UNSTORABLE.search(value):
        raise InvalidField(
            "image_ref_invalid", f"image reference {quoted(value)} is not a path or URI"
        )
    return resolve_image_ref(value.strip(), folder, remote_hosts)


def quoted(value: Any) -> str:
    """A value quoted for a reason, cut to a readable length."""
    text = repr(value)
    if len(text) <= _SHOWN_CHARS:
        return text
    return f"{text[:_SHOWN_CHARS]}... ({len(text):,} chars)"
