"""The GX ``posts`` suite over a landing file: the frame it reads, and the call that runs it.

The suite sees every row read, accepted or quarantined, in a few small columns (``text`` cut
short, ``text_length`` beside it) so that the frame of a big file stays small. Building that
frame from the row checks' verdicts is its own job, apart from loading the rows
(:mod:`~fnd_core.ingest.staging`) and from running a suite in general
(:mod:`~fnd_core.ingest.quality`); pandas and GX are imported only when it is done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fnd_core.io import storage
from fnd_core.resources import EXPECTATIONS_DIR

if TYPE_CHECKING:
    import pandas as pd

    from fnd_core.ingest.readers import LandingFile, RawRow
    from fnd_core.ingest.rows import AcceptedPost, RejectedRow
    from fnd_core.settings import Settings

FRAME_COLUMNS = ("post_id", "text", "text_length", "image_ok", "image_pixels", "created_at",
                 "label", "label_raw")  # fmt: skip
_FRAME_TEXT_CHARS = 256  # the suite checks text for presence; its length has its own column


def validate_posts(landing: LandingFile, frame: pd.DataFrame, settings: Settings) -> dict[str, Any]:
    """Run the GX ``posts`` suite over every row of the file (accepted and rejected)."""
    from fnd_core.ingest.quality import posts_parameters, validate_frame

    summary = validate_frame(
        frame,
        "posts",
        expectations_dir=EXPECTATIONS_DIR,
        data_docs_dir=settings.data_docs,
        batch_name=f"{storage.printable(storage.basename(landing.uri))}-{landing.content_sha256[:8]}",
        parameters=posts_parameters(settings),
        publish_to=settings.data_docs_uri,
    )
    return summary.to_json()


def posts_frame(rows: list[RawRow], results: list[AcceptedPost | RejectedRow]) -> pd.DataFrame:
    """One row per row read, in the columns the ``posts`` suite expects.

    Texts are cut to a few hundred characters: the suite only asks whether a text is there
    (``text_length`` holds the full length), and the frame stays small for big files.
    """
    import pandas as pd

    from fnd_core.ingest.rows import AcceptedPost

    records = []
    for raw, verdict in zip(rows, results, strict=True):
        fields = raw.fields or {}
        ok = verdict if isinstance(verdict, AcceptedPost) else None
        text = ok.text if ok else _printable(fields.get("text"))
        label_raw = _cut(_printable(fields.get("label")))
        records.append(
            (
                ok.post_id if ok else _cut(_printable(_as_str(fields.get("id")))),
                text[:_FRAME_TEXT_CHARS] if isinstance(text, str) else None,
                len(text) if isinstance(text, str) else None,
                isinstance(verdict, AcceptedPost) or not verdict.rule.startswith("image"),
                ok.image_width * ok.image_height if ok else None,
                ok.created_at if ok else None,
                ok.label if ok else _label_or_none(label_raw),
                None if label_raw is None else _cut(str(label_raw)),
            )
        )
    frame = pd.DataFrame.from_records(records, columns=list(FRAME_COLUMNS))
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True, errors="coerce")
    for column in ("label", "text_length", "image_pixels"):
        frame[column] = frame[column].astype("Int64")
    return frame


def concat_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The chunks' frames as one (an empty file: an empty frame with the suite's columns)."""
    import pandas as pd

    return pd.concat(frames, ignore_index=True) if frames else posts_frame([], [])


def _printable(value: Any) -> Any:
    """Strings of rejected rows may hold undecodable bytes (surrogates): escape them for GX."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _cut(value: Any) -> Any:
    """A rejected row's string cut short: the frame holds a few small columns per row, never
    what a row of the file held (an id of megabytes)."""
    return value[:_FRAME_TEXT_CHARS] if isinstance(value, str) else value


def _as_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _label_or_none(value: Any) -> int | None:
    """The row checks' label parser; an invalid label is None here (GX sees ``label_raw``)."""
    from fnd_core.ingest.rows import InvalidField, parse_label

    try:
        return parse_label(value)
    except InvalidField:
        return None
