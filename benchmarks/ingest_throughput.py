"""Ingest throughput: fnd's ingest vs the classic one-row-at-a-time loop, same posts, same run.

    python benchmarks/ingest_throughput.py [N_POSTS]   (default 10000)

fnd: read → row checks (images decoded once, JPEG draft mode, content-addressed store) →
Great Expectations suite + Data Docs → COPY into Postgres → archive; then again without the
pictures' perceptual hashes (``FND_PICTURE_EVIDENCE=false``), to show what they cost.
Baseline (what a competent user writes first): for each line, json.loads, open the image with
Pillow and convert it to RGB, sha256 it, copy it into the store, and INSERT the row (one
statement per row, one transaction).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from PIL import Image

from benchmarks.common import Timer, bench_database, bench_home, bench_settings, machine, table
from fnd_core.ingest.load import ingest_file
from fnd_core.io.db import make_engine
from fnd_core.stack.demo import generate_batch


def baseline(url: str, data_file: Path, store: Path) -> int:
    """One post at a time: parse, decode, hash, copy, INSERT."""
    engine = make_engine(url)
    (store / "images").mkdir(parents=True, exist_ok=True)
    n = 0
    with engine.begin() as conn:
        batch_id = conn.exec_driver_sql(
            "insert into fnd.ingest_batches (source_uri, content_sha256) values (%s, %s) "
            "returning batch_id",
            (str(data_file), hashlib.sha256(data_file.read_bytes()).hexdigest()),
        ).scalar_one()
        with data_file.open(encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                path = data_file.parent / row["image"]
                data = path.read_bytes()
                with Image.open(path) as image:
                    image.convert("RGB")
                sha = hashlib.sha256(data).hexdigest()
                target = store / "images" / f"{sha}.jpg"
                if not target.exists():
                    shutil.copyfile(path, target)
                conn.exec_driver_sql(
                    "insert into fnd.posts (post_id, source, text, image_uri, image_sha256, "
                    "label, batch_id) values (%s, 'baseline', %s, %s, %s, %s, %s) "
                    "on conflict do nothing",
                    (row["id"], row["text"].strip(), str(target), sha, row.get("label"),
                     batch_id),
                )  # fmt: skip
                n += 1
    engine.dispose()
    return n


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    n_posts = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    print(f"ingest benchmark: {n_posts} demo posts (JSONL + 224 px JPEGs) on {machine()}")
    with bench_home() as home, bench_database() as url_fnd, bench_database() as url_base:
        settings = bench_settings(home / "fnd", url_fnd)
        with Timer() as gen:
            batch = generate_batch(Path(settings.landing), n_posts, seed=42)
        n_images = len(list((Path(settings.landing) / "images").iterdir()))
        print(f"generated in {gen.seconds:.1f} s ({n_images} distinct images)")
        base_copy = home / "baseline" / "landing"
        shutil.copytree(Path(settings.landing), base_copy)

        engine = make_engine(url_fnd)
        ingest_file(engine, str(batch.data_file), settings)  # warm-up: imports GX once
        batch = generate_batch(Path(settings.landing), n_posts, seed=43)
        with Timer() as fnd:
            report = ingest_file(engine, str(batch.data_file), settings)
        assert report.n_accepted == n_posts, report
        plain = generate_batch(Path(settings.landing), n_posts, seed=44)
        with Timer() as unhashed:  # FND_PICTURE_EVIDENCE=false: no perceptual hashes
            ingest_file(engine, str(plain.data_file), replace(settings, picture_evidence=False))
        engine.dispose()

        with Timer() as base:
            n_base = baseline(url_base, base_copy / batch.data_file.name.replace("43", "42"),
                              home / "baseline" / "store")  # fmt: skip
        assert n_base == n_posts

    def row(name: str, seconds: float) -> tuple:
        speed_up = f"{base.seconds / seconds:.2f}x"
        return (name, f"{seconds:.1f}", f"{n_posts / seconds:.0f}", f"{n_images / seconds:.0f}",
                speed_up)  # fmt: skip

    rows = [
        row("fnd ingest (checks + GX + Data Docs + COPY)", fnd.seconds),
        row("fnd ingest, FND_PICTURE_EVIDENCE=false (no perceptual hashes)", unhashed.seconds),
        row("baseline: row-at-a-time loop", base.seconds),
    ]
    print(table(rows, ("path", "seconds", "rows/s", "images/s", "speed-up")))


if __name__ == "__main__":
    main()
