"""Drift on real tweets: train on one event, land others — is the shift seen?

Usage::

    python -m benchmarks.drift_check [--data ../shared/data/mediaeval-dev]

The champion (offline preset) is trained on the older 80 % of the `sandy` event (both
classes). Then, each as its own landing file with the labels removed (as tomorrow's posts
arrive): the newer 20 % of `sandy` (the control: same event, later), and every other event
(malaysia, sochi, samurai, ...: other stories, pictures and wording). Each file is ingested,
scored and measured with :func:`fnd_core.drift.measure` against the champion's snapshot.
Printed: one row per landed file with the domain classifiers' AUCs, the predicted vs
training fake share, the share of unseen pictures, and whether it was flagged.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from benchmarks.common import bench_database, bench_home, bench_settings, machine, table
from fnd_core import drift, retrain, scoring
from fnd_core.db import make_engine
from fnd_core.ingest import ingest_file

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mediaeval-dev"
TRAIN_EVENT = "sandy"


def write(landing: Path, name: str, rows: list[dict], *, labelled: bool) -> Path:
    path = landing / f"{name}.jsonl"
    with path.open("w") as f:
        for row in rows:
            out = {k: v for k, v in row.items() if labelled or k != "label"}
            f.write(json.dumps(out) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    posts = [json.loads(line) for line in (args.data / "posts.jsonl").open()]
    sandy = sorted((p for p in posts if p["event"] == TRAIN_EVENT),
                   key=lambda p: (p.get("created_utc") or 0, p["id"]))  # fmt: skip
    cut = int(len(sandy) * 0.8)
    landed = {"sandy-newer-20%": sandy[cut:]}
    for event in sorted({p["event"] for p in posts} - {TRAIN_EVENT}):
        landed[event] = [p for p in posts if p["event"] == event]
    print(f"# {machine()}; trained on the older {cut} sandy posts")
    rows = []
    with bench_database() as url, bench_home() as home:
        settings = bench_settings(home, url, cv_repeats=1, num_workers=0)
        engine = make_engine(url)
        landing = Path(settings.landing)
        shutil.copytree(args.data / "images", landing / "images")
        ingest_file(engine, str(write(landing, "train", sandy[:cut], labelled=True)), settings,
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
            file = write(landing, name, event_posts, labelled=False)
            ingest_file(engine, str(file), settings, run_id=name, fail_share=1.0)
            scoring.score_shard(engine, settings, model_version=version, run_id=name)
            report = drift.measure(engine, settings, kind="scoring_run", subject=name)
            m = report.metrics
            truth = sum(p["label"] for p in event_posts) / len(event_posts)
            rows.append((name, report.n_posts, f"{m.get('image_auc', float('nan')):.3f}",
                         f"{m.get('text_auc', float('nan')):.3f}",
                         f"{m['predicted_fake_share']:.2f}", f"{m['train_fake_share']:.2f}",
                         f"{truth:.2f}", f"{m['unseen_image_share']:.2f}",
                         "**flagged**" if report.flagged else "no"))  # fmt: skip
            print(report.summary(), flush=True)
        engine.dispose()
    print(table(rows, ("landed", "posts", "image AUC", "text AUC", "predicted fake",
                       "training fake", "true fake", "unseen pictures", "drift")))  # fmt: skip


if __name__ == "__main__":
    main()
