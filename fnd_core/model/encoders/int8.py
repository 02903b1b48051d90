"""int8 encoders through ONNX Runtime: quantized once per backbone, kept in the store, verified.

Why ONNX Runtime: it was measured against torch on the offline preset's encoders
(``benchmarks/int8_encoders.py``, docs/benchmarks.md): the statically quantized convnet ran
6.4x torch fp32 and 3.1x torch bf16 on an AMX CPU, and its int8 kernels (VNNI, AVX2) exist on
every x86 CPU users run workers on. OpenVINO was not on this machine's package index; torch's
own int8 (``torch.ao``) has no maintained CPU path for these graphs.

- The **image encoder** is quantized statically (QDQ, int8 per-channel weights, uint8
  activations), its activation ranges calibrated on pictures of the model's training snapshot.
- The **text encoder** is quantized dynamically (int8 per-channel MatMul weights, activations
  quantized per batch): no calibration.

Each is built at most once per backbone id (the float encoder's id: weights digest, input size,
preprocessing) and weight width (:func:`weight_bits`: 8 bits on CPUs with VNNI, 7 elsewhere),
in ``<store>/encoders-int8/<backbone id>/w<bits>/``: ``model.onnx`` and ``record.json``
(its sha256, how it was built, the calibration pictures by URI and sha256, the versions). On
load the bytes are checked against the record; a missing or altered file is rebuilt, said in
the log. Features from an int8 encoder are cached under their own id, which carries the int8
file's digest, so int8 and float features never mix, nor two different int8 builds.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fnd_core.io import storage

if TYPE_CHECKING:
    import torch

    from fnd_core.model.encoders.backbones import ImageBackbone, TextBackbone

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc malloc.h)

FORMAT = "fnd-int8/3"  # 3: weights in 8 or 7 bits, as the CPU needs (weight_bits)
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})  # /proc/cpuinfo names
FOLDER = "encoders-int8"
CALIBRATION_BATCH = 8
IMAGE_METHOD = "static QDQ: int8 per-channel weights, uint8 activations, MinMax calibration"
TEXT_METHOD = "dynamic: int8 per-channel MatMul weights, activations quantized per batch"


class Int8UnavailableError(RuntimeError):
    """An int8 encoder cannot be built or loaded here (no ONNX Runtime, no calibration)."""


@dataclass(frozen=True)
class CalibrationPicture:
    """One picture of the training snapshot the image encoder's ranges were calibrated on."""

    uri: str
    sha256: str


@dataclass
class Int8Encoder:
    """An ONNX Runtime int8 session with the float encoder's call shape (tensors in and out)."""

    kind: str  # "image" or "text"
    backbone_id: str  # the float encoder's id
    record: dict[str, Any]
    session: Any  # onnxruntime.InferenceSession

    @property
    def cache_id(self) -> str:
        """Feature-cache id: the float id, ``int8`` and the int8 file's own digest."""
        return f"{self.backbone_id}-int8-{self.record['sha256'][:12]}"

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        import torch

        names = [i.name for i in self.session.get_inputs()]
        feeds = {name: x.cpu().numpy() for name, x in zip(names, inputs, strict=True)}
        return torch.from_numpy(self.session.run(None, feeds)[0]).float()


@functools.cache
def weight_bits() -> int:
    """How many bits this CPU's int8 weights keep: 8 where it multiplies uint8 by int8 into
    32-bit sums (VNNI: AVX512-VNNI, AVX-VNNI, AMX), 7 elsewhere.

    Without VNNI, ONNX Runtime's kernels (AVX2's ``vpmaddubsw``) add pairs of products into 16
    bits, which full-range weights overflow: on an AVX2-only EPYC they left 89.3 % of a demo
    champion's labels as fp32's. Seven bits (ONNX Runtime's ``reduce_range``) cannot overflow,
    but cost precision where nothing overflows: on an AVX512-VNNI EPYC they left 98.97 % of
    10,000 demo posts' labels as fp32's (docs/benchmarks.md). A store may serve both kinds of
    CPU: each width is built and kept apart (:func:`folder_uri`).
    """
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: the width that is right everywhere
        return 7
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split()}
    return 8 if flags & VNNI_FLAGS else 7


def folder_uri(store: str, backbone_id: str, bits: int | None = None) -> str:
    """Where ``backbone_id``'s int8 encoder with ``bits``-bit weights (default: this CPU's) is
    kept."""
    return storage.join(store, FOLDER, backbone_id, f"w{bits or weight_bits()}")


def load_or_build(
    encoder: ImageBackbone | TextBackbone,
    kind: str,
    backbone_id: str,
    store: str,
    *,
    calibration: Sequence[CalibrationPicture] = (),
    image_size: int = 224,
    threads: int | None = None,
    gcs_endpoint: str | None = None,
    before_session: Callable[[], None] | None = None,
    bits: int | None = None,
) -> Int8Encoder:
    """The int8 encoder for ``backbone_id`` from the store, built (and stored) when missing.

    ``calibration``: pictures of the training snapshot (needed to build an image encoder;
    fewer than 8 is refused). A stored file whose sha256 differs from its record, or a record
    of another format or backbone, is rebuilt. ``before_session`` runs once the int8 model is
    verified or built, before its session is made: the float encoder is no longer needed then,
    and releasing it there keeps the two from being held at once. ``bits``: the weights' width
    (default: what this CPU needs, :func:`weight_bits`).
    """
    bits = bits or weight_bits()
    folder = folder_uri(store, backbone_id, bits)
    found = _read_verified(folder, backbone_id, kind, bits, gcs_endpoint)
    if found is not None:
        record, model = found
        if before_session is not None:
            before_session()
        return Int8Encoder(kind, backbone_id, record, _session(model, threads))
    options = {"endpoint_url": gcs_endpoint} if gcs_endpoint else None
    record, model = _build(encoder, kind, backbone_id, calibration, image_size, options, bits)
    # the model first, its record last: a reader between the two sees a mismatch and rebuilds
    storage.write_bytes(storage.join(folder, "model.onnx"), model, gcs_endpoint=gcs_endpoint)
    storage.write_bytes(
        storage.join(folder, "record.json"), json.dumps(record, indent=1).encode(),
        gcs_endpoint=gcs_endpoint,
    )  # fmt: skip
    if before_session is not None:
        before_session()
    return Int8Encoder(kind, backbone_id, record, _session(model, threads))


def stored_sha256(store: str, backbone_id: str, gcs_endpoint: str | None = None) -> str | None:
    """The sha256 the store's record gives ``backbone_id``'s int8 model of this CPU's weight
    width (None: no readable record). Not a verification: :func:`load_or_build` verifies the
    file itself."""
    uri = storage.join(folder_uri(store, backbone_id), "record.json")
    try:
        if not storage.exists(uri, gcs_endpoint=gcs_endpoint):
            return None
        sha = json.loads(storage.read_bytes(uri, gcs_endpoint=gcs_endpoint)).get("sha256")
    except (ValueError, AttributeError):
        return None
    return sha if isinstance(sha, str) else None


def _read_verified(
    folder: str, backbone_id: str, kind: str, bits: int, gcs_endpoint: str | None
) -> tuple[dict, bytes] | None:
    """(record, model bytes) when both are there and agree; None, with the reason logged."""
    record_uri, model_uri = storage.join(folder, "record.json"), storage.join(folder, "model.onnx")
    there = [storage.exists(u, gcs_endpoint=gcs_endpoint) for u in (record_uri, model_uri)]
    if not all(there):
        log.info("int8 %s encoder for %s not in the store yet: building it", kind, backbone_id)
        return None
    try:
        record = json.loads(storage.read_bytes(record_uri, gcs_endpoint=gcs_endpoint))
    except ValueError as exc:
        log.warning("int8 record %s is unreadable (%s): rebuilding", record_uri, exc)
        return None
    model = storage.read_bytes(model_uri, gcs_endpoint=gcs_endpoint)
    expected = (FORMAT, backbone_id, kind, bits)
    found = tuple(record.get(k) for k in ("format", "backbone_id", "kind", "weight_bits"))
    if found != expected:
        log.warning("int8 record %s is not %s's %s encoder with %d-bit weights: rebuilding",
                    record_uri, *expected[1:])  # fmt: skip
        return None
    if hashlib.sha256(model).hexdigest() != record.get("sha256"):
        log.warning(
            "int8 %s encoder %s does not match its recorded sha256 (altered or half written): "
            "rebuilding",
            kind, model_uri,
        )  # fmt: skip
        return None
    return record, model


def _session(model: bytes, threads: int | None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a pinned dependency
        raise Int8UnavailableError("int8 encoders need onnxruntime (requirements.lock)") from exc
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    # No spin-waiting after a run: spinning threads took the cores from decoding the next
    # batch (1,000 demo pictures: decoding 2.5 s -> 0.8 s, the image path 6.0 s -> 3.7 s)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # No arena: it keeps the largest batch's activations for the process's life, which put
    # int8 scoring's peak RSS above the float path's (memory_peak, docs/benchmarks.md)
    options.enable_cpu_mem_arena = False
    _fix_mmap_threshold()
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


@functools.cache
def _fix_mmap_threshold() -> None:
    """Hold glibc's mmap threshold at its default start, 128 KiB, for this process.

    glibc raises the threshold each time a large block is freed (up to 32 MiB); ONNX Runtime's
    activations, without its arena, are then carved from its threads' heaps, which keep what
    they free. Scoring's peak RSS wandered from 1.19 to 2.6 GiB between identical int8 runs
    (2,000 demo posts, offline preset); with the threshold fixed, large blocks stay in mmap and
    go back to the system when freed: 1.13 GiB in every run measured (docs/benchmarks.md).
    Not glibc (musl, macOS): nothing to do.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        return


def _build(
    encoder: ImageBackbone | TextBackbone,
    kind: str,
    backbone_id: str,
    calibration: Sequence[CalibrationPicture],
    image_size: int,
    storage_options: dict[str, Any] | None,
    bits: int,
) -> tuple[dict[str, Any], bytes]:
    """Export ``encoder`` to ONNX and quantize it, weights in ``bits`` bits; (record, bytes)."""
    import onnx
    import onnxruntime
    import torch

    if kind == "image" and len(calibration) < CALIBRATION_BATCH:
        raise Int8UnavailableError(
            f"the int8 image encoder needs at least {CALIBRATION_BATCH} calibration pictures "
            f"from the training snapshot; got {len(calibration)}"
        )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fnd-int8-") as folder:
        work = Path(folder)
        if kind == "image":
            _export_image(cast("ImageBackbone", encoder), work / "float.onnx", image_size)
            _quantize_image(work, calibration, image_size, storage_options, bits)
            method = IMAGE_METHOD
        else:
            _export_text(cast("TextBackbone", encoder), work / "float.onnx")
            _quantize_text(work, bits)
            method = TEXT_METHOD
        model = (work / "int8.onnx").read_bytes()
    seconds = time.perf_counter() - started
    record = {
        "format": FORMAT,
        "kind": kind,
        "backbone_id": backbone_id,
        "sha256": hashlib.sha256(model).hexdigest(),
        "bytes": len(model),
        "weight_bits": bits,
        "method": method,
        "calibration": [{"uri": p.uri, "sha256": p.sha256} for p in calibration]
        if kind == "image"
        else [],
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 2),
        "versions": {
            "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__,
            "torch": torch.__version__,
        },  # fmt: skip
    }
    log.info(
        "built the int8 %s encoder for %s in %.1f s (%s; %.1f MB)",
        kind, backbone_id, seconds, method, len(model) / 1e6,
    )  # fmt: skip
    return record, model


def _export_image(encoder: ImageBackbone, path: Path, image_size: int) -> None:
    import torch

    pixels = torch.zeros(2, 3, image_size, image_size, dtype=torch.uint8)
    _export(encoder, (pixels,), path, ["pixels"], {"pixels": {0: "batch"}})


def _export_text(encoder: TextBackbone, path: Path) -> None:
    tokens = encoder.tokenize(["an example post", "another, somewhat longer example post"])
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    inputs = (tokens["input_ids"], tokens["attention_mask"])
    _export(encoder, inputs, path, ["input_ids", "attention_mask"], axes)


def _export(module: Any, inputs: tuple, path: Path, names: list[str], axes: dict) -> None:
    import warnings

    import torch

    was_training = module.training
    module.eval()  # a model just trained may be in training mode: export inference behaviour
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's tracer warnings
            torch.onnx.export(
                module, inputs, path, input_names=names, output_names=["features"],
                dynamic_axes={**axes, "features": {0: "batch"}}, dynamo=False,
            )  # fmt: skip
    finally:
        module.train(was_training)


def _quantize_image(
    work: Path,
    calibration: Sequence[CalibrationPicture],
    image_size: int,
    storage_options: dict[str, Any] | None,
    bits: int,
) -> None:
    import torch
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from fnd_core.model.encoders.preprocess import load_pixels

    pixels = torch.stack([
        load_pixels(p.uri, image_size=image_size, storage_options=storage_options)
        for p in calibration
    ])  # fmt: skip

    class Pictures(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter({"pixels": b.numpy()} for b in pixels.split(CALIBRATION_BATCH))

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    quant_pre_process(work / "float.onnx", work / "pre.onnx")
    quantize_static(
        work / "pre.onnx", work / "int8.onnx", Pictures(), quant_format=QuantFormat.QDQ,
        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        reduce_range=bits == 7,
    )  # fmt: skip


def _quantize_text(work: Path, bits: int) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        work / "float.onnx", work / "int8.onnx", weight_type=QuantType.QInt8, per_channel=True,
        op_types_to_quantize=["MatMul"], reduce_range=bits == 7,
    )  # fmt: skip
