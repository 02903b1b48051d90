"""Scoring throughput: fnd's scorer vs the model's ceiling vs the one-post-at-a-time loop.

    python -m benchmarks.score_throughput [--scales 1000,10000,50000] [--preset offline]

All in one run, same machine, same model (a champion trained here), same posts:
  (a) fnd's scorer end to end, Postgres to Postgres, as ``fnd score`` runs it with its
      defaults (encoders optimised for inference, FND_INFERENCE_PRECISION; select unscored
      by keyset pages → decode images (inline on CPU by default, FND_NUM_WORKERS DataLoader
      workers otherwise) → encoders → head → COPY + INSERT … ON CONFLICT), cache cold;
  (b) the same model's forward pass alone on preloaded tensors (decoded, resized, tokenized)
      at the same batch sizes, with the same worker processes and threads: the ceiling;
  (c) the classic loop a competent user writes: the model as loaded from the registry,
      torch's default threads, and per post: read + decode the image, tokenize, forward at
      batch 1, INSERT one row and commit;
  (c') the same loop with fnd's encoder settings (BatchNorm folded, channels-last, the
      resolved FND_INFERENCE_PRECISION), to show how much of a/c comes from those and how
      much from batching and parallelism.
(a)'s verdicts are compared with (c)'s plain fp32 ones on the same posts (labels changed,
largest |Δp|).
(a)-(c') run in interleaved rounds and the medians are reported. Then (a) at each scale, a
second run with no new posts, and a rescore of every post with
the feature cache warm (what a newly promoted champion with the same frozen encoders does).
``--evidence`` then rescores every post with the picture look-up (``FND_PICTURE_EVIDENCE``)
on and off, cache cold and warm: what the evidence costs.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import shutil
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from benchmarks.common import Timer, bench_database, bench_home, bench_settings, machine, table
from fnd_core.ingest.load import ingest_file
from fnd_core.io.db import make_engine
from fnd_core.pipeline import retrain, scoring
from fnd_core.stack.demo import generate_batch

TEXT_BATCH = 32  # fnd_core.model.features.encoding.encode_examples' default


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
    outcome = retrain.run(engine, settings, forced_by="benchmark", preset=preset, epochs=30)
    cand = outcome["candidate"]
    print(f"champion {cand['version']}: cross-validated test accuracy {cand['test_accuracy']:.3f}")
    return cand["version"]


def fnd_score(url: str, settings, *, rescore_all: bool = False, cold: bool = True):
    """(a): what `fnd score` does with its defaults; returns (posts scored, seconds).

    Run in a fresh process, as `fnd score` and an Airflow task run it: the timing covers
    plan, model load (nothing kept from an earlier run) and scoring, not Python's imports.
    """
    if cold:
        shutil.rmtree(settings.home / "feature_cache", ignore_errors=True)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, initializer=_import_scorer) as pool:
        return pool.submit(_score_in_process, url, settings, rescore_all).result()


def _import_scorer() -> None:
    """Python's imports of the scoring stack: process start-up, not scoring."""
    import efficientnet_lite_pytorch  # noqa: F401
    import transformers

    import fnd_core.model.artifacts  # noqa: F401
    import fnd_core.model.features.inference  # noqa: F401

    transformers.BertModel, transformers.AutoTokenizer  # noqa: B018 - resolve lazy imports


def _score_in_process(url: str, settings, rescore_all: bool) -> tuple[int, float]:
    engine = make_engine(url)
    with Timer() as t:
        work = scoring.plan(  # one shard per worker, as `fnd score` splits it
            engine, n_shards=settings.score_workers, rescore_all=rescore_all
        )
        reports = []
        if work["n_todo"]:
            reports = scoring.score_shards(url, settings, work, rescore_all=rescore_all)
    engine.dispose()
    return sum(r.n_scored for r in reports), t.seconds


def load_champion(url: str, version: str, *, optimised: bool):
    from fnd_core.model.artifacts import load_model

    engine = make_engine(url)
    mv = scoring.resolve_version(engine, version)
    engine.dispose()
    return load_model(mv.artifact_uri, mv.artifact_sha256, for_inference=optimised)


def _ceiling_worker(
    url, version, examples, batch_size, threads, precision, barrier
) -> tuple[int, float]:
    """One worker of (b): preload its posts, warm up, wait for the others, time the forward."""
    from fnd_core.model.encoders.preprocess import load_pixels
    from fnd_core.model.runtime import inference_autocast

    torch.set_num_threads(threads)
    model = load_champion(url, version, optimised=True).model
    pixels = torch.stack(
        [load_pixels(e.image_uri, image_size=model.config.image_size) for e in examples]
    )
    by_length = sorted(examples, key=lambda e: len(e.text))
    token_batches = [
        model.tokenize([e.text for e in by_length[lo : lo + TEXT_BATCH]])
        for lo in range(0, len(by_length), TEXT_BATCH)
    ]

    def forward() -> None:
        with torch.inference_mode(), inference_autocast(torch.device("cpu"), precision):
            image = torch.cat(
                [model.encode_images(pixels[lo : lo + batch_size])
                 for lo in range(0, len(pixels), batch_size)]
            ).float()  # fmt: skip
            text = torch.cat([model.encode_texts(**tokens) for tokens in token_batches]).float()
            torch.sigmoid(model.head_forward(image, text))

    forward()  # warm-up: oneDNN picks and caches its kernels on first use
    barrier.wait()
    seconds = []
    for _ in range(2):  # best of two: the ceiling, not the noise
        with Timer() as t:
            forward()
        seconds.append(t.seconds)
    return len(examples), min(seconds)


def ceiling(url, version, examples, settings, precision: str) -> float:
    """(b): the forward pass alone, with (a)'s workers, threads and batch sizes; posts/s."""
    workers, threads = scoring.worker_plan(settings, settings.score_workers)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(workers, mp_context=context) as pool:
        barrier = manager.Barrier(workers)
        parts = [examples[k::workers] for k in range(workers)]
        futures = [
            pool.submit(
                _ceiling_worker,
                url,
                version,
                part,
                settings.batch_size,
                threads,
                precision,
                barrier,
            )
            for part in parts
        ]
        results = [f.result() for f in futures]
    return sum(n for n, _ in results) / max(s for _, s in results)


def one_at_a_time(loaded, examples, url: str, precision: str = "fp32") -> tuple[float, dict]:
    """(c): the classic loop — per post: load, decode, tokenize, forward, INSERT, commit.

    Returns posts/s and each post's P(fake).
    """
    from fnd_core.model.encoders.preprocess import load_pixels
    from fnd_core.model.runtime import inference_autocast

    model, threshold = loaded.model, loaded.threshold
    engine = make_engine(url)
    p_fake = {}
    with engine.connect() as conn:
        conn.exec_driver_sql("create temp table naive (post_id text, p_fake real, label text)")
        conn.commit()
        with torch.inference_mode(), Timer() as t:
            for e in examples:
                pixels = load_pixels(e.image_uri, image_size=model.config.image_size)[None]
                tokens = model.tokenize([e.text])
                with inference_autocast(torch.device("cpu"), precision):
                    p = torch.sigmoid(model(pixels, **tokens).float()).item()
                p_fake[e.post_id] = p
                conn.exec_driver_sql(
                    "insert into naive values (%s, %s, %s)",
                    (e.post_id, p, "fake" if p >= threshold else "real"),
                )
                conn.commit()
    engine.dispose()
    return len(examples) / t.seconds, p_fake


def agreement(url: str, version: str, reference: dict[str, float], threshold: float) -> str:
    """How (a)'s stored verdicts compare with the plain fp32 loop's on the same posts."""
    engine = make_engine(url)
    with engine.connect() as conn:
        stored = dict(
            conn.exec_driver_sql(
                "select post_id, p_fake from fnd.predictions where model_version = %s "
                "and post_id = any(%s)",
                (version, list(reference)),
            ).all()
        )
    engine.dispose()
    flips = sum((stored[k] >= threshold) != (p >= threshold) for k, p in reference.items())
    worst = max(abs(stored[k] - p) for k, p in reference.items())
    return f"{flips} of {len(reference)} labels differ from fp32, largest |Δp| {worst:.4f}"


def evidence_rows(url: str, settings, have: int) -> list[tuple]:
    """(a) rescoring every post with the picture look-up on and off (fnd.prediction_evidence):
    cold (new posts' cost) and warm (a new champion's rescoring, the look-up's worst share)."""
    from dataclasses import replace

    rows = []
    for cold in (True, False):
        timed = {}
        for on in (True, False, True, False):  # interleaved; the faster of two each
            n, seconds = fnd_score(url, replace(settings, picture_evidence=on),
                                   rescore_all=True, cold=cold)  # fmt: skip
            timed[on] = min(timed.get(on, seconds), seconds)
        share = 1 - timed[False] / timed[True]
        for on in (True, False):
            rows.append((f"{have:,}, cache {'cold' if cold else 'warm'}", "on" if on else "off",
                         f"{timed[on]:.1f}", f"{have / timed[on]:.1f}",
                         f"{share:.1%}" if on else ""))  # fmt: skip
    return rows


def latest_verdicts(url: str) -> dict[str, float]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("select post_id, p_fake from fnd.latest_predictions").all()
    engine.dispose()
    return dict(rows)


def precision_rows(url: str, settings, scales: list[int], have: int, rounds: int) -> list[tuple]:
    """(a) at each scale with each FND_INFERENCE_PRECISION, every post rescored, feature cache
    cold, interleaved rounds (the best of each): posts/s, the ratio to the fastest float path,
    and the verdicts against fp32's. int8's one-time work (building the int8 encoders, auto's
    measurement) happens in a first, untimed run: it is paid once per encoder and per model."""
    from dataclasses import replace

    from fnd_core.model.runtime import native_bf16

    names = ["fp32", "bf16", "int8", "auto"] if native_bf16(torch.device("cpu")) else [
        "fp32", "int8", "auto"]  # fmt: skip
    engine = make_engine(url)
    with Timer() as t:
        fnd_score(url, replace(settings, inference_precision="auto"), rescore_all=True)
    print(f"first auto run (builds the int8 encoders, measures once): {t.seconds:.1f} s")
    rows = []
    for scale in scales:
        have = grow_to(engine, settings, scale, have, seed=scale)
        best: dict[str, float] = {}
        verdicts: dict[str, dict[str, float]] = {}
        for k in range(rounds):
            for name in names if k % 2 == 0 else names[::-1]:
                n, seconds = fnd_score(url, replace(settings, inference_precision=name),
                                       rescore_all=True)  # fmt: skip
                best[name] = min(best.get(name, seconds), seconds)
                verdicts[name] = latest_verdicts(url)
                print(f"{have:,} posts, {name}: {n / seconds:.1f} posts/s")
        fastest_float = min(best[n] for n in names if n in ("fp32", "bf16"))
        reference = verdicts["fp32"]
        for name in names:
            p = verdicts[name]
            delta = [abs(p[k] - q) for k, q in reference.items()]
            same = sum((p[k] >= 0.5) == (q >= 0.5) for k, q in reference.items()) / len(reference)
            rows.append((f"{have:,}", name, f"{have / best[name]:.1f}",
                         f"{fastest_float / best[name]:.2f}x", f"{same:.2%}",
                         f"{statistics.fmean(delta):.4f}", f"{max(delta):.4f}"))  # fmt: skip
    engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1000,10000,50000")
    parser.add_argument("--preset", default="offline")
    parser.add_argument("--sample", type=int, default=256, help="posts for (b) and (c)")
    parser.add_argument(
        "--threads", type=int, default=0, help="FND_CPU_THREADS for (a), (b) (0: default)"
    )
    parser.add_argument("--workers", type=int, default=1, help="FND_SCORE_WORKERS")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (a)-(c'); medians")
    parser.add_argument("--evidence", action="store_true",
                        help="then rescore every post with FND_PICTURE_EVIDENCE on and off, "
                             "feature cache cold and warm")  # fmt: skip
    parser.add_argument("--precisions", action="store_true",
                        help="only: every post rescored with each FND_INFERENCE_PRECISION at "
                             "each scale (fp32, bf16 where native, int8, auto)")  # fmt: skip
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    print(f"scoring benchmark, preset {args.preset}, on {machine()}")

    with bench_home() as home, bench_database() as url:
        settings = bench_settings(
            home, url, model_preset=args.preset, cpu_threads=args.threads,
            score_workers=args.workers,
        )  # fmt: skip
        from fnd_core.model.runtime import float_precision, loader_workers

        cpu = torch.device("cpu")
        workers, threads = scoring.worker_plan(settings, settings.score_workers)
        precision = float_precision(settings.inference_precision, cpu)
        print(f"(a), (b): {workers} worker(s) x {threads} thread(s), {precision}; (c): torch "
              f"default {torch.get_num_threads()} thread(s), fp32")  # fmt: skip
        engine = make_engine(url)
        have = grow_to(engine, settings, scales[0], 0, seed=1)
        version = train_champion(engine, settings, args.preset)
        if args.precisions:
            rows = precision_rows(url, settings, scales, have, args.rounds)
            print(table(rows, ("posts", "FND_INFERENCE_PRECISION", "posts/s",
                               "vs fastest float", "labels as fp32", "mean |Δp|",
                               "largest |Δp|")))  # fmt: skip
            print(
                f"({workers} worker(s) x {threads} thread(s), cache cold, every post "
                f"rescored, best of {args.rounds}; {time.strftime('%Y-%m-%d %H:%M')})"
            )
            choices = Path(settings.store) / "encoders-int8" / "choices"
            for path in sorted(choices.glob("*.json")):
                print(f"auto's record {path.name}: {path.read_text()}")
            return
        sample = retrain.load_examples(engine, labelled_only=False)[: args.sample]

        # The comparison first, on the first scale's posts, in interleaved rounds (medians:
        # a shared CPU is noisy); rounds after the first rescore every post, cache cold.
        plain = load_champion(url, version, optimised=False)
        optimised = load_champion(url, version, optimised=True)
        rounds: dict[str, list[float]] = {"a": [], "b": [], "c": [], "c'": []}
        for k in range(args.rounds):
            n, seconds = fnd_score(url, settings, rescore_all=k > 0)
            if k == 0:
                n_a, s_a = n, seconds
                agree = agreement(
                    url, version, one_at_a_time(plain, sample, url)[1], plain.threshold
                )
            rounds["a"].append(n / seconds)
            rounds["b"].append(ceiling(url, version, sample, settings, precision))
            rounds["c"].append(one_at_a_time(plain, sample, url)[0])
            rounds["c'"].append(one_at_a_time(optimised, sample, url, precision)[0])
            print("round", k + 1, "  ".join(f"({p}) {r[-1]:.1f}" for p, r in rounds.items()))
        rate_a, rate_b, rate_c, rate_c_opt = (statistics.median(r) for r in rounds.values())
        print(f"(a) vs (c): {agree}")

        scaling = [(f"{have:,}", f"{n_a:,}", f"{s_a:.1f}", f"{n_a / s_a:.1f}")]
        for scale in scales[1:]:
            have = grow_to(engine, settings, scale, have, seed=scale)
            n, seconds = fnd_score(url, settings, cold=False)  # new posts: not cached yet
            scaling.append((f"{have:,}", f"{n:,}", f"{seconds:.1f}", f"{n / seconds:.1f}"))
            print(f"(a) at {scale:,} posts: {n:,} new scored in {seconds:.1f} s")
        n, seconds = fnd_score(url, settings, cold=False)
        scaling.append((f"{have:,} (no new posts)", f"{n}", f"{seconds:.2f}", "-"))
        n, seconds = fnd_score(url, settings, rescore_all=True, cold=False)
        scaling.append(
            (f"{have:,} (rescore all, warm cache)", f"{n:,}", f"{seconds:.1f}",
             f"{n / seconds:.1f}")
        )  # fmt: skip
        evidence = evidence_rows(url, settings, have) if args.evidence else []
        engine.dispose()

    print()
    print(table(
        [
            ("(a) fnd scorer, Postgres → Postgres", f"{rate_a:.1f}", ""),
            ("(b) forward pass on preloaded tensors (ceiling)", f"{rate_b:.1f}",
             f"a/b = {rate_a / rate_b:.2f}"),
            ("(c) one post at a time, model as loaded", f"{rate_c:.1f}",
             f"a/c = {rate_a / rate_c:.2f}"),
            ("(c') one post at a time, optimised encoders", f"{rate_c_opt:.1f}",
             f"a/c' = {rate_a / rate_c_opt:.2f}"),
        ],
        ("path", "posts/s", "ratio"),
    ))  # fmt: skip
    print()
    print(table(scaling, ("posts in table", "newly scored", "seconds", "posts/s")))
    print(f"(a) vs (c) verdicts: {agree}")
    if evidence:
        print(table(evidence, ("every post rescored", "evidence", "seconds", "posts/s",
                               "evidence's share of the time")))  # fmt: skip
    decoders = loader_workers(settings.num_workers, cpu)
    print(f"({workers} worker(s) x {threads} thread(s), {precision}, image batch "
          f"{settings.batch_size}, text batch {TEXT_BATCH}, DataLoader workers {decoders}, "
          f"image size {settings.image_size}; (b), (c) on {len(sample)} posts; medians of "
          f"{args.rounds} rounds; {time.strftime('%Y-%m-%d %H:%M')})")  # fmt: skip


if __name__ == "__main__":
    main()
