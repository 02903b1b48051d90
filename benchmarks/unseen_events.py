"""Does the gate's recorded estimate predict how the champion does on events it never saw?

Usage::

    python -m benchmarks.unseen_events [--data ../shared/data/mediaeval-dev]
        [--held-out garissa,malaysia,sochi,underwater,columbianChemicals,bringback]
        [--strip-event] [--cap-event sandy=3000]

Through the whole product, as tomorrow's posts would arrive: the other events are landed
*labelled* and ingested, ``retrain.run`` (what ``fnd train`` runs: grouped cross-validation,
gate, promotion; offline preset) trains a champion; then the held-out events are landed with
their labels removed, ingested and scored by the champion. Printed: the kind that shipped and
the estimate recorded in ``fnd.model_leaderboard`` (by post, its interval, each story once)
beside the balanced accuracy of the champion's verdicts in ``fnd.latest_predictions`` on the
held-out events (by post, and each story once), per event and pooled. ``--strip-event`` lands
the training posts without their ``event`` field (topics are then discovered), as posts from a
source without one would arrive; ``--cap-event sandy=3000`` keeps 3,000 of an event's posts
(seeded); ``--held-out-sample sandy=3000`` holds out a seeded draw of an event's posts (shown as
``sandy*``). ``--accuracy-objective`` then rescores the held-out posts under
``FND_DECISION_OBJECTIVE=accuracy`` (threshold moved by the fake share estimated from the
scores, no label read) and prints both objectives' accuracy and balanced accuracy beside the
estimated and the true fake share. ``--reveal-labels`` then lands the held-out posts' labels
through ``fnd label``'s path in four steps (quarters, in order of the posts' time) and prints,
after each, ``fnd.realized_performance`` beside the label-free estimate of the same verdicts.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from benchmarks.common import bench_database, bench_home, bench_settings, machine, table
from fnd_core.ingest.load import ingest_file
from fnd_core.io.db import make_engine
from fnd_core.model import metrics
from fnd_core.model.splits.grouping import PostKeys, leak_groups
from fnd_core.pipeline import retrain, scoring
from fnd_core.pipeline.evaluation import story_weights

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mediaeval-dev"
SIX = "garissa,malaysia,sochi,underwater,columbianChemicals,bringback"


def write(path: Path, rows: list[dict], *, labelled: bool) -> Path:
    """A landing file of ``rows`` (``event`` kept as an extra column, ``label`` maybe not)."""
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps({k: v for k, v in row.items() if labelled or k != "label"}) + "\n")
    return path


def verdicts(engine, post_ids: list[str]) -> dict[str, float]:
    """The champion's P(fake) of each post, from the analysts' view."""
    return {post_id: p for post_id, (p, _) in labelled_verdicts(engine, post_ids).items()}


def labelled_verdicts(engine, post_ids: list[str]) -> dict[str, tuple[float, int]]:
    """Each post's (P(fake), label written at the run's threshold), from the analysts' view."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select post_id, p_fake, label from fnd.latest_predictions"
                " where post_id = any(:ids)"
            ),
            {"ids": post_ids},
        ).all()
    return {post_id: (float(p), int(label == "fake")) for post_id, p, label in rows}


def objective_row(name: str, truth: dict[str, int], got: dict[str, tuple[float, int]],
                  threshold: float | None, share: float | None) -> tuple:  # fmt: skip
    """One objective's verdicts on the held-out posts, counted by post."""
    ids = [i for i in truth if i in got]
    y = np.array([truth[i] for i in ids])
    pred = np.array([got[i][1] for i in ids])
    recall = {c: float((pred[y == c] == c).mean()) if (y == c).any() else float("nan")
              for c in (0, 1)}  # fmt: skip
    return (name, "–" if share is None else f"{share:.3f}", f"{y.mean():.3f}",
            "–" if threshold is None else f"{threshold:.3f}", f"{(pred == y).mean():.3f}",
            f"{metrics.balanced_accuracy(y, pred):.3f}" if len(np.unique(y)) > 1 else "–",
            f"{recall[0]:.3f}", f"{recall[1]:.3f}")  # fmt: skip


def reveal_labels(engine, settings, version: str, new: list[dict]) -> list[tuple]:
    """Land the held-out posts' labels a quarter at a time (by ``created_utc``), as a
    fact-checker would send them; after each, the realized row beside the estimate."""
    from fnd_core.observe.performance import estimate_weeks, realized

    settings = dataclasses.replace(settings, realized_min_labels_per_class=5)
    estimate_weeks(engine, model_version=version)
    ordered = sorted(new, key=lambda p: (p.get("created_utc") or 0, p["id"]))
    folder = Path(settings.landing) / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for step in range(4):
        part = ordered[len(ordered) * step // 4 : len(ordered) * (step + 1) // 4]
        path = folder / f"step{step + 1}.csv"
        path.write_text("post_id,label,source\n"
                        + "".join(f"{p['id']},{p['label']},mediaeval\n" for p in part))  # fmt: skip
        ingest_file(engine, str(path), settings, kind="labels")
        row = realized(engine, model_version=version)[-1]
        shown = [row["balanced_accuracy"], row["estimated_balanced_accuracy"],
                 row["fake_recall"], row["estimated_fake_recall"],
                 row["estimated_fake_share"], row["gate_estimate_by_post"]]  # fmt: skip
        rows.append((f"{step + 1}/4: {row['n_labelled']:,}", row["n_fake"], row["n_real"],
                     *("—" if v is None else f"{v:.3f}" for v in shown)))  # fmt: skip
    return rows


def evidence_of(engine, version: str) -> dict[str, tuple[float | None, bool, int | None]]:
    """Each scored post's (novelty, picture matched, the matched picture's label)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("select post_id, novelty, matched, match_label from fnd.prediction_evidence"
                    " where model_version = :v"),
            {"v": version},
        ).all()  # fmt: skip
    return {r[0]: (r[1], bool(r[2]), r[3]) for r in rows}


def evidence_row(name: str, part: list[dict], got: dict[str, tuple[float, int]],
                 evidence: dict) -> tuple:  # fmt: skip
    """Novelty's spread over ``part``, its picture matches, and balanced accuracy when a match
    decides the verdict (the matched picture's label) instead of the model."""
    part = [p for p in part if p["id"] in got]  # scored
    found = [evidence[p["id"]] for p in part if p["id"] in evidence]
    novelty = np.array([n for n, _, _ in found if n is not None])
    quartiles = np.percentile(novelty, [25, 50, 75]) if novelty.size else [np.nan] * 3
    y = np.array([p["label"] for p in part])
    model = np.array([got[p["id"]][1] for p in part], dtype=int)
    ruled = np.array([evidence[p["id"]][2] if p["id"] in evidence and evidence[p["id"]][1]
                      else m for p, m in zip(part, model, strict=True)])  # fmt: skip
    two = len(np.unique(y)) > 1
    return (name, len(part), *(f"{q:.0f}" for q in quartiles),
            f"{(novelty >= 95).mean():.2f}" if novelty.size else "–",
            sum(m for _, m, _ in found),
            f"{metrics.balanced_accuracy(y, model):.3f}" if two else "–",
            f"{metrics.balanced_accuracy(y, ruled):.3f}" if two else "–")  # fmt: skip


def precision_rows(engine, settings, version: str, names: str | None, new: list[dict],
                   train: list[dict]) -> list[tuple]:  # fmt: skip
    """Every post rescored at each precision: labels against fp32's, held-out accuracy."""
    if not names:
        return []
    ids = [p["id"] for p in [*new, *train]]
    truth = {p["id"]: p["label"] for p in new}
    got, seconds = {}, {}
    for name in names.split(","):
        at = dataclasses.replace(settings, inference_precision=name)
        started = time.perf_counter()
        report = scoring.score_shard(engine, at, model_version=version, rescore_all=True,
                                     run_id=f"precision-{name}")  # fmt: skip
        if name == "auto":  # what auto chose, per encoder
            name = f"auto ({', '.join(f'{k} {v}' for k, v in (report.encoders or {}).items())})"
        seconds[name] = time.perf_counter() - started
        got[name] = labelled_verdicts(engine, ids)
    reference = got.get("fp32") or next(iter(got.values()))
    rows = []
    for name, verdict in got.items():
        both = [k for k in reference if k in verdict]
        same = np.mean([verdict[k][1] == reference[k][1] for k in both])
        delta = np.abs([verdict[k][0] - reference[k][0] for k in both])
        held = [k for k in truth if k in verdict]
        y = np.array([truth[k] for k in held])
        label = np.array([verdict[k][1] for k in held])
        rows.append((name, len(both), f"{seconds[name]:.0f}", f"{same:.2%}",
                     f"{delta.mean():.4f}", f"{delta.max():.4f}",
                     f"{metrics.balanced_accuracy(y, label):.3f}",
                     f"{(label[y == 0] == 0).mean():.3f}",
                     f"{(label[y == 1] == 1).mean():.3f}"))  # fmt: skip
    return rows


def recorded_estimate(engine, version: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "select gate_decision, gate_metric, gate_estimate, gate_estimate_fold_std,"
                " gate_estimate_by_post, gate_estimate_by_story, gate_interval_low,"
                " gate_interval_high, baseline_text_lr, kind from fnd.model_leaderboard"
                " where version = :v"
            ),
            {"v": version},
        ).one()
    return {k: float(v) if k.startswith(("gate_est", "gate_int", "baseline")) else v
            for k, v in row._mapping.items()}  # fmt: skip


def balanced(y: np.ndarray, p: np.ndarray, keys: list[PostKeys]) -> tuple[float, float]:
    """Balanced accuracy (accuracy when one class) by post and with each story once."""
    pred = metrics.predict_labels(p, 0.5)
    w = story_weights(leak_groups(keys))
    if len(np.unique(y)) < 2:
        right = (pred == y).astype(float)
        return float(right.mean()), float(np.sum(w * right) / np.sum(w))
    return metrics.balanced_accuracy(y, pred), metrics.balanced_accuracy(y, pred, w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--held-out", default=SIX, help="comma-separated events to hold out")
    parser.add_argument("--epochs", type=int, default=None, help="default: FND_TRAIN_EPOCHS")
    parser.add_argument("--strip-event", action="store_true", help="land training rows without it")
    parser.add_argument("--cap-event", default=None, metavar="EVENT=N", help="e.g. sandy=3000")
    parser.add_argument(
        "--held-out-sample",
        default=None,
        metavar="EVENT=N",
        help="also hold out N posts of EVENT, drawn with --seed (after the cap)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--accuracy-objective", action="store_true",
                        help="also rescore under FND_DECISION_OBJECTIVE=accuracy")  # fmt: skip
    parser.add_argument(
        "--reveal-labels",
        action="store_true",
        help="land the held-out labels in four steps; realized vs estimated",
    )
    parser.add_argument("--precisions", default=None, metavar="LIST",
                        help="then rescore every post at each FND_INFERENCE_PRECISION, e.g. "
                             "fp32,bf16,int8: labels as fp32's, held-out accuracy")  # fmt: skip
    args = parser.parse_args()
    held = set(args.held_out.split(","))
    posts = [json.loads(line) for line in (args.data / "posts.jsonl").open()]
    if args.cap_event:
        name, n = args.cap_event.split("=")
        of_event = [p for p in posts if p["event"] == name]
        keep = {p["id"] for p in random.Random(args.seed).sample(of_event, int(n))}
        posts = [p for p in posts if p["event"] != name or p["id"] in keep]
    if args.held_out_sample:  # e.g. H3: 3,000 sandy posts beside four small events
        name, n = args.held_out_sample.split("=")
        of_event = [p for p in posts if p["event"] == name]
        drawn = {p["id"] for p in random.Random(args.seed).sample(of_event, int(n))}
        posts = [{**p, "event": f"{name}*"} if p["id"] in drawn else p for p in posts]
        held.add(f"{name}*")
    train = [p for p in posts if p["event"] not in held]
    if args.strip_event:
        train = [{k: v for k, v in p.items() if k != "event"} for p in train]
    new = [p for p in posts if p["event"] in held]
    print(f"# {machine()}; trained on {len(train):,} posts, {len(new):,} held out")
    with bench_database() as url, bench_home() as home:
        settings = bench_settings(home, url)
        engine = make_engine(url)
        landing = Path(settings.landing)
        shutil.copytree(args.data / "images", landing / "images")
        started = time.perf_counter()
        ingest_file(engine, str(write(landing / "train.jsonl", train, labelled=True)), settings)
        kwargs = {"epochs": args.epochs} if args.epochs else {}
        outcome = retrain.run(engine, settings, preset="offline", **kwargs)
        trained = time.perf_counter() - started
        version = outcome["version"]
        if outcome.get("decision") != "promote":
            retrain.run(engine, settings, preset="offline", forced_by="benchmark", **kwargs)
        # The training posts scored first, as the rescoring after a promotion does: the
        # held-out posts are then a run of their own (the mix the accuracy objective estimates).
        scoring.score_shard(engine, settings, model_version=version, run_id="training-posts")
        ingest_file(engine, str(write(landing / "new.jsonl", new, labelled=False)), settings)
        balanced_run = scoring.score_shard(engine, settings, model_version=version,
                                           run_id="unseen")  # fmt: skip
        estimate = recorded_estimate(engine, version)
        p_fake = verdicts(engine, [p["id"] for p in new])
        evidence = evidence_of(engine, version)
        got = labelled_verdicts(engine, [p["id"] for p in [*new, *train]])
        revealed = reveal_labels(engine, settings, version, new) if args.reveal_labels else []
        objectives = []
        if args.accuracy_objective:
            truth = {p["id"]: p["label"] for p in new}
            objectives.append(objective_row(
                "balanced", truth, labelled_verdicts(engine, list(truth)),
                balanced_run.threshold, None))  # fmt: skip
            with engine.begin() as conn:  # the same run again, under the other objective
                conn.execute(sa.text("delete from fnd.predictions where model_version = :v"
                                     " and post_id = any(:ids)"),
                             {"v": version, "ids": list(truth)})  # fmt: skip
            accuracy = dataclasses.replace(settings, decision_objective="accuracy")
            moved = scoring.score_shard(engine, accuracy, model_version=version,
                                        run_id="unseen-accuracy")  # fmt: skip
            objectives.append(objective_row(
                "accuracy", truth, labelled_verdicts(engine, list(truth)), moved.threshold,
                moved.estimated_fake_share))  # fmt: skip
        precisions = precision_rows(engine, settings, version, args.precisions, new, train)
        engine.dispose()
    sha = {}
    for p in new:
        if p["image"] not in sha:
            sha[p["image"]] = hashlib.sha256((args.data / p["image"]).read_bytes()).hexdigest()
    scored = [p for p in new if p["id"] in p_fake]
    rows = []
    for name in [*sorted(held), "all held-out posts"]:
        part = [p for p in scored if name == "all held-out posts" or p["event"] == name]
        y = np.array([p["label"] for p in part])
        keys = [PostKeys(sha[p["image"]], p["text"]) for p in part]
        scores = np.array([p_fake[p["id"]] for p in part])
        by_post, by_story = balanced(y, scores, keys)
        recall = metrics.per_class_recall(y, metrics.predict_labels(scores, 0.5))
        shown = ["–" if recall[c] is None else f"{recall[c]:.3f}" for c in ("real", "fake")]
        rows.append((name, len(part), f"{y.mean():.2f}", f"{by_post:.3f}", f"{by_story:.3f}",
                     *shown))  # fmt: skip
    print(f"gate: {estimate['gate_decision']} {estimate['kind']} (trained, cross-validated and "
          f"gated in {trained / 60:.1f} min); recorded {estimate['gate_metric']} "
          f"{estimate['gate_estimate']:.3f} [{estimate['gate_interval_low']:.3f}, "
          f"{estimate['gate_interval_high']:.3f}] by post, {estimate['gate_estimate_by_story']:.3f}"
          f" each story once; text_linear {estimate['baseline_text_lr']:.3f}")  # fmt: skip
    print(
        f"scored {len(scored):,} of {len(new):,} held-out posts; gap (held-out by post − "
        f"recorded estimate): {float(rows[-1][3]) - estimate['gate_estimate']:+.3f}"
    )
    print(table(rows, ("held out", "posts", "fake share", "champion by post",
                       "champion, each story once", "real recall", "fake recall")))  # fmt: skip
    print(
        "novelty (percentile of the distance to the nearest training topic among the training "
        "posts' own) and picture evidence; balanced accuracy by post of the model alone and "
        "with a matched labelled picture deciding:"
    )
    evidence_rows = [evidence_row(name, [p for p in scored if p["event"] == name], got,
                                  evidence) for name in sorted(held)]  # fmt: skip
    evidence_rows.append(evidence_row("all held-out posts", scored, got, evidence))
    evidence_rows.append(evidence_row("training posts (rescored)", train, got, evidence))
    print(table(evidence_rows, ("posts", "n", "novelty p25", "median", "p75", "share >= 95",
                                "picture matched", "model alone", "match decides")))  # fmt: skip
    if precisions:
        print(f"every post rescored at each precision ({balanced_run.encoders or 'float'} was "
              "auto's choice above); labels against fp32's, balanced accuracy on the held-out "
              "posts by post:")  # fmt: skip
        print(table(precisions, ("FND_INFERENCE_PRECISION", "posts", "seconds", "labels as fp32",
                                 "mean |Δp|", "largest |Δp|", "held-out balanced accuracy",
                                 "real recall", "fake recall")))  # fmt: skip
    if revealed:
        print(
            "labels revealed in four steps (held-out posts by time); realized "
            "(fnd.realized_performance) vs the label-free estimate of the same verdicts:"
        )
        print(table(revealed, ("labels revealed", "fake", "real", "realized balanced accuracy",
                               "estimated (no labels)", "realized fake recall",
                               "estimated fake recall", "estimated fake share",
                               "gate estimate (by post)")))  # fmt: skip
    if objectives:
        print("decision objectives on all held-out posts (by post; the rescoring reads no label):")
        print(table(objectives, ("objective", "estimated fake share", "true fake share",
                                 "threshold", "accuracy", "balanced accuracy", "real recall",
                                 "fake recall")))  # fmt: skip


if __name__ == "__main__":
    main()
