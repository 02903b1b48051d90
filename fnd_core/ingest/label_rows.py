"""Label row checks: one raw row of a label file in, an accepted label or a rejected row out.

A fact-checker's label names a post by id and says real or fake; optionally who said it
(``source``) and when (``labelled_at``). The fields share the post rows' parsers (the same id
and label conventions, :mod:`~fnd_core.ingest.field_parsers`); ``source`` is a short name
(it decides trust, :data:`SOURCE_PATTERN`), and ``labelled_at`` cannot lie more than a day
in the future of its receipt. A post id may appear once per file: two verdicts on one post in
one file are a contradiction the file must resolve, not fnd.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

from fnd_core.ingest.field_parsers import (
    InvalidField,
    parse_created_utc,
    parse_label,
    parse_post_id,
    quoted,
)
from fnd_core.ingest.raw_rows import RawRow
from fnd_core.ingest.rows import RejectedRow
from fnd_core.io.imaging import RuleViolation

log = logging.getLogger(__name__)

SOURCE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,63}")  # as fnd.labels checks it
LABEL_FILE_SOURCE = "label_file"  # a label file's row without a source
POST_FILE_SOURCE = "post_file"  # a label that came inside a post row
FUTURE_SLACK = dt.timedelta(days=1)  # clocks differ; a labelled_at further ahead is a mistake


@dataclass(frozen=True)
class AcceptedLabel:
    """A label row that passed every check."""

    row_number: int
    post_id: str
    label: int
    source: str
    labelled_at: dt.datetime | None


def check_label_rows(
    rows: list[RawRow], seen: dict[str, int], received_at: dt.datetime
) -> list[AcceptedLabel | RejectedRow]:
    """Each row's verdict; ``seen`` (post id -> first row) spans the whole file."""
    return [check_label_row(raw, seen, received_at) for raw in rows]


def check_label_row(
    raw: RawRow, seen: dict[str, int], received_at: dt.datetime
) -> AcceptedLabel | RejectedRow:
    fields = raw.fields or {}
    if raw.error:
        return RejectedRow(raw.row_number, raw.raw, raw.error_rule or "parse_error", raw.error,
                           _readable_id(fields.get("post_id")))  # fmt: skip
    post_id = None
    try:
        post_id = parse_post_id(fields.get("post_id"))
        first = seen.setdefault(post_id, raw.row_number)
        if first != raw.row_number:
            raise InvalidField(
                "id_duplicate_in_file",
                f"post_id {quoted(post_id)} already labelled by row {first} of this file; "
                "one label per post per file",
            )
        label = parse_label(fields.get("label"))
        if label is None:
            raise InvalidField("label_missing", "no label: a label row needs 0, 1, real or fake")
        return AcceptedLabel(
            row_number=raw.row_number,
            post_id=post_id,
            label=label,
            source=parse_source(fields.get("source")),
            labelled_at=parse_labelled_at(fields.get("labelled_at"), received_at),
        )
    except RuleViolation as exc:
        return RejectedRow(raw.row_number, raw.raw, exc.rule, exc.reason, post_id)
    except Exception as exc:  # noqa: BLE001 — one row no check foresaw never sinks the file
        log.warning("row %d: unexpected %s while checking it", raw.row_number, type(exc).__name__)
        reason = f"the row could not be checked ({type(exc).__name__})"
        return RejectedRow(raw.row_number, raw.raw, "row_unreadable", reason, post_id)


def parse_source(value: Any) -> str:
    """Who labelled: a short name (letters, digits, ``_ . : @ / -``); absent -> label_file."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return LABEL_FILE_SOURCE
    if not isinstance(value, str) or not SOURCE_PATTERN.fullmatch(value.strip()):
        raise InvalidField(
            "source_invalid",
            f"source {quoted(value)} must be a name of 1-64 letters, digits or _ . : @ / - "
            "(starting with a letter or digit)",
        )
    return value.strip()


def parse_labelled_at(value: Any, received_at: dt.datetime) -> dt.datetime | None:
    """When the labeller says the label was given (unix seconds or ISO 8601), as sent."""
    try:
        moment = parse_created_utc(value)
    except InvalidField as exc:
        raise InvalidField("labelled_at_invalid",
                           exc.reason.replace("created_utc", "labelled_at")) from exc  # fmt: skip
    if moment is not None and moment > received_at + FUTURE_SLACK:
        raise InvalidField(
            "labelled_at_in_future",
            f"labelled_at {moment.isoformat()} is later than the label's receipt "
            f"({received_at.isoformat()}) by more than a day",
        )
    return moment


def _readable_id(value: Any) -> str | None:
    try:
        return parse_post_id(value)
    except InvalidField:
        return None
