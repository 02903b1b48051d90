"""Training a candidate away from Airflow (a Vertex AI job) and taking its result back.

Both ends of ``FND_TRAIN_BACKEND=vertex``: :func:`train_snapshot` is what ``fnd train
--snapshot`` runs inside the job (the same ``retrain.train_candidate`` a local run calls, so
the candidate's version, artifact and registry row are the ones a local run would make);
:func:`read_result` is what the DAG does afterwards: it reads the job's small result file and
accepts it only if it names a registered candidate whose artifact lies in the model store.
The artifact's sha256 is then verified by ``retrain.evaluate`` as for any candidate.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from fnd_core.io import storage
from fnd_core.pipeline import registry
from fnd_core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

MAX_RESULT_BYTES = 64 * 1024
_RUN_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class RemoteTrainingError(RuntimeError):
    """The remote job's result is missing, unreadable, or names something it should not."""


def result_uri(settings: Settings, run_id: str) -> str:
    """Where the job of ``run_id`` writes its candidate summary (inside the store)."""
    return storage.join(settings.store, "training-jobs", _RUN_CHARS.sub("-", run_id), "result.json")


def train_snapshot(
    engine: Engine,
    settings: Settings,
    snapshot_json: str,
    *,
    run_id: str,
    result_uri: str | None,
    **recipe: Any,
) -> dict[str, Any]:
    """Train and register the candidate of a snapshot; write its summary to ``result_uri``."""
    from fnd_core.pipeline import retrain

    try:
        snap = json.loads(snapshot_json)
        snap["as_of"]  # noqa: B018 — a snapshot without its date is not one
    except (ValueError, TypeError, KeyError) as exc:
        raise RemoteTrainingError(f"--snapshot is not a snapshot from fnd_retrain: {exc}") from exc
    if result_uri is not None and not storage.is_within(result_uri, settings.store):
        raise RemoteTrainingError(f"--result-uri {result_uri!r} is not inside the store")
    candidate = retrain.train_candidate(engine, settings, snap, run_id=run_id, **recipe)
    if result_uri is not None:
        body = json.dumps(candidate, sort_keys=True).encode()
        storage.write_bytes(result_uri, body, gcs_endpoint=settings.gcs_endpoint)
    return candidate


def read_result(engine: Engine, settings: Settings, uri: str) -> dict[str, Any]:
    """The candidate summary the job wrote, checked against the registry and the store."""
    try:
        raw = storage.read_bytes(uri, gcs_endpoint=settings.gcs_endpoint)
    except FileNotFoundError as exc:
        raise RemoteTrainingError(
            f"the training job finished but wrote no result at {uri}: see the job's logs"
        ) from exc
    if len(raw) > MAX_RESULT_BYTES:
        raise RemoteTrainingError(f"{uri} is {len(raw)} bytes: not a candidate summary")
    try:
        result = json.loads(raw)
        version = str(result["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteTrainingError(f"{uri} is not a candidate summary: {exc}") from exc
    try:
        registered = registry.get_version(engine, version)
    except LookupError as exc:
        raise RemoteTrainingError(f"{uri} names {version}, which is not registered") from exc
    models = storage.join(settings.store, "models")
    if registered.artifact_uri is None or not storage.is_within(registered.artifact_uri, models):
        raise RemoteTrainingError(
            f"{version}'s artifact {registered.artifact_uri} is not in the model store {models}"
        )
    return {**result, "artifact_uri": registered.artifact_uri}
