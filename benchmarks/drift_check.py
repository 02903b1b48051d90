"""Drift on real tweets: train on one event, land others — is the shift seen?

Usage::

    python -m benchmarks.drift_check [--data ../shared/data/mediaeval-dev]

Two set-ups, each with its own champion (offline preset) trained on part of the `sandy` event
(both classes); what is landed comes as its own landing file with the labels removed, as
tomorrow's posts arrive:

- the control: a random 20 % of sandy's posts held out — same event, same days, same mix;
  nothing should be flagged;
- by time: trained on the older 80 % of sandy; landed: the newer 20 % of sandy, and every other
  event (malaysia, sochi, samurai, ...: other stories, pictures and wording). Each file is ingested,
scored and measured with :func:`fnd_core.observe.drift.measure` against the champion's snapshot.
Printed: one row per landed file with the domain classifiers' AUCs, the predicted vs
training fake share, the share of unseen pictures, and whether it was flagged.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

from benchmarks.common import bench_database, bench_home, bench_settings, machine, table
from fnd_core.ingest.load import ingest_file
from fnd_core.io.db import make_engine
from fnd_core.observe import drift
from fnd_core.pipeline import retrain, scoring

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mediaeval-dev"
TRAIN_EVENT = "sandy"


def write(landing: Path, name: str, rows: list[dict], *, labelled: bool) -> Path:
    path = landing / f"{name}.jsonl"
    with path.open("w") as f:
        for row in rows:
            out = {k: v for k, v in row.items() if labelled or k != "label"}
            f.write(json.dumps(out) + "\n")
    return path


def split_by_time(sandy: list[dict]) -> tuple[list[dict], dict[str, list[dict]]]:
    """Train on the older 80 %, land the newer 20 % (and every other event)."""
    cut = int(len(sandy) * 0.8)
    return sandy[:cut], {"sandy, newer 20%": sandy[cut:]}


def split_at_random(sandy: list[dict]) -> tuple[list[dict], dict[str, list[dict]]]:
    """The control: land a random 20 % of sandy's posts, train on the rest — same event, same
    days, same mix; reposts fall on both sides, and the detector must not call that drift."""
    landed = set(random.Random(0).sample(range(len(sandy)), k=len(sandy) // 5))
    held_out = [p for i, p in enumerate(sandy) if i in landed]
    train = [p for i, p in enumerate(sandy) if i not in landed]
    return train, {"sandy, random 20% of posts": held_out}


def _auc(metrics: dict, modality: str) -> str:
    n = metrics.get(f"n_{modality}s_compared", 0)
    if f"{modality}_auc" not in metrics:
        return f"– ({n} distinct)"
    return f"{metrics[modality + '_auc']:.3f} ({metrics[modality + '_auc_bar']:.2f}, {n})"


def _kl(metrics: dict) -> str:
    kl = metrics.get("score_kl")
    return "–" if kl is None else f"{kl:.2f}"


def run(data: Path, posts: list[dict], split) -> list[tuple]:
    sandy = sorted((p for p in posts if p["event"] == TRAIN_EVENT),
                   key=lambda p: (p.get("created_utc") or 0, p["id"]))  # fmt: skip
    train, landed = split(sandy)
    if split is split_by_time:
        for event in sorted({p["event"] for p in posts} - {TRAIN_EVENT}):
            landed[event] = [p for p in posts if p["event"] == event]
    rows = []
    with bench_database() as url, bench_home() as home:
        settings = bench_settings(home, url, cv_repeats=1, num_workers=0)
        engine = make_engine(url)
        landing = Path(settings.landing)
        shutil.copytree(data / "images", landing / "images")
        ingest_file(engine, str(write(landing, "train", train, labelled=True)), settings,
                    fail_share=1.0)  # fmt: skip
        outcome = retrain.run(engine, settings, forced_by="benchmark", preset="offline",
                              epochs=20)  # fmt: skip
        version = outcome["version"]
        # The training posts are scored first (as the first fnd_score run after a promotion
        # does), so each landed file's run holds only that file's posts.
        scoring.score_shard(engine, settings, model_version=version, run_id="initial")
        for name, event_posts in landed.items():
            if len(event_posts) < drift.MIN_POSTS:
                continue
            run_id = name.replace(" ", "-").replace(",", "").replace("%", "pc")
            file = write(landing, run_id, event_posts, labelled=False)
            ingest_file(engine, str(file), settings, run_id=run_id, fail_share=1.0)
            scoring.score_shard(engine, settings, model_version=version, run_id=run_id)
            report = drift.measure(engine, settings, kind="scoring_run", subject=run_id)
            m = report.metrics
            truth = sum(p["label"] for p in event_posts) / len(event_posts)
            rows.append((name, f"{len(train):,}", report.n_posts,
                         _auc(m, "image"), _auc(m, "text"),
                         f"{m['predicted_fake_share']:.2f}", f"{m['train_fake_share']:.2f}",
                         f"{truth:.2f}", f"{m['unseen_image_share']:.2f}", _kl(m),
                         "**flagged**" if report.flagged else "no"))  # fmt: skip
            print(report.summary(), flush=True)
        engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    posts = [json.loads(line) for line in (args.data / "posts.jsonl").open()]
    print(f"# {machine()}")
    rows = run(args.data, posts, split_at_random) + run(args.data, posts, split_by_time)
    print(table(rows, ("landed", "trained on", "posts", "image AUC (bar, pictures)",
                       "text AUC (bar, texts)",
                       "predicted fake", "training fake", "true fake", "unseen pictures",
                       "score KL", "drift")))  # fmt: skip


if __name__ == "__main__":
    main()
