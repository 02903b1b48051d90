"""Scale-out figures: one vs two scoring workers here, and Postgres's write rate up to 1M rows.

Usage::

    python -m benchmarks.scale_out                          # 2,000 posts, offline preset, 1M rows
    python -m benchmarks.scale_out --posts 500 --write-rows 200000 --preset tiny
    python -m benchmarks.scale_out --skip-workers --write-rows 0 --image-dir DIR

(1) The same posts scored end to end (cold feature cache, every post rescored) by one worker
    process with all the cores' threads, then by two worker processes with one thread each —
    what two Celery workers on this machine do (each takes a shard). Interleaved, twice each.
    On 2 cores the second worker can only trade threads for processes: the honest figure for
    "add a worker" is on a second machine, where each worker brings its own cores.
(2) fnd's own write path for verdicts (``prediction_store.write_page``: COPY into a staging
    table, then ``insert … on conflict do nothing``, one transaction per page of 2,048) into
    ``fnd.predictions`` as it grows from 0 to ``--write-rows`` rows, rows/s per slice; then the
    same pages rewritten with ``rescore_all`` (``on conflict do update``) at full size. This is
    the ceiling of the scoring fleet's database side (docs/scaling.md).
(3) with ``--image-dir``: reading, decoding and resizing real pictures on one core, the part
    of scoring a GPU does not take off the CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.common import Timer, bench_database, bench_home, bench_settings, machine, table
from benchmarks.score_throughput import fnd_score, grow_to, train_champion
from fnd_core.ingest.staging import POST_COLUMNS
from fnd_core.io.db import make_engine
from fnd_core.io.pgcopy import copy_into
from fnd_core.pipeline import prediction_store, registry

PAGE = 2048


def workers_compared(posts: int, preset: str, rounds: int = 2) -> list[tuple]:
    with bench_database() as url, bench_home() as home:
        settings = bench_settings(home, url, model_preset=preset)
        engine = make_engine(url)
        grow_to(engine, settings, posts, 0, seed=3)
        train_champion(engine, settings, preset)
        results: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(rounds):
            for workers in (1, 2):
                n, seconds = fnd_score(
                    url, replace(settings, score_workers=workers), rescore_all=True, cold=True
                )
                results[workers].append(n / seconds)
                print(f"{workers} worker(s): {n} posts in {seconds:.1f} s ({n / seconds:.1f}/s)")
        engine.dispose()
    best = {w: max(r) for w, r in results.items()}
    return [(f"{w} worker{'s' if w > 1 else ''}", f"{best[w]:.1f}", f"{best[w] / best[1]:.2f}×")
            for w in (1, 2)]  # fmt: skip


def write_rate(total: int) -> list[tuple]:
    with bench_database() as url:
        engine = make_engine(url)
        version = "m-bench-write"
        registry.register_candidate(
            engine, version=version, preset="tiny", config={}, metrics={},
            artifact_uri="unused", artifact_sha256="0" * 64,
        )  # fmt: skip
        ids = [f"p{i:08d}" for i in range(total)]
        with Timer() as t, engine.begin() as conn:
            batch = conn.exec_driver_sql(
                "insert into fnd.ingest_batches (source_uri, content_sha256, status) "
                f"values ('bench', '{'0' * 64}', 'running') returning batch_id"
            ).scalar_one()
            sha = hashlib.sha256(b"x").hexdigest()
            copy_into(conn, "fnd.posts", POST_COLUMNS, (
                (pid, "bench", "text", "unused.jpg", sha, 1, 1, None, None, "train", batch, {})
                for pid in ids
            ))  # fmt: skip
        print(f"{total:,} posts loaded in {t.seconds:.1f} s")
        pages = [
            [(pid, (i % 100) / 100) for i, pid in enumerate(ids[start:start + PAGE])]
            for start in range(0, total, PAGE)
        ]  # fmt: skip
        rows, slices, written, started = [], max(1, len(pages) // 5), 0, time.perf_counter()
        for number, page in enumerate(pages, start=1):
            prediction_store.write_page(engine, version, 0.5, page, [], "bench", False)
            written += len(page)
            if number % slices == 0 or number == len(pages):
                seconds = time.perf_counter() - started
                rows.append((f"insert, table at {written:,}", f"{written:,}", f"{seconds:.1f}",
                             f"{written / seconds:,.0f}"))  # fmt: skip
        with Timer() as t:
            for page in pages:
                prediction_store.write_page(engine, version, 0.5, page, [], "bench", True)
        rows.append((f"rewrite all (`rescore_all`), table at {total:,}", f"{total:,}",
                     f"{t.seconds:.1f}", f"{total / t.seconds:,.0f}"))  # fmt: skip
        engine.dispose()
    return rows


def image_reads(folder: Path, size: int = 224, rounds: int = 3) -> list[tuple]:
    """Read + decode + resize to ``size`` of real pictures on one core: the CPU side of a GPU
    worker (``--image-dir``: e.g. ../shared/data/mediaeval-dev/images)."""
    import torch

    from fnd_core.model.encoders.preprocess import load_pixels

    torch.set_num_threads(1)
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    best = 0.0
    for _ in range(rounds):
        with Timer() as t:
            for path in paths:
                try:
                    load_pixels(str(path), image_size=size)
                except Exception:  # noqa: BLE001, S112 — a broken picture is skipped, as scoring would
                    continue
        best = max(best, len(paths) / t.seconds)
    return [(f"{len(paths)} pictures, {megabytes / len(paths) * 1000:.0f} kB on average",
             f"{best:.0f}")]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--preset", default="offline")
    parser.add_argument("--write-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-workers", action="store_true")
    parser.add_argument("--image-dir", type=Path, help="also time decoding these pictures")
    args = parser.parse_args()
    print(f"# {machine()}")
    if args.image_dir:
        print(table(image_reads(args.image_dir), ("read + decode + resize, 1 core", "images/s")))
    if not args.skip_workers:
        rows = workers_compared(args.posts, args.preset)
        print(table(rows, ("scoring", "posts/s (best of 2)", "vs 1 worker")))
    if args.write_rows:
        print(table(write_rate(args.write_rows), ("write", "rows", "s (cumulative)", "rows/s")))


if __name__ == "__main__":
    main()
