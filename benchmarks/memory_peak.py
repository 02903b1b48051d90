"""Peak memory (RSS) of ingest, retraining and scoring as the data grows: 10k vs 100k posts.

Usage::

    python -m benchmarks.memory_peak                  # 10k and 100k posts, tiny preset
    python -m benchmarks.memory_peak --scales 10000,50000 --preset offline

Each step runs in a fresh child process (``fnd_core`` imported, nothing else held), and its
peak resident set size is read from the kernel when the child exits (``wait4``), so one
step's memory never hides in another's. The baseline is the same child doing nothing but
importing fnd and torch. What bounds each step (see README, "Bounded memory"): ingest
streams the landing file in chunks of 2,000 rows; scoring reads pages of 2,048 posts and
only those rows of the feature cache; retraining holds its snapshot's features (capped by
FND_TRAIN_MAX_POSTS), so it is the one step expected to grow with the data.

Posts: one demo batch of 10,000 posts with their images; the larger scales repeat its rows
under new ids and new texts, sharing its images (as reposts do), so image work is the same
at every scale and text and row counts grow. The tiny preset keeps encoding cheap on a
2-core machine: what is measured is fnd's own holding of rows, features and pages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.common import bench_database, bench_home, machine, table

BASE_POSTS = int(os.environ.get("FND_BENCH_BASE_POSTS", "10000"))


def write_landing(folder: Path, n_posts: int) -> Path:
    """``n_posts`` rows in one JSONL file, the images of one 10k demo batch shared."""
    from fnd_core.stack.demo import generate_batch

    base = folder / "base"
    if not (base / "demo_s0.jsonl").exists():
        generate_batch(base, BASE_POSTS, seed=0, image_size=64)
    rows = [json.loads(line) for line in (base / "demo_s0.jsonl").open()]
    out = folder / f"landing-{n_posts}"
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "images").exists():  # hard links: a link out of the zone would be refused
        shutil.copytree(base / "images", out / "images", copy_function=os.link)
    path = out / f"posts-{n_posts}.jsonl"
    with path.open("w") as f:
        for i in range(n_posts):
            row = dict(rows[i % BASE_POSTS])
            if i >= BASE_POSTS:  # a repost: new id, new words, the same picture
                row["id"] = f"r{i}-{row['id']}"
                row["text"] = f"{row['text']} (repost {i})"
            f.write(json.dumps(row) + "\n")
    return path


def run_step(step: str, url: str, home: Path, preset: str, landing: Path | None = None) -> dict:
    """Run one step in a child; its peak RSS (MiB) and seconds."""
    args = [sys.executable, "-m", "benchmarks.memory_peak", "--step", step, "--url", url,
            "--home", str(home), "--preset", preset]  # fmt: skip
    if landing is not None:
        args += ["--landing", str(landing)]
    done = subprocess.run(args, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"step {step} failed ({done.returncode}): {done.stdout[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_step(step: str, url: str, home: Path, preset: str, landing: str | None) -> None:
    """The child's side: do one step, print its result as the last line of JSON."""
    import logging
    import resource
    import time

    import torch  # noqa: F401 — the baseline includes what every step imports

    from fnd_core.io.db import make_engine
    from fnd_core.settings import Settings

    logging.basicConfig(level=logging.WARNING)
    settings = Settings(home=home, database_url=url, model_preset=preset, cv_repeats=1)
    engine = make_engine(url)
    started = time.perf_counter()
    detail: dict = {}
    if step == "ingest":
        from fnd_core.ingest.load import ingest_file

        report = ingest_file(engine, landing, settings, fail_share=1.0)
        detail = {"accepted": report.n_accepted, "quarantined": report.n_quarantined}
    elif step == "retrain":
        from fnd_core.pipeline import retrain

        # Forced: the gate's verdict on a 3-epoch model is not what is measured here.
        result = retrain.run(engine, settings, preset=preset, epochs=3, forced_by="benchmark")
        detail = {"decision": result.get("decision")}
    elif step == "score":
        from fnd_core.pipeline import scoring

        version = scoring.resolve_version(engine, None)
        report = scoring.score_shard(engine, settings, model_version=version.version)
        detail = {"scored": report.n_scored, "errors": report.n_errors}
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"step": step, "peak_mib": peak_kib / 1024,
                      "seconds": time.perf_counter() - started, **detail}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default=f"{BASE_POSTS},100000")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep generated data here")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--landing", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        child_step(args.step, args.url, args.home, args.preset, args.landing)
        return
    scales = [int(s) for s in args.scales.split(",")]
    print(f"# peak RSS per step, {args.preset} preset, {machine()}")
    rows = []
    with bench_home() as scratch:
        work = args.work_dir or scratch
        for n in scales:
            landing = write_landing(work, n)
            with bench_database() as url, bench_home() as home:
                base = run_step("baseline", url, home, args.preset)
                for step in ("ingest", "retrain", "score"):
                    result = run_step(step, url, home, args.preset, landing)
                    print(json.dumps({"posts": n, **result}), flush=True)
                    rows.append((f"{n:,}", step, f"{result['peak_mib']:.0f}",
                                 f"{result['peak_mib'] - base['peak_mib']:.0f}",
                                 f"{result['seconds']:.0f}"))  # fmt: skip
    print(table(rows, ("posts", "step", "peak RSS (MiB)", "above import baseline (MiB)", "s")))


if __name__ == "__main__":
    main()
