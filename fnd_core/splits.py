"""Stable train/val/test assignment: a pure function of post_id.

A post keeps its split forever, whatever else lands later, so a test post never leaks into
training and models trained on different days are compared on the same held-out posts.
Ingest stores the split in ``fnd.posts.split``; everything downstream reads it from there.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")
VAL_SHARE = 0.15
TEST_SHARE = 0.15


def split_for(post_id: str, *, val_share: float = VAL_SHARE, test_share: float = TEST_SHARE) -> str:
    """``train`` / ``val`` / ``test`` from the first 8 bytes of sha256(post_id): 70/15/15."""
    if val_share < 0 or test_share < 0 or val_share + test_share >= 1:
        raise ValueError(f"shares must be >= 0 and sum below 1, got {val_share}, {test_share}")
    bucket = int.from_bytes(hashlib.sha256(post_id.encode("utf-8")).digest()[:8], "big") / 2**64
    if bucket < test_share:
        return "test"
    return "val" if bucket < test_share + val_share else "train"
