"""Throughput of the offline preset: image and text feature extraction, head training.

Usage::

    python benchmarks/train_throughput.py                 # CPU (and CUDA when present)
    python benchmarks/train_throughput.py --threads 1     # pin intra-op threads
    python benchmarks/train_throughput.py --fusion-posts 3000 --work-dir /tmp/fnd-bench

The second form also trains the offline preset on demo posts (fnd_core.stack.demo) with both
fusions and the text/image ablations and prints their test accuracies. Results print as a
table and as one JSON line per figure (easy to collect).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch

from fnd_core.model import ModelConfig, PostExample
from fnd_core.model.features.encoding import EncodedFeatures, encode_examples
from fnd_core.model.network import FakeNewsModel, build_model
from fnd_core.model.train.heads import fit_head_looped
from fnd_core.model.train.recipe import TrainOptions
from fnd_core.model.train.stacked_heads import HeadJob, fit_heads
from fnd_core.model.train.trainer import train
from fnd_core.stack.demo import generate_batch


def emit(name: str, value: float, unit: str, **context) -> None:
    print(f"{name:<44} {value:>9.1f} {unit}  {context}")
    print(json.dumps({"figure": name, "value": round(value, 2), "unit": unit, **context}))


def demo_examples(folder: Path, n_posts: int, seed: int = 0) -> list[PostExample]:
    """Demo posts as examples (generated once into ``folder``)."""
    data = folder / f"demo_s{seed}.jsonl"
    if not data.exists() or sum(1 for _ in data.open()) < n_posts:
        generate_batch(folder, n_posts, seed=seed)
    rows = [json.loads(line) for line in data.open()][:n_posts]
    return [
        PostExample(r["id"], r["text"], str(folder / r["image"]), None, r.get("label"),
                    ("test", "val", "train", "train", "train", "train", "train")[i % 7])
        for i, r in enumerate(rows)
    ]  # fmt: skip


def timed(fn, *, windows: int = 3, seconds: float = 1.5) -> float:
    """Calls per second of ``fn``: best of ``windows`` timing windows after a warm-up call.

    Best-of, because on a shared machine other jobs only ever make a window slower.
    """
    fn()
    rates = []
    for _ in range(windows):
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            fn()
            calls += 1
        rates.append(calls / (time.perf_counter() - started))
    return max(rates)


def bench_encoders(model, examples, batch_sizes, device) -> None:
    size = model.config.image_size
    for bs in batch_sizes:
        pixels = torch.randint(0, 256, (bs, 3, size, size), dtype=torch.uint8, device=device)
        with torch.inference_mode():
            rate = timed(lambda pixels=pixels: model.encode_images(pixels)) * bs
        emit("image encoder (tensor in)", rate, "img/s", batch=bs, size=size, device=str(device))
    texts = [ex.text for ex in examples[:256]]
    for bs in batch_sizes:
        tokens = {k: v.to(device) for k, v in model.tokenize(texts[:bs]).items()}
        with torch.inference_mode():
            rate = timed(lambda tokens=tokens: model.encode_texts(**tokens)) * bs
        emit("text encoder (tokens in)", rate, "text/s", batch=bs, device=str(device))


def bench_end_to_end(model, examples, batch_size, device) -> None:
    """Read + decode + resize + encode, as training and scoring run it (no cache)."""
    started = time.perf_counter()
    features = encode_examples(model, examples, batch_size=batch_size)
    seconds = time.perf_counter() - started
    n = len(examples)
    emit("encode_examples (files -> features)", n / seconds, "post/s", posts=n,
         images=features.images_encoded, texts=features.texts_encoded, batch=batch_size,
         device=str(device))  # fmt: skip


def bench_head(config: ModelConfig, device: torch.device, n: int = 4000, heads: int = 15) -> None:
    """Phase-1 speed on random features of the offline encoders' sizes (encoders unused), in
    sample-epochs/s over whole epochs (validation included): one head at a time, as heads were
    fitted before (``fit_head_looped``), then ``heads`` heads as one stack, as the gate's
    cross-validation (5 folds x 3 draws) fits them. Each head trains on 7/8 of the posts."""
    import numpy as np

    torch.manual_seed(0)
    model = build_model(config, pretrained=False).to(device)
    text = torch.nn.functional.normalize(torch.randn(n, model.text_dim), dim=-1)
    features = EncodedFeatures(image=torch.randn(n, model.image_dim), text=text)
    labels = (torch.rand(n) < 0.5).float()
    n_train, epochs = n * 7 // 8, 5
    options = TrainOptions(patience=epochs + 1)  # no early stop: every head runs every epoch
    rng = np.random.default_rng(0)
    orders = [rng.permutation(n) for _ in range(heads)]
    jobs = [
        HeadJob(o[:n_train], o[n_train:], np.ones(n_train, np.float32),
                np.ones(n - n_train, np.float32), seed=k)
        for k, o in enumerate(orders)
    ]  # fmt: skip

    def fresh(k: int) -> FakeNewsModel:
        torch.manual_seed(k)
        return build_model(config, pretrained=False).to(device)

    looped = 3  # one head at a time runs at the same rate whatever the count: 3 suffice
    started = time.perf_counter()
    for k in range(looped):
        train_rows, val_rows = jobs[k].train.tolist(), jobs[k].val.tolist()
        fit_head_looped(
            fresh(k), features.subset(train_rows), labels[train_rows],
            features.subset(val_rows), labels[val_rows], epochs=epochs, options=options,
            seed=k, w_train=torch.ones(n_train), w_val=torch.ones(n - n_train),
        )  # fmt: skip
    one_at_a_time = looped * n_train * epochs / (time.perf_counter() - started)
    emit("head fitting, one head at a time", one_at_a_time, "sample-epochs/s",
         fusion=config.fusion, device=str(device))  # fmt: skip
    started = time.perf_counter()
    fit_heads([fresh(k) for k in range(heads)], features, labels.numpy(), jobs, epochs=epochs,
              options=options)  # fmt: skip
    stacked = heads * n_train * epochs / (time.perf_counter() - started)
    ratio = round(stacked / one_at_a_time, 2)
    emit(f"head fitting, {heads} heads stacked", stacked, "sample-epochs/s",
         fusion=config.fusion, device=str(device), ratio=ratio)  # fmt: skip


def bench_head_ceiling(config: ModelConfig, device: torch.device, n: int = 4096) -> None:
    """The arithmetic ceiling of a head fit: the head's matrix products alone, forward and the
    weight gradients, at a large batch (no layer norm, dropout, optimiser or validation).

    A head fit cannot run faster than this on the machine, whatever its batching or stacking;
    in bf16 (autocast) where the CPU or GPU computes it natively.
    """
    model = build_model(config, pretrained=False).to(device)
    image = torch.randn(n, model.image_dim, device=device)
    text = torch.randn(n, model.text_dim, device=device)
    image_linear, text_linear = model.image_proj[-1], model.text_proj[-1]
    for dtype in (torch.float32, torch.bfloat16):

        def step(dtype=dtype) -> None:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                joint = torch.cat([image_linear(image), text_linear(text)], dim=1)
                out = model.classifier(joint)
            out.float().sum().backward()

        rate = n * timed(step, windows=3, seconds=1.0)
        emit("head ceiling (matmuls only, batch 4096)", rate, "samples/s", fusion=config.fusion,
             dtype=str(dtype).removeprefix("torch."), device=str(device))  # fmt: skip


def fusion_study(examples: list[PostExample], cache_dir: Path, device: str) -> None:
    variants = {
        "interaction": ModelConfig(fusion="interaction"),
        "concat": ModelConfig(fusion="concat"),
        "text only": ModelConfig(fusion="concat", modalities="text"),
        "image only": ModelConfig(fusion="concat", modalities="image"),
    }
    for name, config in variants.items():
        started = time.perf_counter()
        result = train(examples, config, epochs=60, seed=0, device=device,
                       options=TrainOptions(cache_dir=cache_dir, encode_batch_size=4))  # fmt: skip
        emit(f"test accuracy: {name}", 100 * result.metrics["test"]["accuracy"], "%",
             posts=len(examples), n_test=result.counts["test"],
             seconds=round(time.perf_counter() - started, 1))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=96, help="demo posts for encoder figures")
    parser.add_argument("--batch-sizes", default="1,4,8,16")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--fusion-posts", type=int, default=0, help="run the fusion study")
    parser.add_argument("--work-dir", type=Path, default=None, help="demo data + cache folder")
    parser.add_argument(
        "--head-only", action="store_true", help="head training and its ceiling only (no encoders)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="fnd-bench-"))
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    print(f"torch threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if args.head_only:
        for device in devices:
            bench_head(ModelConfig(fusion="concat"), device)
            bench_head_ceiling(ModelConfig(fusion="concat"), device)
        return
    examples = demo_examples(work / "demo", max(args.posts, args.fusion_posts))
    for device in devices:
        model = build_model(ModelConfig()).eval().to(device)
        bench_encoders(model, examples, batch_sizes, device)
        bench_end_to_end(model, examples[: args.posts], max(batch_sizes[:2]), device)
        for fusion in ("interaction", "concat"):
            bench_head(ModelConfig(fusion=fusion), device)
        bench_head_ceiling(ModelConfig(fusion="concat"), device)
    if args.fusion_posts:
        fusion_study(examples[: args.fusion_posts], work / "features", "auto")


if __name__ == "__main__":
    main()
