"""What each encoder runs in when a model scores: its float path, or int8 where that pays here.

``FND_INFERENCE_PRECISION``:

- ``fp32`` / ``bf16``: torch, as before.
- ``int8``: both encoders through ONNX Runtime int8 (:mod:`fnd_core.model.encoders.int8`),
  built once per backbone from pictures of the model's training snapshot.
- ``auto`` (default): per encoder, int8 only where, on this machine's CPU, it measured faster
  than the float path (bf16 where native, else fp32) **and** the model's verdicts on posts of
  its training snapshot stay the same (at least 99.5 % identical labels). Measured once per
  model version and CPU, recorded in the store (``encoders-int8/choices/``) and reused; on a
  GPU, or for random-init test encoders, ``auto`` stays on the float path.

The head is always the one fitted on float features: int8 features are close enough that its
labels hold (the check above, and docs/benchmarks.md), so no second head is fitted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fnd_core.io import storage

if TYPE_CHECKING:
    import numpy as np
    import torch
    from sqlalchemy.engine import Engine

    from fnd_core.model.artifacts import LoadedModel
    from fnd_core.model.examples import PostExample
    from fnd_core.model.network import FakeNewsModel
    from fnd_core.pipeline.registry import ModelVersion
    from fnd_core.settings import Settings

log = logging.getLogger(__name__)

CALIBRATION_PICTURES = 64  # static quantization's activation ranges
CHECK_POSTS = 256  # the verdict check and the speed measurement
MIN_SAME_LABELS = 0.995
MIN_SPEED_UP = 1.1  # int8 must beat the float path by this much to be chosen by ``auto``


@dataclass
class PrecisionChoice:
    """What ``auto`` measured for one model version on one CPU, and what it chose."""

    version: str
    cpu: str
    float_precision: str
    chosen: dict[str, str]  # encoder kind -> fp32 | bf16 | int8
    posts_per_s: dict[str, dict[str, float]]  # kind -> {"float": x, "int8": y}
    same_labels: float  # share of the check posts whose label int8 left unchanged
    largest_delta_p: float
    check_posts: int
    int8_sha256: dict[str, str]
    measured_at: str


def prepare(
    loaded: LoadedModel, version: ModelVersion, settings: Settings, engine: Engine
) -> dict[str, str] | None:
    """Attach int8 encoders to ``loaded.model`` where ``FND_INFERENCE_PRECISION`` asks for
    them, and return what each encoder will run in (None: the float path, nothing attached)."""
    from fnd_core.model.network import FakeNewsModel
    from fnd_core.model.runtime import check_precision, module_device

    precision = check_precision(settings.inference_precision)
    model = loaded.model
    if not isinstance(model, FakeNewsModel):
        return None
    if getattr(model, "prepared_for", None) == precision:  # this process prepared it already
        return model.encoder_precisions
    model.encoder_precisions, chosen = None, None
    device = module_device(model)
    if precision == "int8" and device.type != "cpu":
        raise ValueError("FND_INFERENCE_PRECISION=int8 runs on CPU; on a GPU use bf16 or auto")
    if precision == "int8" or (precision == "auto" and _auto_considers_int8(model)):
        posts = _snapshot_posts(engine, version.config.get("snapshot_as_of"), model)
        if precision == "auto":
            chosen = _auto(loaded, version, settings, posts)
        else:
            model.int8_encoders = _int8_encoders(model, settings, posts)
            chosen = dict.fromkeys(model.int8_encoders, "int8")
        log.info("model %s scores with its encoders in %s", version.version, chosen)
    model.encoder_precisions, model.prepared_for = chosen, precision
    return chosen


def build_ahead(model: Any, settings: Settings, engine: Engine, as_of: str) -> None:
    """At training: build the int8 encoders into the store now, where scoring would use them,
    so that the first scoring run does not pay for it (seconds, once per encoder). A failure
    is logged, never fatal: scoring then builds them, or says why it cannot."""
    from fnd_core.model.network import FakeNewsModel

    precision = settings.inference_precision
    if not isinstance(model, FakeNewsModel) or precision not in ("auto", "int8"):
        return
    if precision == "auto" and not _auto_considers_int8(model):
        return
    try:
        _int8_encoders(model, settings, _snapshot_posts(engine, as_of, model))
    except Exception as exc:  # noqa: BLE001 - an optimisation ahead of time, not a step
        log.warning("int8 encoders not built at training (%s): scoring will build them", exc)


def _auto_considers_int8(model: FakeNewsModel) -> bool:
    """On CPU, for pretrained encoders (the tiny preset's random-init ones are for tests)."""
    from fnd_core.model import presets
    from fnd_core.model.runtime import module_device

    preset = presets.get(model.config.preset)
    test_encoders = any("random init" in e.weights for e in (preset.image, preset.text))
    return module_device(model).type == "cpu" and not test_encoders


def cpu_tag() -> str:
    """The CPU features that decide int8 vs float speed: torch's kernel level, bf16, AMX."""
    import torch

    from fnd_core.model.runtime import native_bf16

    level = torch.backends.cpu.get_cpu_capability().lower()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return f"{level}{'-bf16' if native_bf16(torch.device('cpu')) else ''}{'-amx' if amx else ''}"


def _snapshot_posts(engine: Engine, as_of: str | None, model: FakeNewsModel) -> list[PostExample]:
    """Up to CALIBRATION_PICTURES + CHECK_POSTS posts of the model's training snapshot, in a
    seeded order (the same posts on every machine): calibration pictures first."""
    import numpy as np

    from fnd_core.pipeline.training_snapshot import load_examples

    examples = load_examples(engine, as_of=datetime.fromisoformat(as_of) if as_of else None)
    if model.config.uses_image:
        examples = [e for e in examples if e.image_uri]
    order = np.random.default_rng(0).permutation(len(examples))
    return [examples[i] for i in order[: CALIBRATION_PICTURES + CHECK_POSTS]]


def _int8_encoders(
    model: FakeNewsModel, settings: Settings, posts: list[PostExample]
) -> dict[str, Any]:
    """The model's encoders in int8, from the store (built there when missing)."""
    from fnd_core.model.encoders import int8

    calibration = [
        int8.CalibrationPicture(p.image_uri, p.image_sha256 or "")
        for p in posts[:CALIBRATION_PICTURES]
    ]
    out = {}
    for kind, encoder, float_id in _encoders(model):
        out[kind] = int8.load_or_build(
            encoder, kind, float_id, settings.store, calibration=calibration,
            image_size=model.config.image_size, gcs_endpoint=settings.gcs_endpoint,
        )  # fmt: skip
    return out


def _encoders(model: FakeNewsModel) -> list[tuple[str, Any, str]]:
    """(kind, float encoder, its backbone id) for each encoder the model reads."""
    out: list[tuple[str, Any, str]] = []
    if model.image_encoder is not None:
        out.append(
            ("image", model.image_encoder, model.image_encoder.backbone_id(model.config.image_size))
        )
    if model.text_encoder is not None:
        out.append(
            ("text", model.text_encoder, model.text_encoder.backbone_id(model.config.max_tokens))
        )
    return out


def _auto(
    loaded: LoadedModel, version: ModelVersion, settings: Settings, posts: list[PostExample]
) -> dict[str, str]:
    """The recorded choice for this model and CPU, or a new measurement (then recorded)."""
    from fnd_core.model.runtime import float_precision, module_device

    model: FakeNewsModel = loaded.model  # type: ignore[assignment]
    float_p = float_precision("auto", module_device(model))
    model.int8_encoders = _int8_encoders(model, settings, posts)
    shas = {kind: e.record["sha256"] for kind, e in model.int8_encoders.items()}
    uri = storage.join(
        settings.store, "encoders-int8", "choices", f"{version.version}-{cpu_tag()}.json"
    )
    recorded = _read_choice(uri, settings.gcs_endpoint)
    if recorded is not None and recorded.int8_sha256 == shas:
        log.info("int8 choice for %s on %s (recorded): %s", version.version, cpu_tag(), recorded)
        return recorded.chosen
    check = posts[CALIBRATION_PICTURES:] or posts
    choice = measure(loaded, check, float_p, batch_size=settings.batch_size)
    choice.version = version.version
    storage.write_bytes(
        uri, json.dumps(asdict(choice), indent=1).encode(), gcs_endpoint=settings.gcs_endpoint
    )
    log.info("int8 choice for %s on %s (measured): %s", version.version, cpu_tag(), choice)
    return choice.chosen


def _read_choice(uri: str, gcs_endpoint: str | None) -> PrecisionChoice | None:
    if not storage.exists(uri, gcs_endpoint=gcs_endpoint):
        return None
    try:
        return PrecisionChoice(**json.loads(storage.read_bytes(uri, gcs_endpoint=gcs_endpoint)))
    except (ValueError, TypeError) as exc:
        log.warning("int8 choice %s is unreadable (%s): measuring again", uri, exc)
        return None


def measure(
    loaded: LoadedModel, posts: list[PostExample], float_p: str, *, batch_size: int = 4
) -> PrecisionChoice:
    """Time each encoder's float and int8 paths on ``posts`` (decoded once, beforehand), pick
    int8 where it is ``MIN_SPEED_UP`` faster, and keep that only if the labels hold."""
    import numpy as np
    import torch

    from fnd_core.model.encoders.preprocess import load_pixels
    from fnd_core.model.features.encoding import EncodedFeatures
    from fnd_core.model.features.inference import head_proba
    from fnd_core.model.runtime import inference_autocast, module_device

    model: FakeNewsModel = loaded.model  # type: ignore[assignment]
    device = module_device(model)
    inputs: dict[str, list[tuple[torch.Tensor, ...]]] = {}
    if model.image_encoder is not None:
        pixels = torch.stack([
            load_pixels(p.image_uri, image_size=model.config.image_size) for p in posts
        ])  # fmt: skip
        inputs["image"] = [(b,) for b in pixels.split(batch_size)]
    if model.text_encoder is not None:
        order = sorted(range(len(posts)), key=lambda i: len(posts[i].text))
        inputs["text"] = []
        for lo in range(0, len(order), 32):
            rows = order[lo : lo + 32]
            tokens = model.tokenize([posts[i].text for i in rows])
            inputs["text"].append((tokens["input_ids"], tokens["attention_mask"]))
        undo = torch.as_tensor(order).argsort()
    float_run: dict[str, Callable] = {"image": model.encode_images, "text": model.encode_texts}
    features: dict[str, dict[str, torch.Tensor]] = {"float": {}, "int8": {}}
    speed: dict[str, dict[str, float]] = {}
    for kind, batches in inputs.items():
        speed[kind] = {}
        for path, run in (("float", float_run[kind]), ("int8", model.int8_encoders[kind])):
            with torch.inference_mode(), inference_autocast(device, float_p if path == "float"
                                                            else "fp32"):  # fmt: skip
                run(*batches[0])  # warm-up: first-call allocations are not the path's speed
                started = time.perf_counter()
                out = torch.cat([run(*b).float() for b in batches])
                speed[kind][path] = round(len(posts) / (time.perf_counter() - started), 1)
            features[path][kind] = out[undo] if kind == "text" else out
    chosen = {
        kind: "int8" if s["int8"] >= MIN_SPEED_UP * s["float"] else float_p
        for kind, s in speed.items()
    }

    def labels(mix: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
        pick = {k: features["int8" if p == "int8" else "float"][k] for k, p in mix.items()}
        p = loaded.calibration.apply(
            head_proba(model, EncodedFeatures(pick.get("image"), pick.get("text")))
        )
        return p, p >= loaded.threshold

    p_float, y_float = labels(dict.fromkeys(inputs, float_p))
    p_int8, y_int8 = labels(chosen)
    same = float((y_float == y_int8).mean())
    if "int8" in chosen.values() and same < MIN_SAME_LABELS:
        log.warning(
            "int8 encoders left %.2f %% of %d labels unchanged (< %.1f %%): staying on %s",
            100 * same, len(posts), 100 * MIN_SAME_LABELS, float_p,
        )  # fmt: skip
        chosen = dict.fromkeys(inputs, float_p)
    return PrecisionChoice(
        version="",
        cpu=cpu_tag(),
        float_precision=float_p,
        chosen=chosen,
        posts_per_s=speed,
        same_labels=round(same, 4),
        largest_delta_p=round(float(np.abs(p_int8 - p_float).max()), 4),
        check_posts=len(posts),
        int8_sha256={k: e.record["sha256"] for k, e in model.int8_encoders.items()},
        measured_at=datetime.now().astimezone().isoformat(timespec="seconds"),
    )
