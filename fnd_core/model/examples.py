"""The record the trainer, the feature cache and the scorer consume: one post, in memory."""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class PostExample:
    """One post as the model sees it.

    Attributes:
        post_id: the source's id .
        text: the caption or title.
        image_uri: local path or fsspec URI (``gs://...``) of the image bytes.
        image_sha256: hex digest of the image bytes when known (ingest records it); the
            feature cache keys images by it, so a picture shared by many posts is encoded once.
        label: 0 real, 1 fake, ``None`` unlabelled.
        split: ``train``, ``val`` or ``test``: the role a training run gives the post.
        group: the landing file's optional ``group`` (a story id): posts of one group
            never straddle a train/test boundary.
        topic: the landing file's optional ``topic`` (else ``event``): the news event, which
            the gate's folds hold out whole (discovered when absent;
            :mod:`fnd_core.model.splits.topics`).
        created_at: when the post was made (seconds since the epoch), if known.
    """

    post_id: str
    text: str
    image_uri: str
    image_sha256: str | None = None
    label: int | None = None
    split: str = "train"
    group: str | None = None
    topic: str | None = None
    created_at: float | None = None

    def __post_init__(self) -> None:
        if not self.post_id:
            raise ValueError("PostExample.post_id must be a non-empty string")
        if self.label not in (None, 0, 1):
            raise ValueError(f"post {self.post_id}: label must be 0, 1 or None, got {self.label!r}")
        if self.split not in SPLITS:
            raise ValueError(
                f"post {self.post_id}: split must be one of {', '.join(SPLITS)}, got {self.split!r}"
            )
        if self.image_sha256 is not None and len(self.image_sha256) != 64:
            raise ValueError(
                f"post {self.post_id}: image_sha256 must be a 64-char hex digest, "
                f"got {self.image_sha256!r}"
            )
