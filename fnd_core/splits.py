"""Stable train/val/test assignment: a pure function of post_id.

A post keeps its split forever, whatever else lands later, so a test post never leaks into
training and models trained on different days are compared on the same held-out posts.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")
# Shares of train and val; test gets the rest.
TRAIN_SHARE = 0.70
VAL_SHARE = 0.15


def split_for(post_id: str) -> str:
    """``train`` / ``val`` / ``test`` from the first 8 bytes of sha256(post_id): 70/15/15."""
    digest = hashlib.sha256(post_id.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < TRAIN_SHARE:
        return "train"
    if u < TRAIN_SHARE + VAL_SHARE:
        return "val"
    return "test"
