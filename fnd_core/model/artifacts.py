"""Save and load a trained model as a folder: safetensors weights + JSON, sha256-checked.

Layout (local path or fsspec URI such as ``gs://bucket/models/v7``)::

    model.safetensors   weights (never pickle)
    config.json         ModelConfig, threshold, which weights are stored, encoder digests
    metrics.json        optional: the training metrics
    plots/*.png         optional: training curves, ROC, confusion matrix
    novelty.safetensors optional: the training topics novelty is measured against
    manifest.json       sha256 of every file above; written last

The artifact's sha256 is the sha256 of ``manifest.json``, so it covers every file. Loading
checks it first, then each file, and refuses anything that does not match.

A ``char_ngram`` model (:mod:`fnd_core.model.char_ngrams`) uses the same layout: its three
arrays in ``model.safetensors``, its n-gram config in ``config.json`` (``kind``).

With frozen pretrained encoders only the head is stored (~1 MB instead of ~110 MB for the
``offline`` preset); loading rebuilds the encoders from the preset and checks their weight
digests against the ones recorded at training time. Fine-tuned encoders and the random-init
``tiny`` preset are stored in full.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
import torch

from fnd_core.model.calibration import Calibration
from fnd_core.model.char_ngrams import KIND as CHAR_NGRAM
from fnd_core.model.char_ngrams import CharNgramModel, NgramConfig
from fnd_core.model.config import ModelConfig
from fnd_core.model.encoders.backbones import weights_digest
from fnd_core.model.errors import ArtifactIntegrityError
from fnd_core.model.network import ENCODER_PREFIXES, FakeNewsModel, build_model
from fnd_core.model.novelty import NoveltyReference

FORMAT = "fnd-model/1"
WEIGHTS, CONFIG, METRICS, MANIFEST, NOVELTY = (
    "model.safetensors",
    "config.json",
    "metrics.json",
    "manifest.json",
    "novelty.safetensors",
)


@dataclass(frozen=True)
class SavedArtifact:
    """Where a model went and the sha256 to record (``model_versions.artifact_sha256``)."""

    uri: str
    sha256: str
    weights_scope: str  # "head" or "full"
    files: dict[str, str]  # name -> sha256


@dataclass
class LoadedModel:
    """A verified model ready to score, with what was saved beside it."""

    model: FakeNewsModel | CharNgramModel
    config: ModelConfig | NgramConfig
    threshold: float
    metrics: dict | None
    uri: str
    sha256: str
    calibration: Calibration = field(default_factory=Calibration)  # applied to P(fake)
    novelty: NoveltyReference | None = None  # None: saved without one (before sql/020)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_bytes(obj: Any) -> bytes:
    """Canonical JSON (sorted keys): the same content always hashes the same."""
    return (json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n").encode("utf-8")


def _fs(uri: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    """``gs://`` goes through fnd's storage helpers (the deployment's GCP credentials and
    endpoint); other URIs through fsspec with ``storage_options``."""
    options = dict(storage_options or {})
    if uri.startswith(("gs://", "gcs://")) and set(options) <= {"endpoint_url"}:
        from fnd_core.io import storage

        fs, root = storage.filesystem(uri, gcs_endpoint=options.get("endpoint_url"))
        return fs, root.rstrip("/")
    fs, root = fsspec.core.url_to_fs(uri, **options)
    return fs, root.rstrip("/")


def save_model(
    model: FakeNewsModel | CharNgramModel,
    uri: str,
    *,
    threshold: float,
    metrics: Mapping[str, Any] | None = None,
    plots: Mapping[str, bytes] | None = None,
    include_encoders: bool | None = None,
    storage_options: Mapping[str, Any] | None = None,
    calibration: Calibration | None = None,
    novelty: NoveltyReference | None = None,
) -> SavedArtifact:
    """Write ``model`` into the folder ``uri`` and return its sha256.

    Args:
        model: the trained model.
        uri: destination folder (local path or fsspec URI); files in it are overwritten.
        threshold: decision threshold on P(fake) chosen on validation.
        metrics: JSON-ready metrics to keep beside the weights.
        plots: PNG bytes by file name (stored under ``plots/``).
        include_encoders: store encoder weights too. Default: only when they cannot be
            rebuilt from the preset (``tiny`` preset, or fine-tuned encoders).
        storage_options: fsspec options (e.g. a GCS endpoint).
        calibration: the map the scorer applies to P(fake) (:mod:`fnd_core.model.calibration`).
        novelty: the training topics scoring measures each post against
            (:mod:`fnd_core.model.novelty`).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    weights, config = (
        _ngram_files(model, threshold)
        if isinstance(model, CharNgramModel)
        else _network_files(model, threshold, include_encoders)
    )
    config["calibration"] = (calibration or Calibration()).to_dict()
    if novelty is not None:
        from safetensors.numpy import save as save_numpy

        config["novelty"] = novelty.meta()
    files = {WEIGHTS: weights, CONFIG: _json_bytes(config)}
    if novelty is not None:
        files[NOVELTY] = save_numpy(novelty.arrays(), metadata={"format": "np"})
    if metrics is not None:
        files[METRICS] = _json_bytes(metrics)
    for name, png in (plots or {}).items():
        if "/" in name or not name.endswith(".png"):
            raise ValueError(f"plot names must be plain *.png file names, got {name!r}")
        files[f"plots/{name}"] = png
    fs, root = _fs(uri, storage_options)
    fs.makedirs(root, exist_ok=True)
    if plots:
        fs.makedirs(f"{root}/plots", exist_ok=True)
    for name, data in files.items():
        fs.pipe_file(f"{root}/{name}", data)
    digests = {name: sha256_hex(data) for name, data in files.items()}
    manifest = _json_bytes({"format": FORMAT, "files": digests})
    fs.pipe_file(f"{root}/{MANIFEST}", manifest)  # last: a half-written folder has none
    return SavedArtifact(
        uri=uri,
        sha256=sha256_hex(manifest),
        weights_scope=config["weights_scope"],
        files=digests,
    )


def _network_files(
    model: FakeNewsModel, threshold: float, include_encoders: bool | None
) -> tuple[bytes, dict[str, Any]]:
    from safetensors.torch import save as save_safetensors

    if include_encoders is None:
        include_encoders = model.config.preset == "tiny" or model.encoders_finetuned
    state = model.state_dict() if include_encoders else model.head_state_dict()
    weights = save_safetensors(
        {k: v.detach().cpu().contiguous() for k, v in state.items()}, metadata={"format": "pt"}
    )
    return weights, {
        "format": FORMAT,
        "model_config": model.config.to_dict(),
        "threshold": float(threshold),
        "weights_scope": "full" if include_encoders else "head",
        "encoders_finetuned": bool(model.encoders_finetuned),
        "encoders": _encoder_digests(model),
    }


def _ngram_files(model: CharNgramModel, threshold: float) -> tuple[bytes, dict[str, Any]]:
    from safetensors.numpy import save as save_numpy

    weights = save_numpy(model.arrays(), metadata={"format": "np"})
    return weights, {
        "format": FORMAT,
        "kind": CHAR_NGRAM,
        "model_config": model.config.to_dict(),
        "threshold": float(threshold),
        "weights_scope": "full",
    }


def _load_ngram(files: dict[str, bytes], meta: dict[str, Any], uri: str) -> CharNgramModel:
    from safetensors.numpy import load as load_numpy

    try:
        config = NgramConfig.from_dict(meta["model_config"])
        return CharNgramModel.from_arrays(config, load_numpy(files[WEIGHTS]))
    except (KeyError, ValueError) as exc:
        raise ArtifactIntegrityError(f"{uri}: not a valid char n-gram model: {exc}") from exc


def _encoder_digests(model: FakeNewsModel) -> dict[str, dict[str, str]]:
    out = {}
    for modality in ("image", "text"):
        encoder = getattr(model, f"{modality}_encoder")
        if encoder is not None:
            out[modality] = {"name": encoder.name, "sha256": weights_digest(encoder)}
    return out


def read_verified(
    uri: str, expected_sha256: str, storage_options: Mapping[str, Any] | None = None
) -> dict[str, bytes]:
    """Every file of the artifact, after checking the manifest and each file's sha256.

    Raises:
        ArtifactIntegrityError: missing manifest or file, or any sha256 mismatch.
    """
    fs, root = _fs(uri, storage_options)
    try:
        manifest = fs.cat_file(f"{root}/{MANIFEST}")
    except FileNotFoundError as exc:
        raise ArtifactIntegrityError(
            f"no {MANIFEST} in {uri}: not a model artifact, or its save did not finish"
        ) from exc
    actual = sha256_hex(manifest)
    if actual != expected_sha256.lower():
        raise ArtifactIntegrityError(
            f"artifact {uri} has sha256 {actual}, expected {expected_sha256}: it was changed "
            "after it was recorded, or the URI points at another model"
        )
    files = {}
    for name, digest in json.loads(manifest)["files"].items():
        try:
            data = fs.cat_file(f"{root}/{name}")
        except FileNotFoundError as exc:
            raise ArtifactIntegrityError(
                f"{uri}: {name} listed in the manifest is missing"
            ) from exc
        if sha256_hex(data) != digest:
            raise ArtifactIntegrityError(
                f"{uri}: {name} has sha256 {sha256_hex(data)}, the manifest says {digest}: "
                "the file is corrupt or was modified"
            )
        files[name] = data
    return files


def load_model(
    uri: str,
    expected_sha256: str,
    *,
    device: str | torch.device = "cpu",
    storage_options: Mapping[str, Any] | None = None,
    for_inference: bool = False,
) -> LoadedModel:
    """Verify, then rebuild the model saved at ``uri`` (eval mode, on ``device``).

    ``for_inference`` also optimises it for scoring (it can then no longer train).

    Raises:
        ArtifactIntegrityError: the files do not match ``expected_sha256``, or rebuilt
            encoders differ from the ones the head was trained on.
        BackboneUnavailableError: a head-only artifact whose preset weights are missing here.
    """
    from safetensors.torch import load as load_safetensors

    files = read_verified(uri, expected_sha256, storage_options)
    meta = json.loads(files[CONFIG])
    if meta.get("format") != FORMAT:
        raise ArtifactIntegrityError(f"{uri}: unknown artifact format {meta.get('format')!r}")
    if meta.get("kind") == CHAR_NGRAM:
        ngram = _load_ngram(files, meta, uri)
        return LoadedModel(
            model=ngram,
            config=ngram.config,
            threshold=float(meta["threshold"]),
            metrics=json.loads(files[METRICS]) if METRICS in files else None,
            uri=uri,
            sha256=expected_sha256.lower(),
            calibration=_calibration(meta, uri),
            novelty=_novelty(files, meta, uri),
        )
    config = ModelConfig.from_dict(meta["model_config"])
    full = meta["weights_scope"] == "full"
    model = build_model(config, pretrained=not full)
    state = load_safetensors(files[WEIGHTS])
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad_missing = [k for k in missing if full or not k.startswith(ENCODER_PREFIXES)]
    if unexpected or bad_missing:
        raise ArtifactIntegrityError(
            f"{uri}: weights do not fit the config: missing {bad_missing}, unexpected {unexpected}"
        )
    model.encoders_finetuned = bool(meta["encoders_finetuned"])
    digests = {} if full else _check_encoders(model, meta["encoders"], uri)
    model = model.to(device).eval()
    if for_inference:
        model.optimise_for_inference(digests)
    metrics = json.loads(files[METRICS]) if METRICS in files else None
    return LoadedModel(
        model=model,
        config=config,
        threshold=float(meta["threshold"]),
        metrics=metrics,
        uri=uri,
        sha256=expected_sha256.lower(),
        calibration=_calibration(meta, uri),
        novelty=_novelty(files, meta, uri),
    )


def _novelty(files: dict[str, bytes], meta: dict[str, Any], uri: str) -> NoveltyReference | None:
    """The stored novelty reference (none before sql/020, or for fine-tuned encoders)."""
    if NOVELTY not in files or "novelty" not in meta:
        return None
    from safetensors.numpy import load as load_numpy

    try:
        return NoveltyReference.from_stored(meta["novelty"], load_numpy(files[NOVELTY]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactIntegrityError(f"{uri}: unreadable novelty reference: {exc}") from exc


def _calibration(meta: dict[str, Any], uri: str) -> Calibration:
    """The stored calibration (none before round 3: the identity)."""
    try:
        return Calibration.from_dict(meta.get("calibration"))
    except (TypeError, ValueError) as exc:
        raise ArtifactIntegrityError(f"{uri}: unreadable calibration: {exc}") from exc


def _check_encoders(
    model: FakeNewsModel, recorded: dict[str, dict[str, str]], uri: str
) -> dict[str, str]:
    """A head is only valid on the exact encoder weights it was trained on; their digests."""
    rebuilt = _encoder_digests(model)
    for modality, saved in rebuilt.items():
        expected = recorded.get(modality, {}).get("sha256")
        if saved["sha256"] != expected:
            raise ArtifactIntegrityError(
                f"{uri}: the {modality} encoder rebuilt from preset {model.config.preset!r} "
                f"({saved['name']}, weights {saved['sha256'][:12]}) is not the one this head was "
                f"trained on (weights {str(expected)[:12]}); were the backbone packages upgraded?"
            )
    return {modality: saved["sha256"] for modality, saved in rebuilt.items()}
