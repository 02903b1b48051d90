"""int8 encoders through ONNX Runtime vs torch fp32 and bf16: speed and how far features move.

    python -m benchmarks.int8_encoders [--data ../shared/data/mediaeval-dev] [--posts 256]

A probe for "Round 3 · 7" (#30): before int8 becomes a scoring path, measure on this CPU what
it buys and what it costs. The offline preset's encoders (EfficientNet-Lite0 224 px, MiniLM-L6)
on real posts of the MediaEval dev set (pictures decoded and tokenized once, beforehand), in
the same run:

- torch fp32 and torch bf16 autocast, the encoders optimised for inference as scoring runs
  them (BatchNorm folded, channels-last);
- ONNX Runtime fp32, the same graphs exported with ``torch.onnx.export``;
- ONNX Runtime int8: the text encoder dynamically quantized (int8 weights, activations
  quantized per batch), the image encoder statically quantized (QDQ, per-channel weights,
  activation ranges calibrated on pictures that are *not* among the timed ones).

Printed: posts/s per path and its ratio to torch fp32, and how far each path's features are
from torch fp32's (cosine: mean and worst post). Then verdicts: a class-balanced logistic head
(the ``linear`` kind's recipe) fitted on ``--verdict-posts`` posts' fp32 features reads
``--verdict-posts`` other posts' features from each path: the share of labels that stay the same
as with fp32 features, and |Δp|.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine, table
from fnd_core.model.config import ModelConfig
from fnd_core.model.network import build_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mediaeval-dev"
BATCH = 32


def posts(data: Path, n: int, skip: int = 0) -> list[dict]:
    rows = [json.loads(line) for line in (data / "posts.jsonl").open()]
    rng = np.random.default_rng(3)
    order = rng.permutation(len(rows))
    return [rows[i] for i in order[skip : skip + n]]


def pixels(data: Path, rows: list[dict], size: int) -> torch.Tensor:
    from fnd_core.model.encoders.preprocess import load_pixels

    return torch.stack([load_pixels(str(data / r["image"]), image_size=size) for r in rows])


def timed(fn, batches: list, repeats: int = 2) -> tuple[float, list]:
    """Best wall time of running ``fn`` over every batch, and the outputs of the last run."""
    best, out = float("inf"), []
    for _ in range(repeats):
        started = time.perf_counter()
        out = [fn(b) for b in batches]
        best = min(best, time.perf_counter() - started)
    return best, out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def verdicts(args: argparse.Namespace, config: ModelConfig, text, paths: list) -> list[tuple]:
    """Labels of one head (fitted on fp32 features) read from each path's features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from fnd_core.model import metrics

    skip = args.posts + args.calibration
    fit_rows = posts(args.data, args.verdict_posts, skip=skip)
    eval_rows = posts(args.data, args.verdict_posts, skip=skip + args.verdict_posts)

    def encode(rows: list[dict], run_image, run_text) -> np.ndarray:
        images = pixels(args.data, rows, config.image_size)
        tokens = text.tokenize([r["text"] for r in rows])
        ids, mask = tokens["input_ids"].split(BATCH), tokens["attention_mask"].split(BATCH)
        return np.concatenate([
            np.concatenate([run_image(b) for b in images.split(BATCH)]),
            np.concatenate([run_text(pair) for pair in zip(ids, mask, strict=True)]),
        ], axis=1)  # fmt: skip

    _, fp32_image, fp32_text = paths[0]
    scaler = StandardScaler().fit(x := encode(fit_rows, fp32_image, fp32_text))
    head = LogisticRegression(class_weight="balanced", max_iter=3000, C=0.1)
    head.fit(scaler.transform(x), [r["label"] for r in fit_rows])
    y = np.array([r["label"] for r in eval_rows])

    def proba(run_image, run_text) -> np.ndarray:
        return head.predict_proba(scaler.transform(encode(eval_rows, run_image, run_text)))[:, 1]

    reference = proba(fp32_image, fp32_text)
    by_name = {name: (run_image, run_text) for name, run_image, run_text in paths}
    mixes = [
        ("torch bf16 autocast", *by_name["torch bf16 autocast"]),
        ("onnxruntime int8", *by_name["onnxruntime int8"]),
        ("int8 pictures + bf16 captions", by_name["onnxruntime int8"][0],
         by_name["torch bf16 autocast"][1]),
    ]  # fmt: skip
    rows = []
    for name, run_image, run_text in mixes:
        p = proba(run_image, run_text)
        same = float(((p >= 0.5) == (reference >= 0.5)).mean())
        delta = np.abs(p - reference)
        accuracy = metrics.balanced_accuracy(y, (p >= 0.5).astype(int))
        base = metrics.balanced_accuracy(y, (reference >= 0.5).astype(int))
        rows.append((name, f"{same:.2%}", f"{delta.mean():.4f}", f"{delta.max():.4f}",
                     f"{accuracy:.3f} ({base:.3f})"))  # fmt: skip
    return rows


def main() -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--posts", type=int, default=256)
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument(
        "--verdict-posts", type=int, default=1000, help="posts to fit a head on, as many to compare"
    )
    args = parser.parse_args()
    threads = torch.get_num_threads()
    config = ModelConfig.for_preset("offline")
    model = build_model(config).eval()
    image, text = model.image_encoder, model.text_encoder
    rows = posts(args.data, args.posts)
    calibration_rows = posts(args.data, args.calibration, skip=args.posts)
    size = config.image_size
    images = pixels(args.data, rows, size)
    calibration = pixels(args.data, calibration_rows, size)
    tokens = text.tokenize([r["text"] for r in rows])
    image_batches = list(images.split(BATCH))
    text_batches = [
        (ids, mask)
        for ids, mask in zip(
            tokens["input_ids"].split(BATCH), tokens["attention_mask"].split(BATCH), strict=True
        )
    ]
    print(f"# {machine()}, torch {torch.__version__} ({threads} threads), onnxruntime "
          f"{ort.__version__}; {len(rows)} MediaEval posts, batches of {BATCH}")  # fmt: skip

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        # export before optimising: the exporter sees the plain graph, ORT folds it itself
        torch.onnx.export(
            image, (images[:2],), work / "image.onnx", input_names=["pixels"],
            output_names=["features"], dynamic_axes={"pixels": {0: "b"}, "features": {0: "b"}},
            dynamo=False,
        )  # fmt: skip
        ids, mask = text_batches[0]
        torch.onnx.export(
            text, (ids[:2], mask[:2]), work / "text.onnx",
            input_names=["input_ids", "attention_mask"], output_names=["features"],
            dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"},
                          "features": {0: "b"}},
            dynamo=False,
        )  # fmt: skip
        quantize_dynamic(
            work / "text.onnx",
            work / "text.int8.onnx",
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )

        class Pictures(CalibrationDataReader):
            def __init__(self) -> None:
                self.batches = iter([{"pixels": b.numpy()} for b in calibration.split(8)])

            def get_next(self) -> dict | None:
                return next(self.batches, None)

        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(work / "image.onnx", work / "image.pre.onnx")
        quantize_static(
            work / "image.pre.onnx", work / "image.int8.onnx", Pictures(),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )  # fmt: skip

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1

        def session(name: str) -> ort.InferenceSession:
            return ort.InferenceSession(
                str(work / name), options, providers=["CPUExecutionProvider"]
            )

        sessions = {k: session(f"{k}.onnx") for k in ("image", "text", "image.int8", "text.int8")}

        image.optimise_for_inference()
        text.optimise_for_inference()

        def torch_image(dtype: torch.dtype | None):
            def run(b: torch.Tensor) -> np.ndarray:
                with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16,
                                                            enabled=dtype is not None):  # fmt: skip
                    return image(b).float().numpy()

            return run

        def torch_text(dtype: torch.dtype | None):
            def run(b: tuple) -> np.ndarray:
                with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16,
                                                            enabled=dtype is not None):  # fmt: skip
                    return text(*b).float().numpy()

            return run

        def ort_image(name: str):
            return lambda b: sessions[name].run(None, {"pixels": b.numpy()})[0]

        def ort_text(name: str):
            return lambda b: sessions[name].run(
                None, {"input_ids": b[0].numpy(), "attention_mask": b[1].numpy()}
            )[0]

        paths = [
            ("torch fp32", torch_image(None), torch_text(None)),
            ("torch bf16 autocast", torch_image(torch.bfloat16), torch_text(torch.bfloat16)),
            ("onnxruntime fp32", ort_image("image"), ort_text("text")),
            ("onnxruntime int8", ort_image("image.int8"), ort_text("text.int8")),
        ]
        results = []
        for name, run_image, run_text in paths:
            image_s, image_out = timed(run_image, image_batches)
            text_s, text_out = timed(run_text, text_batches)
            results.append((name, image_s, text_s, np.concatenate(image_out),
                            np.concatenate(text_out)))  # fmt: skip

        verdict_rows = []
        if args.verdict_posts:
            verdict_rows = verdicts(args, config, text, paths)

    reference = results[0]
    rows_out = []
    for name, image_s, text_s, image_f, text_f in results:
        image_cos, text_cos = cosines(image_f, reference[3]), cosines(text_f, reference[4])
        rows_out.append((
            name,
            f"{len(rows) / image_s:.0f}", f"{reference[1] / image_s:.2f}x",
            f"{len(rows) / text_s:.0f}", f"{reference[2] / text_s:.2f}x",
            f"{len(rows) / (image_s + text_s):.0f}",
            f"{(reference[1] + reference[2]) / (image_s + text_s):.2f}x",
            f"{image_cos.mean():.4f} / {image_cos.min():.4f}",
            f"{text_cos.mean():.4f} / {text_cos.min():.4f}",
        ))  # fmt: skip
    print(table(rows_out, ("path", "image posts/s", "vs fp32", "text posts/s", "vs fp32",
                           "both posts/s", "vs fp32", "image cosine to fp32 (mean / worst)",
                           "text cosine (mean / worst)")))  # fmt: skip
    if verdict_rows:
        print(f"verdicts of a class-balanced logistic head fitted on {args.verdict_posts} posts' "
              f"fp32 features, on {args.verdict_posts} other posts, against fp32's:")  # fmt: skip
        print(table(verdict_rows, ("features", "same label", "mean |Δp|", "largest |Δp|",
                                   "balanced accuracy (fp32's)")))  # fmt: skip


if __name__ == "__main__":
    main()
