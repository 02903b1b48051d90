"""Scoring throughput: fnd's scorer vs the model's ceiling vs the one-post-at-a-time loop.

    python benchmarks/score_throughput.py [--scales 1000,10000,50000] [--preset offline]

All in one run, same machine, same model (a champion trained here), same posts:
  (a) fnd's scorer end to end, Postgres to Postgres (select unscored → decode images in
      DataLoader workers → encoders → head → COPY + INSERT … ON CONFLICT), feature cache cold;
  (b) the model's forward pass alone on preloaded tensors (decoded, resized, tokenized) at the
      same batch size: the ceiling;
  (c) one post at a time: read + decode the image, tokenize, forward at batch 1, INSERT one row.
Prints posts/s and the ratios a/b and a/c; then scaling (a) at each size, and a second run
with no new posts.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

import torch

from benchmarks.common import Timer, bench_database, bench_home, bench_settings, machine, table
from fnd_core import retrain, scoring
from fnd_core.db import make_engine
from fnd_core.demo import generate_batch
from fnd_core.gate import GatePolicy
from fnd_core.ingest import ingest_file


def grow_to(engine, settings, target: int, have: int, seed: int) -> int:
    """Generate and ingest posts until the database holds ``target``."""
    landing = Path(settings.landing)
    while have < target:
        n = min(10_000, target - have)
        batch = generate_batch(landing, n, seed=seed)
        ingest_file(engine, str(batch.data_file), settings)
        shutil.rmtree(landing / "images")
        have, seed = have + n, seed + 1
    return have


def train_champion(engine, settings, preset: str) -> str:
    snap = retrain.snapshot(engine)
    cand = retrain.train_candidate(engine, settings, snap, preset=preset, epochs=30)
    evaluation = retrain.evaluate(engine, settings, cand["version"])
    decision = retrain.gate(evaluation, GatePolicy(), forced_by="benchmark")
    retrain.record_decision(engine, evaluation, decision, GatePolicy())
    print(f"champion {cand['version']}: test accuracy {cand['test_accuracy']:.3f}")
    return cand["version"]


def score_all(engine, settings) -> tuple[int, float]:
    """(a): what `fnd score` does, one shard, with a cold feature cache."""
    shutil.rmtree(settings.home / "feature_cache", ignore_errors=True)
    with Timer() as t:
        work = scoring.plan(engine, n_shards=1)
        n = 0
        if work["n_todo"]:
            n = scoring.score_shard(
                engine, settings, model_version=work["model_version"], shard=0, n_shards=1
            ).n_scored
    return n, t.seconds


def ceiling(model, examples, settings) -> float:
    """(b): encoders + head on preloaded tensors, same batch size; posts/s."""
    from fnd_core.model.preprocess import load_pixels

    pixels = torch.stack(
        [load_pixels(e.image_uri, image_size=model.config.image_size) for e in examples]
    )
    tokens = model.tokenize([e.text for e in examples])
    bs = settings.batch_size
    with torch.inference_mode(), Timer() as t:
        for lo in range(0, len(examples), bs):
            model(
                pixels[lo : lo + bs],
                tokens["input_ids"][lo : lo + bs],
                tokens["attention_mask"][lo : lo + bs],
            )
    return len(examples) / t.seconds


def one_at_a_time(model, threshold, examples, url: str) -> float:
    """(c): the classic loop — per post: load, decode, tokenize, forward, INSERT."""
    from fnd_core.model.preprocess import load_pixels

    engine = make_engine(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("create temp table naive (post_id text, p_fake real, label text)")
        conn.commit()
        with torch.inference_mode(), Timer() as t:
            for e in examples:
                pixels = load_pixels(e.image_uri, image_size=model.config.image_size)[None]
                tokens = model.tokenize([e.text])
                p = torch.sigmoid(model(pixels, **tokens)).item()
                conn.exec_driver_sql(
                    "insert into naive values (%s, %s, %s)",
                    (e.post_id, p, "fake" if p >= threshold else "real"),
                )
                conn.commit()
    engine.dispose()
    return len(examples) / t.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1000,10000,50000")
    parser.add_argument("--preset", default="offline")
    parser.add_argument("--sample", type=int, default=256, help="posts for (b) and (c)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    scales = [int(s) for s in args.scales.split(",")]
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    print(f"scoring benchmark, preset {args.preset}, on {machine()}, torch threads "
          f"{torch.get_num_threads()}")  # fmt: skip

    with bench_home() as home, bench_database() as url:
        settings = bench_settings(home, url, model_preset=args.preset, cpu_threads=args.threads)
        engine = make_engine(url)
        have = grow_to(engine, settings, scales[0], 0, seed=1)
        version = train_champion(engine, settings, args.preset)

        scaling = []
        for scale in scales:
            have = grow_to(engine, settings, scale, have, seed=scale)
            n, seconds = score_all(engine, settings)
            scaling.append((f"{scale:,}", f"{n:,}", f"{seconds:.1f}", f"{n / seconds:.1f}"))
            print(f"(a) at {scale:,} posts: {n:,} new scored in {seconds:.1f} s")
        again_n, again_s = score_all(engine, settings)
        scaling.append((f"{have:,} (no new posts)", f"{again_n}", f"{again_s:.2f}", "-"))

        from fnd_core.model.artifacts import load_model

        mv = scoring.resolve_version(engine, version)
        loaded = load_model(mv.artifact_uri, mv.artifact_sha256)
        sample = retrain.load_examples(engine, labelled_only=False)[: args.sample]
        rate_a = sum(int(r[1].replace(",", "")) for r in scaling[:-1]) / sum(
            float(r[2]) for r in scaling[:-1]
        )
        rate_b = ceiling(loaded.model, sample, settings)
        rate_c = one_at_a_time(loaded.model, loaded.threshold, sample, url)
        engine.dispose()

    print()
    print(table(
        [
            ("(a) fnd scorer, Postgres → Postgres", f"{rate_a:.1f}", "", ""),
            ("(b) forward pass on preloaded tensors (ceiling)", f"{rate_b:.1f}", "", ""),
            ("(c) one post at a time", f"{rate_c:.1f}", "", ""),
            ("ratios", "", f"a/b = {rate_a / rate_b:.2f}", f"a/c = {rate_a / rate_c:.2f}"),
        ],
        ("path", "posts/s", "", ""),
    ))  # fmt: skip
    print()
    print(table(scaling, ("posts in table", "newly scored", "seconds", "posts/s")))
    print(f"(batch size {settings.batch_size}, DataLoader workers {settings.num_workers}, "
          f"image size {settings.image_size}; (b), (c) on {len(sample)} posts; "
          f"timestamp {time.strftime('%Y-%m-%d %H:%M')})")  # fmt: skip


if __name__ == "__main__":
    main()
