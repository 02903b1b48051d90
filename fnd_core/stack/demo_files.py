"""Writing demo posts as a landing file: JSON lines, CSV, or Fakeddit's TSV layout.

Split from :mod:`fnd_core.stack.demo` (which draws and writes whole batches): one writer per
format, each a pure function of the posts (no clock, no global random state), so a batch is
byte-identical however often it is written.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from fnd_core.stack.demo_posts import DemoPost, pick, post_rng

FAKEDDIT_COLUMNS = (
    "author", "clean_title", "created_utc", "domain", "hasImage", "id", "image_url",
    "linked_submission_id", "num_comments", "score", "subreddit", "title", "upvote_ratio",
    "2_way_label", "3_way_label", "6_way_label",
)  # fmt: skip

_SUBREDDITS = ("pics", "mildlyinteresting", "news", "photoshopbattles", "nottheonion")


def _write_jsonl(out_dir: Path, seed: int, posts: list[DemoPost]) -> Path:
    path = out_dir / f"demo_s{seed}.jsonl"
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for post in posts:
            row: dict = {"id": post.post_id, "text": post.text, "image": _image_rel(post),
                         "created_utc": post.created_utc, "event": post.event}  # fmt: skip
            if post.label is not None:
                row["label"] = post.label
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _write_csv(out_dir: Path, seed: int, posts: list[DemoPost]) -> Path:
    path = out_dir / f"demo_s{seed}.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "text", "image", "created_utc", "event", "label"])
        for p in posts:
            label = "" if p.label is None else p.label
            writer.writerow([p.post_id, p.text, _image_rel(p), p.created_utc, p.event, label])
    return path


def _write_fakeddit(out_dir: Path, seed: int, posts: list[DemoPost]) -> Path:
    """Fakeddit's TSV layout; its 2_way_label is 1 = true, 0 = fake (the inverse of ours)."""
    path = out_dir / f"demo_s{seed}_multimodal.tsv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(FAKEDDIT_COLUMNS)
        for p in posts:
            writer.writerow(_fakeddit_row(p))
    return path


def _fakeddit_row(p: DemoPost) -> list:
    meta = post_rng(p.seed, p.index, "fakeddit")
    two: int | str
    three: int | str
    six: int | str
    if p.label is None:
        two, three, six = "", "", ""
    else:  # fake: 3-way 2 = "fake with false text", 6-way 4 = "false connection"
        two, three, six = (0, 2, 4) if p.label == 1 else (1, 0, 0)
    return [
        f"demo_user_{int(meta.integers(500)):03d}",
        re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", p.text.lower())).strip(),
        f"{p.created_utc}.0",
        "demo.fnd.invalid",
        "True",
        p.post_id,
        f"https://demo.fnd.invalid/{p.post_id}.jpg",
        "",
        int(meta.integers(300)),
        int(meta.integers(5000)),
        pick(meta, _SUBREDDITS),
        p.text,
        f"{meta.uniform(0.5, 1.0):.2f}",
        two,
        three,
        six,
    ]


def _image_rel(post: DemoPost) -> str:
    return f"images/{post.post_id}.jpg"


WRITERS = {"jsonl": _write_jsonl, "csv": _write_csv, "fakeddit": _write_fakeddit}
