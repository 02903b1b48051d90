"""Peak memory (RSS) of ingest, retraining and scoring as the data grows: 10k vs 100k posts.

Usage::

    python -m benchmarks.memory_peak                  # 10k and 100k posts, tiny preset
    python -m benchmarks.memory_peak --scales 10000,50000 --preset offline
    python -m benchmarks.memory_peak --decode-bombs 12  # huge-decoded pictures vs plain ones

``--decode-bombs N``: N rows whose pictures are tiny on disk and huge decoded (16-bit PNGs and
float TIFFs of 6,300 x 6,300, an RGBA PNG of 6,000 x 6,000, JPEGs of 7,000 x 5,000; under 2 MB
together), ingested beside a plain ingest of N rows of small pictures: the peak RSS above the
plain ingest is what decoding costs, bounded by FND_IMAGE_DECODE_THREADS x
FND_MAX_IMAGE_DECODED_BYTES (target: at most 256 MiB).

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
import dataclasses
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


def write_decode_bombs(folder: Path, n_rows: int, *, plain: bool) -> Path:
    """``n_rows`` rows, each with its own picture: huge decoded (or, ``plain``, small)."""
    import io

    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    side, ramp = 6300, np.arange(6300, dtype=np.uint32)
    kinds = ["png16", "tiff", "rgba", "jpeg"]
    rows = []
    for i in range(n_rows):
        kind = "plain" if plain else kinds[i % len(kinds)]
        buf = io.BytesIO()
        if kind == "plain":
            Image.new("RGB", (256, 256), (i % 256, 80, 160)).save(buf, format="JPEG")
        elif kind == "png16":  # 79 MB decoded (2 bytes a pixel): under the default budget
            grey = ((ramp[None, :] * 7 + ramp[:, None] + i) % 65535).astype(np.uint16)
            Image.fromarray(grey).save(buf, format="PNG", compress_level=9)
        elif kind == "tiff":  # 159 MB decoded (4 bytes a pixel): refused unread
            Image.fromarray(np.full((side, side), float(i), dtype=np.float32)).save(
                buf, format="TIFF", compression="tiff_deflate"
            )
        elif kind == "rgba":  # 144 MB decoded: refused unread
            Image.new("RGBA", (6000, 6000), (i % 256, 0, 0, 128)).save(buf, format="PNG")
        else:  # 35 MP: 140 MB at full size, 2 MB at the 1/8 scale it decodes at
            Image.new("RGB", (7000, 5000), (i % 256, 9, 9)).save(buf, format="JPEG", quality=50)
        ext = {"plain": "jpg", "jpeg": "jpg", "tiff": "tif"}.get(kind, "png")
        name = f"images/{kind}-{i}.{ext}"
        (folder / name).write_bytes(buf.getvalue())
        rows.append({"id": f"{kind}-{i}", "text": f"picture {i}", "image": name})
    path = folder / f"{'plain' if plain else 'bombs'}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def decode_bombs(n_rows: int) -> None:
    """Peak RSS of ingesting huge-decoded pictures, over a plain ingest of as many rows; and
    the same pictures with no decode budget and a thread per core (what the budget saves)."""
    print(f"# peak RSS of ingest: {n_rows} huge-decoded pictures vs {n_rows} plain, {machine()}")
    unbounded = {"FND_MAX_IMAGE_DECODED_BYTES": str(2**40),
                 "FND_IMAGE_DECODE_THREADS": str(os.cpu_count() or 1)}  # fmt: skip
    cases = (("plain", True, {}), ("huge-decoded", False, {}),
             ("huge-decoded, no budget", False, unbounded))  # fmt: skip
    rows, peaks = [], {}
    with bench_home() as scratch:
        for case, plain, env in cases:
            folder = scratch / ("plain" if plain else "bombs")
            landing = folder / f"{'plain' if plain else 'bombs'}.jsonl"
            if not landing.exists():
                landing = write_decode_bombs(folder, n_rows, plain=plain)
            size = sum(p.stat().st_size for p in (folder / "images").iterdir())
            saved = {k: os.environ.get(k) for k in (*env, "FND_BENCH_LEAN")}
            os.environ.update({**env, "FND_BENCH_LEAN": "1"})  # no torch: only ingest's cost
            try:
                with bench_database() as url, bench_home() as home:
                    result = run_step("ingest", url, home, "tiny", landing)
            finally:
                for k, v in saved.items():
                    os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
            peaks[case] = result["step_peak_mib"] or result["peak_mib"]
            print(json.dumps({"case": case, "image_bytes": size, **result}), flush=True)
            rows.append((case, f"{size / 2**20:.1f}", result["accepted"], result["quarantined"],
                         f"{peaks[case]:.0f}", f"{peaks[case] - peaks['plain']:.0f}",
                         f"{result['seconds']:.0f}"))  # fmt: skip
    headers = ("pictures", "on disk (MiB)", "accepted", "refused", "peak RSS of ingest (MiB)",
               "over plain (MiB)", "s")  # fmt: skip
    print(table(rows, headers))
    over = peaks["huge-decoded"] - peaks["plain"]
    print(f"huge-decoded over plain: {over:.0f} MiB (target <= 256)")


def run_step(
    step: str, url: str, home: Path, preset: str, landing: Path | None = None, **env: str
) -> dict:
    """Run one step in a child (``env``: FND_* settings of its own); its peak RSS (MiB) and
    seconds."""
    args = [sys.executable, "-m", "benchmarks.memory_peak", "--step", step, "--url", url,
            "--home", str(home), "--preset", preset]  # fmt: skip
    if landing is not None:
        args += ["--landing", str(landing)]
    done = subprocess.run(
        args, stdout=subprocess.PIPE, text=True, check=False, env={**os.environ, **env}
    )
    if done.returncode:
        raise RuntimeError(f"step {step} failed ({done.returncode}): {done.stdout[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_step(step: str, url: str, home: Path, preset: str, landing: str | None) -> None:
    """The child's side: do one step, print its result as the last line of JSON."""
    import logging
    import resource
    import time

    if not os.environ.get("FND_BENCH_LEAN"):
        import torch  # noqa: F401 — the baseline includes what every step imports

    from fnd_core.io.db import make_engine
    from fnd_core.settings import Settings

    logging.basicConfig(level=logging.WARNING)
    settings = dataclasses.replace(  # FND_* from the environment (e.g. a decode budget) apply
        Settings.from_env(), home=home, database_url=url, model_preset=preset, cv_repeats=1
    )
    engine = make_engine(url)
    with engine.connect() as conn:  # connected before the peak is reset: the step's own cost
        conn.exec_driver_sql("select 1")
    reset = _reset_peak()
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
        rescore = bool(os.environ.get("FND_BENCH_RESCORE"))
        report = scoring.score_shard(
            engine, settings, model_version=version.version, rescore_all=rescore
        )
        detail = {"scored": report.n_scored, "errors": report.n_errors,
                  "encoders": report.encoders}  # fmt: skip
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step_peak = _high_water_mib() if reset else None
    print(json.dumps({"step": step, "peak_mib": peak_kib / 1024, "step_peak_mib": step_peak,
                      "seconds": time.perf_counter() - started, **detail}))  # fmt: skip


def precision_rows(url: str, home: Path, preset: str, n: int, names: str, base: dict) -> list:
    """Scoring's peak at each precision: every post rescored in a fresh child, feature cache
    cold. A first int8/auto run builds the int8 encoders and measures auto's choice (paid once
    per encoder and per model, not by each run), untimed."""
    for once in {"int8", "auto"} & set(names.split(",")):
        run_step("score", url, home, preset, FND_INFERENCE_PRECISION=once, FND_BENCH_RESCORE="1")
    rows = []
    for name in names.split(","):
        shutil.rmtree(home / "feature_cache", ignore_errors=True)
        result = run_step("score", url, home, preset, FND_INFERENCE_PRECISION=name,
                          FND_BENCH_RESCORE="1")  # fmt: skip
        print(json.dumps({"posts": n, "precision": name, **result}), flush=True)
        rows.append((f"{n:,}", f"score, {name} {result.get('encoders') or ''}",
                     f"{result['peak_mib']:.0f}", f"{result['peak_mib'] - base['peak_mib']:.0f}",
                     f"{result['seconds']:.0f}"))  # fmt: skip
    return rows


def _reset_peak() -> bool:
    """Reset this process's peak RSS (Linux: ``clear_refs`` 5), so the peak read after a step
    is the step's own, not that of the imports before it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _high_water_mib() -> float | None:
    """Peak RSS since the last reset (``VmHWM``), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default=f"{BASE_POSTS},100000")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep generated data here")
    parser.add_argument("--decode-bombs", type=int, default=0, metavar="N",
                        help="ingest N huge-decoded pictures vs N plain ones instead")  # fmt: skip
    parser.add_argument("--precisions", default=None, metavar="LIST",
                        help="then rescore every post at each FND_INFERENCE_PRECISION "
                             "(e.g. fp32,bf16,int8,auto), feature cache cold")  # fmt: skip
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--landing", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        child_step(args.step, args.url, args.home, args.preset, args.landing)
        return
    if args.decode_bombs:
        decode_bombs(args.decode_bombs)
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
                if args.precisions:
                    rows += precision_rows(url, home, args.preset, n, args.precisions, base)
    print(table(rows, ("posts", "step", "peak RSS (MiB)", "above import baseline (MiB)", "s")))


if __name__ == "__main__":
    main()
