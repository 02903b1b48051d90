"""Batch scoring: every post gets the champion's verdict, exactly once per model version.

- **Selection** is an anti-join against ``fnd.predictions`` (and ``fnd.scoring_errors``) for
  the model version, served by the ``(model_version, post_id)`` index: only unscored posts.
- **Shards** split the work by a hash of post_id, so N mapped tasks (on N workers) each score a
  disjoint slice; each shard re-selects what is still unscored, so it is restartable.
- **Pages** of posts are read by keyset (post_id order), scored through the model's encoders
  (DataLoader workers decode images; features of frozen encoders come from the cache when
  present) and written in bulk — COPY into a staging table, then INSERT … ON CONFLICT — and
  committed page by page: a task killed midway keeps its finished pages, and a rerun fills the
  rest with no duplicates and no gaps.
- A post whose image cannot be read is written to ``fnd.scoring_errors`` with the error:
  never silently skipped, and not retried on every run (``rescore_all`` retries it).
- **Speed**: the loaded model is optimised for inference (BatchNorm and padding folded into
  the convolutions, channels-last), encoders run in bf16 where the hardware has it natively
  (``FND_INFERENCE_PRECISION``), and :func:`score_shards` can score several shards at once in
  worker processes (``FND_SCORE_WORKERS``) on a many-core CPU.

This module is the shard loop and its workers; the SQL of selecting and writing lives in
:mod:`fnd_core.pipeline.prediction_store`, and scoring one page (a bad post isolated, a
machine's error raised for a retry) in :mod:`fnd_core.pipeline.page_scoring`.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from fnd_core.pipeline import (
    encoder_precision,
    evidence,
    page_scoring,
    prediction_store,
    registry,
)
from fnd_core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from fnd_core.model.artifacts import LoadedModel

log = logging.getLogger(__name__)
OBJECTIVES = ("balanced", "accuracy")  # FND_DECISION_OBJECTIVE


class NoChampionError(RuntimeError):
    """Scoring needs a model: there is no champion yet and none was named."""


class ModelUnavailableError(RuntimeError):
    """The model to score with cannot be loaded (missing, tampered, unreadable artifact)."""


@dataclass(frozen=True)
class ShardReport:
    model_version: str
    shard: int
    n_shards: int
    n_scored: int
    n_errors: int
    seconds: float
    threshold: float | None = None  # the verdicts' threshold (moved by the accuracy objective)
    estimated_fake_share: float | None = None  # accuracy objective: EM on this shard's scores
    n_matched: int = 0  # posts whose picture matches a labelled picture (fnd.prediction_evidence)
    encoders: dict[str, str] | None = None  # int8 where chosen (encoder_precision); None: float

    @property
    def posts_per_s(self) -> float:
        return self.n_scored / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "posts_per_s": round(self.posts_per_s, 1)}


def resolve_version(engine: Engine, model_version: str | None) -> registry.ModelVersion:
    """The named version, or the champion; a clear error when there is neither."""
    if model_version:
        return registry.get_version(engine, model_version)
    champion = registry.current_champion(engine)
    if champion is None:
        raise NoChampionError(
            "no champion model yet: run fnd_retrain (or `fnd train`) first, "
            "or name a model version to score with"
        )
    return champion


def plan(
    engine: Engine,
    *,
    model_version: str | None = None,
    n_shards: int = 2,
    rescore_all: bool = False,
) -> dict[str, Any]:
    """How much work there is, per shard; small JSON for the mapped scoring tasks."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    version = resolve_version(engine, model_version).version
    counts = prediction_store.todo_per_shard(engine, version, n_shards, rescore_all)
    shards: list[dict[str, Any]] = [
        {"model_version": version, "shard": k, "n_shards": n_shards, "n_todo": counts.get(k, 0)}
        for k in range(n_shards)
    ]
    total = sum(s["n_todo"] for s in shards)
    log.info("scoring plan for %s: %d posts in %d shard(s)", version, total, n_shards)
    return {"model_version": version, "n_todo": total, "shards": shards}


def score_shard(
    engine: Engine,
    settings: Settings,
    *,
    model_version: str,
    shard: int = 0,
    n_shards: int = 1,
    rescore_all: bool = False,
    run_id: str = "cli",
    page_size: int = 2048,
    device: str = "auto",
) -> ShardReport:
    """Score every post of one shard not yet scored by ``model_version``.

    With ``FND_DECISION_OBJECTIVE=balanced`` each page is written as it is scored. With
    ``accuracy`` the shard's scores (ids and floats only) wait until the fake share of its
    posts is estimated, then are written page by page at the moved threshold: shards are
    hash-random slices of the run, so each estimates the same mix.
    """
    from fnd_core.model.features.cache import FeatureCache

    if settings.decision_objective not in OBJECTIVES:
        raise ValueError(
            f"FND_DECISION_OBJECTIVE must be one of {', '.join(OBJECTIVES)}, "
            f"got {settings.decision_objective!r}"
        )
    started = time.perf_counter()
    version = registry.get_version(engine, model_version)
    loaded = _load_for_scoring(version, device, settings.inference_precision)
    encoders = encoder_precision.prepare(loaded, version, settings, engine)
    cache = FeatureCache(settings.home / "feature_cache")  # keys indexed once, rows per page
    waiting: list[tuple[str, float]] = []  # accuracy objective: verdicts wait for the mix
    pictures = evidence.build_index(engine, settings) if settings.picture_evidence else None
    n_scored = n_errors = n_matched = 0
    after = ""
    while True:
        page = prediction_store.next_page(
            engine, version.version, shard, n_shards, rescore_all, after, page_size
        )
        if not page:
            break
        after = page[-1].post_id
        p_fake, errors, novelty = page_scoring.score_page(
            loaded.model, page, settings, cache, loaded.novelty
        )
        p_fake = _calibrated(loaded, p_fake)
        scored = [(ex.post_id, p) for ex, p in zip(page, p_fake, strict=True) if p is not None]
        n_scored += len(scored)
        if settings.decision_objective == "accuracy":
            waiting.extend(scored)
            scored = []
        prediction_store.write_page(
            engine, version.version, loaded.threshold, scored, errors, run_id, rescore_all
        )
        if pictures is not None or loaded.novelty is not None:
            ids = [ex.post_id for ex, p in zip(page, p_fake, strict=True) if p is not None]
            far = {ex.post_id: v for ex, v in zip(page, novelty, strict=True)}
            n_matched += evidence.attach(engine, settings, version.version, pictures, ids, far)
        n_errors += len(errors)
        elapsed = time.perf_counter() - started
        log.info(
            "shard %d/%d: %d scored, %d errors, %d matching a labelled picture (%.1f posts/s)",
            shard, n_shards, n_scored, n_errors, n_matched, n_scored / max(elapsed, 1e-9),
        )  # fmt: skip
    threshold, share = loaded.threshold, None
    if waiting:
        threshold, share = run_threshold(loaded.threshold, [p for _, p in waiting], settings)
        for start in range(0, len(waiting), page_size):
            prediction_store.write_page(
                engine, version.version, threshold, waiting[start : start + page_size], [],
                run_id, rescore_all,
            )  # fmt: skip
    report = ShardReport(
        version.version, shard, n_shards, n_scored, n_errors, time.perf_counter() - started,
        threshold=round(threshold, 6), estimated_fake_share=share, n_matched=n_matched,
        encoders=encoders,
    )  # fmt: skip
    log.info("shard %d/%d done: %s", shard, n_shards, report.to_json())
    return report


def run_threshold(
    balanced_threshold: float, p_fake: list[float], settings: Settings
) -> tuple[float, float | None]:
    """(threshold, estimated fake share) for the accuracy objective: the share estimated by
    EM on the calibrated scores, the threshold moved by it; with fewer than
    ``FND_PRIOR_MIN_POSTS`` scores, no estimate and the balanced threshold, said in the log."""
    import numpy as np

    from fnd_core.model.calibration import accuracy_threshold, estimate_fake_share

    if len(p_fake) < settings.prior_min_posts:
        log.warning(
            "accuracy objective: %d posts scored, fewer than FND_PRIOR_MIN_POSTS=%d to "
            "estimate their fake share; verdicts keep the balanced threshold %.3f",
            len(p_fake), settings.prior_min_posts, balanced_threshold,
        )  # fmt: skip
        return balanced_threshold, None
    share, iterations = estimate_fake_share(np.array(p_fake, dtype=float))
    threshold = accuracy_threshold(balanced_threshold, share)
    log.info(
        "accuracy objective: estimated fake share %.3f of %d posts (EM, %d iterations): "
        "threshold %.3f instead of %.3f",
        share, len(p_fake), iterations, threshold, balanced_threshold,
    )  # fmt: skip
    return threshold, round(share, 4)


def _calibrated(loaded: LoadedModel, p_fake: list[float | None]) -> list[float | None]:
    """The model's calibration applied (P(fake) under a balanced prior); failures stay None."""
    import numpy as np

    done = [i for i, p in enumerate(p_fake) if p is not None]
    out = list(p_fake)
    if done:
        calibrated = loaded.calibration.apply(np.array([p_fake[i] for i in done]))
        for i, q in zip(done, calibrated.tolist(), strict=True):
            out[i] = q
    return out


def _load_for_scoring(version: registry.ModelVersion, device: str, precision: str) -> LoadedModel:
    """The version's model, ready for inference; a clear error naming it when it cannot be.

    The process's copy is reused, unless it was prepared for another precision after giving
    up float encoders to int8 (:func:`encoder_precision.prepare`): then it is loaded again."""
    from fnd_core.model.runtime import resolve_device

    try:
        key = (version.artifact_uri, version.artifact_sha256, str(resolve_device(device)))
        loaded = inference_model(*key)
        released = getattr(loaded.model, "released_encoders", None)
        if released and getattr(loaded.model, "prepared_for", None) != precision:
            inference_model.cache_clear()
            loaded = inference_model(*key)
        return loaded
    except Exception as exc:  # noqa: BLE001 — say which model and what to do, keep the cause
        raise ModelUnavailableError(
            f"model {version.version} ({version.status}) cannot be loaded from "
            f"{version.artifact_uri}: {exc}. Nothing was scored. Roll back to a former champion "
            "(`fnd model list`, then `fnd model rollback VERSION`) or retrain: retraining "
            "promotes a candidate even when the champion cannot be evaluated"
        ) from exc


@functools.lru_cache(maxsize=1)
def inference_model(artifact_uri: str, artifact_sha256: str, device: str) -> LoadedModel:
    """The artifact loaded (checked against its sha256) and optimised for inference.

    Kept for the next shard this process scores, and for the drift check after it: loading,
    verifying and folding cost ~0.7 s (offline preset, measured), which each would repeat.
    The key includes the sha256, so a changed artifact is never served from here.
    """
    from fnd_core.model.artifacts import load_model

    return load_model(artifact_uri, artifact_sha256, device=device, for_inference=True)


def worker_plan(settings: Settings, n_shards: int, device: str = "auto") -> tuple[int, int]:
    """(worker processes, torch threads each) for scoring ``n_shards`` shards here.

    On CPU: ``FND_SCORE_WORKERS`` processes (never more than there are shards), each with
    ``FND_CPU_THREADS`` threads or an equal share of the cores. The default, one process
    using every core, was fastest on 2 cores (73 posts/s vs 64 for 2 processes x 1 thread,
    which also pay ~5 s of start-up); on many cores, where one process's threads stop
    scaling, more workers pay. On a GPU: one process.
    """
    from fnd_core.model.runtime import resolve_device

    if resolve_device(device).type != "cpu":
        return 1, settings.cpu_threads or 1
    cores = len(os.sched_getaffinity(0))
    workers = max(1, min(settings.score_workers, n_shards))
    return workers, settings.cpu_threads or max(1, cores // workers)


def score_shards(
    database_url: str,
    settings: Settings,
    work: dict[str, Any],
    *,
    rescore_all: bool = False,
    run_id: str = "cli",
    page_size: int = 2048,
    device: str = "auto",
) -> list[ShardReport]:
    """Score every shard of a :func:`plan`, several at once in worker processes on CPU.

    Each worker is a fresh (spawned) process with its own connection and
    ``torch`` thread count; one worker scores in this process.
    """
    shards = [s for s in work["shards"] if s["n_todo"]]
    workers, threads = worker_plan(settings, len(shards), device)
    settings = replace(settings, cpu_threads=threads)
    jobs = [
        (database_url, settings, work["model_version"], s["shard"], s["n_shards"], rescore_all,
         run_id, page_size, device)
        for s in shards
    ]  # fmt: skip
    log.info("scoring %d shard(s) with %d worker(s) x %d thread(s)", len(jobs), workers, threads)
    if workers == 1:
        return [_score_shard_job(*job) for job in jobs]
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),  # no forked torch/OpenMP state
        initializer=_init_worker,
        initargs=(logging.getLogger().getEffectiveLevel(),),
    ) as pool:
        return list(pool.map(_score_shard_job, *zip(*jobs, strict=True)))


def _init_worker(log_level: int) -> None:
    """Log like the parent, and die with it: a killed ``fnd score`` leaves no scorer behind."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(processName)s %(message)s")
    if sys.platform == "linux":
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _score_shard_job(
    database_url: str,
    settings: Settings,
    model_version: str,
    shard: int,
    n_shards: int,
    rescore_all: bool,
    run_id: str,
    page_size: int,
    device: str,
) -> ShardReport:
    """One shard in its own engine (and, in a worker, its own process)."""
    import torch

    from fnd_core.io.db import make_engine

    if settings.cpu_threads:
        torch.set_num_threads(settings.cpu_threads)
    engine = make_engine(database_url)
    try:
        return score_shard(
            engine, settings, model_version=model_version, shard=shard, n_shards=n_shards,
            rescore_all=rescore_all, run_id=run_id, page_size=page_size, device=device,
        )  # fmt: skip
    finally:
        engine.dispose()
