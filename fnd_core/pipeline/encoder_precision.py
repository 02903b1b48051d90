"""What each encoder runs in when a model scores: its float path, or int8 where that pays here.

``FND_INFERENCE_PRECISION``:

- ``fp32`` / ``bf16``: torch, as before.
- ``int8``: both encoders through ONNX Runtime int8 (:mod:`fnd_core.model.encoders.int8`),
  built once per backbone from pictures of the model's training snapshot.
- ``auto`` (default): per encoder, int8 only where, on this machine's CPU, it measured faster
  than the float path (bf16 where native, else fp32) **and** the model's verdicts stay the
  same: at least 99.5 % identical labels on posts of its training snapshot, and as many
  expected on posts of new topics (their scores sit nearer the threshold: see
  :func:`measure`); else int8 for the image encoder alone, under the same check. Measured once per
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
FLOAT = ("fp32", "bf16")
CHECK = 2  # the verdict check's version: 2 added the share expected on new topics


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
    # the share expected on posts of new topics (None: the version recorded no quantiles)
    new_topic_same_labels: float | None = None
    check: int = 1  # records written before the check had a version were version 1


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
    if model.released_encoders:  # scoring loads the model again (scoring._load_for_scoring)
        raise ValueError(
            f"this model gave up its {sorted(model.released_encoders)} float encoders to int8 "
            f"for FND_INFERENCE_PRECISION={model.prepared_for}: load it again to score in "
            f"{precision}"
        )
    model.encoder_precisions, chosen = None, None
    device = module_device(model)
    if precision == "int8" and device.type != "cpu":
        raise ValueError("FND_INFERENCE_PRECISION=int8 runs on CPU; on a GPU use bf16 or auto")
    if precision == "int8" or (precision == "auto" and _auto_considers_int8(model)):
        posts = _snapshot_posts(engine, version.config.get("snapshot_as_of"), model)
        if precision == "auto":
            chosen = _auto(loaded, version, settings, posts)
        else:  # each float encoder released before its int8 session is made: never both held
            every = {kind for kind, _, _ in _encoders(model)}
            model.int8_encoders = _int8_encoders(model, settings, posts, release=every)
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
    """The CPU features that decide int8 vs float speed and int8's verdicts: torch's kernel
    level, bf16, AMX, and whether int8 weights keep 8 bits here (VNNI) or 7."""
    import torch

    from fnd_core.model.encoders.int8 import weight_bits
    from fnd_core.model.runtime import native_bf16

    level = torch.backends.cpu.get_cpu_capability().lower()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    bf16 = "-bf16" if native_bf16(torch.device("cpu")) else ""
    return f"{level}{bf16}{'-amx' if amx else ''}-int8w{weight_bits()}"


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
    model: FakeNewsModel,
    settings: Settings,
    posts: list[PostExample],
    *,
    kinds: set[str] | None = None,
    release: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Any]:
    """The model's encoders (``kinds``: all) in int8, from the store (built there when
    missing); those in ``release`` lose their float weights before their session is made."""
    from fnd_core.model.encoders import int8

    calibration = [
        int8.CalibrationPicture(p.image_uri, p.image_sha256 or "")
        for p in posts[:CALIBRATION_PICTURES]
    ]
    out = {}
    for kind, encoder, float_id in _encoders(model):
        if kinds is not None and kind not in kinds:
            continue
        out[kind] = int8.load_or_build(
            encoder, kind, float_id, settings.store, calibration=calibration,
            image_size=model.config.image_size, gcs_endpoint=settings.gcs_endpoint,
            before_session=encoder.release_weights if kind in release else None,
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
    """The recorded choice for this model and CPU, or a new measurement (then recorded).

    Either way, the encoders chosen for int8 lose their float weights, and only their int8
    sessions are kept: scoring holds one copy of each encoder."""
    model: FakeNewsModel = loaded.model  # type: ignore[assignment]
    uri = storage.join(
        settings.store, "encoders-int8", "choices", f"{version.version}-{cpu_tag()}.json"
    )
    recorded = _recorded_choice(uri, model, settings)
    if recorded is not None:
        log.info("int8 choice for %s on %s (recorded): %s", version.version, cpu_tag(), recorded)
        chosen = {k for k, p in recorded.chosen.items() if p == "int8"}
        model.int8_encoders = _int8_encoders(model, settings, posts, kinds=chosen, release=chosen)
        shas = {k: e.record["sha256"] for k, e in model.int8_encoders.items()}
        if shas != {k: recorded.int8_sha256[k] for k in chosen}:  # rebuilt: altered in the store
            log.warning(  # the record no longer matches the store: the next run measures again
                "int8 encoders rebuilt since %s was measured: served as chosen then", uri
            )
        return recorded.chosen
    choice = _measured_choice(loaded, version, settings, posts)
    storage.write_bytes(
        uri, json.dumps(asdict(choice), indent=1).encode(), gcs_endpoint=settings.gcs_endpoint
    )
    log.info("int8 choice for %s on %s (measured): %s", version.version, cpu_tag(), choice)
    model.int8_encoders = {  # the sessions not chosen would only hold memory
        k: e for k, e in model.int8_encoders.items() if choice.chosen[k] == "int8"
    }
    for kind, encoder, _ in _encoders(model):
        if kind in model.int8_encoders:
            encoder.release_weights()
    return choice.chosen


def _recorded_choice(uri: str, model: FakeNewsModel, settings: Settings) -> PrecisionChoice | None:
    """The choice measured for this version and CPU, if it was measured on the int8 models
    the store holds now, by the current check (``CHECK``), and names this model's encoders."""
    from fnd_core.model.encoders import int8

    recorded = _read_choice(uri, settings.gcs_endpoint)
    if recorded is None:
        return None
    stored = {
        kind: int8.stored_sha256(settings.store, float_id, settings.gcs_endpoint)
        for kind, _, float_id in _encoders(model)
    }
    # a record naming other encoders, or precisions this path cannot run, is measured again
    chosen = recorded.chosen if isinstance(recorded.chosen, dict) else {}
    runnable = ("int8", recorded.float_precision if recorded.float_precision in FLOAT else "")
    sane = set(chosen) == set(stored) and all(chosen[k] in runnable for k in chosen)
    current = recorded.int8_sha256 == stored and recorded.check == CHECK
    return recorded if sane and current else None


def _measured_choice(
    loaded: LoadedModel, version: ModelVersion, settings: Settings, posts: list[PostExample]
) -> PrecisionChoice:
    """Every encoder built or loaded in int8 beside its float path, and measured."""
    from fnd_core.model.runtime import float_precision, module_device

    model: FakeNewsModel = loaded.model  # type: ignore[assignment]
    model.int8_encoders = _int8_encoders(model, settings, posts)
    float_p = float_precision("auto", module_device(model))
    choice = measure(
        loaded, posts[CALIBRATION_PICTURES:] or posts, float_p,
        batch_size=settings.batch_size,
        new_topic_logits=version.metrics.get("score_logit_quantiles"),
    )  # fmt: skip
    choice.version = version.version
    return choice


def _read_choice(uri: str, gcs_endpoint: str | None) -> PrecisionChoice | None:
    if not storage.exists(uri, gcs_endpoint=gcs_endpoint):
        return None
    try:
        return PrecisionChoice(**json.loads(storage.read_bytes(uri, gcs_endpoint=gcs_endpoint)))
    except (ValueError, TypeError) as exc:
        log.warning("int8 choice %s is unreadable (%s): measuring again", uri, exc)
        return None


def measure(
    loaded: LoadedModel,
    posts: list[PostExample],
    float_p: str,
    *,
    batch_size: int = 4,
    new_topic_logits: list[float] | None = None,
) -> PrecisionChoice:
    """Time each encoder's float and int8 paths on ``posts`` (decoded once, beforehand), and
    choose int8 for the encoders where it is ``MIN_SPEED_UP`` faster, if the labels hold.

    Labels hold when both shares reach ``MIN_SAME_LABELS``: the check posts' own (posts of the
    training snapshot, which the head fits confidently), and the share expected on posts of
    new topics, whose scores sit nearer the threshold: each check post's shift of the
    calibrated logit, applied to each of ``new_topic_logits`` (quantiles of the recipe's
    out-of-fold calibrated logits, recorded at training). Where all int8 fails, int8 for the
    image encoder alone is tried next (its static quantization moved scores least).
    """
    import numpy as np
    from scipy.special import expit, logit

    model: FakeNewsModel = loaded.model  # type: ignore[assignment]
    features, speed = _time_paths(model, posts, float_p, batch_size)
    cut = float(logit(np.clip(loaded.threshold, 1e-6, 1 - 1e-6)))
    z_float = _calibrated_logits(loaded, features, ())
    record = PrecisionChoice(
        version="",
        cpu=cpu_tag(),
        float_precision=float_p,
        chosen=dict.fromkeys(speed, float_p),
        posts_per_s=speed,
        same_labels=1.0,
        largest_delta_p=0.0,
        check_posts=len(posts),
        int8_sha256={k: e.record["sha256"] for k, e in model.int8_encoders.items()},
        measured_at=datetime.now().astimezone().isoformat(timespec="seconds"),
        check=CHECK,
    )
    for mix in _mixes(speed):  # the record keeps the figures of the last mix tried
        z = _calibrated_logits(loaded, features, mix)
        record.same_labels = round(float(((z >= cut) == (z_float >= cut)).mean()), 4)
        record.new_topic_same_labels = _expected_same_labels(z - z_float, cut, new_topic_logits)
        record.largest_delta_p = round(float(np.abs(expit(z) - expit(z_float)).max()), 4)
        expected = record.new_topic_same_labels
        if min(record.same_labels, 1.0 if expected is None else expected) >= MIN_SAME_LABELS:
            record.chosen |= dict.fromkeys(mix, "int8")
            break
        log.warning(
            "int8 for %s would leave %.2f %% of the check posts' labels unchanged, and %s on "
            "posts of new topics (expected; both must reach %.1f %%): not chosen",
            "+".join(mix), 100 * record.same_labels,
            "?" if expected is None else f"{100 * expected:.2f} %", 100 * MIN_SAME_LABELS,
        )  # fmt: skip
    return record


def _mixes(speed: dict[str, dict[str, float]]) -> list[tuple[str, ...]]:
    """The encoder sets to try in int8, best first: every one where int8 is faster, then the
    image encoder alone."""
    faster = tuple(k for k, s in speed.items() if s["int8"] >= MIN_SPEED_UP * s["float"])
    if not faster:
        return []
    return [faster, ("image",)] if len(faster) > 1 and "image" in faster else [faster]


def _expected_same_labels(
    shift: np.ndarray, cut: float, quantiles: list[float] | None
) -> float | None:
    """The share of labels int8 leaves unchanged on posts scored like ``quantiles``: every
    check post's logit shift applied to every quantile (None: the version recorded none)."""
    import numpy as np

    if not quantiles:
        return None
    q = np.asarray(quantiles, dtype=np.float64)[None, :]
    moved = q + np.asarray(shift, dtype=np.float64)[:, None]
    return round(float(((moved >= cut) == (q >= cut)).mean()), 4)


def _time_paths(
    model: FakeNewsModel, posts: list[PostExample], float_p: str, batch_size: int
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, dict[str, float]]]:
    """Each encoder's features of ``posts`` on its float and int8 paths, and posts/s of each."""
    import torch

    from fnd_core.model.runtime import inference_autocast, module_device

    device = module_device(model)
    float_run: dict[str, Callable] = {"image": model.encode_images, "text": model.encode_texts}
    features: dict[str, dict[str, torch.Tensor]] = {"float": {}, "int8": {}}
    speed: dict[str, dict[str, float]] = {}
    for kind, (batches, undo) in _check_inputs(model, posts, batch_size).items():
        speed[kind] = {}
        for path, run in (("float", float_run[kind]), ("int8", model.int8_encoders[kind])):
            with (
                torch.inference_mode(),
                inference_autocast(device, float_p if path == "float" else "fp32"),
            ):
                run(*batches[0])  # warm-up: first-call allocations are not the path's speed
                started = time.perf_counter()
                out = torch.cat([run(*b).float() for b in batches])
                speed[kind][path] = round(len(posts) / (time.perf_counter() - started), 1)
            features[path][kind] = out[undo]
    return features, speed


def _check_inputs(
    model: FakeNewsModel, posts: list[PostExample], batch_size: int
) -> dict[str, tuple[list[tuple[torch.Tensor, ...]], torch.Tensor]]:
    """Each encoder's input batches for ``posts`` (pictures decoded, texts tokenized in length
    order), and the permutation that puts its outputs back in post order."""
    import torch

    from fnd_core.model.encoders.preprocess import load_pixels

    inputs: dict[str, tuple[list[tuple[torch.Tensor, ...]], torch.Tensor]] = {}
    if model.image_encoder is not None:
        pixels = torch.stack([
            load_pixels(p.image_uri, image_size=model.config.image_size) for p in posts
        ])  # fmt: skip
        inputs["image"] = ([(b,) for b in pixels.split(batch_size)], torch.arange(len(posts)))
    if model.text_encoder is not None:
        order = sorted(range(len(posts)), key=lambda i: len(posts[i].text))
        batches: list[tuple[torch.Tensor, ...]] = []
        for lo in range(0, len(order), 32):
            tokens = model.tokenize([posts[i].text for i in order[lo : lo + 32]])
            batches.append((tokens["input_ids"], tokens["attention_mask"]))
        inputs["text"] = (batches, torch.as_tensor(order).argsort())
    return inputs


def _calibrated_logits(
    loaded: LoadedModel, features: dict[str, dict[str, torch.Tensor]], int8: tuple[str, ...]
) -> np.ndarray:
    """The calibrated logit of each check post, with the encoders in ``int8`` on int8."""
    from fnd_core.model.features.encoding import EncodedFeatures
    from fnd_core.model.features.inference import head_logits

    pick = {k: features["int8" if k in int8 else "float"][k] for k in features["float"]}
    model: FakeNewsModel = loaded.model  # type: ignore[assignment]
    raw = head_logits(model, EncodedFeatures(pick.get("image"), pick.get("text")))
    return loaded.calibration.slope * raw.astype("float64")
