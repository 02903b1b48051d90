"""The Vertex AI CustomJob that trains a candidate: its specification, as a pure function.

With ``FND_TRAIN_BACKEND=vertex`` the ``train`` step of ``fnd_retrain`` does not train on an
Airflow worker: it asks Vertex AI to run ``fnd train --snapshot ...`` in fnd's own image on a
machine with an accelerator. That job reads the snapshot's posts from fnd's database and the
pictures from the ``gs://`` store, writes the artifact (with its sha256 manifest) to the
``gs://`` model store, registers the candidate and writes a small result file; the DAG then
verifies, evaluates, gates and promotes as for a local run.

The specification is built here, without Google's client libraries, so it can be checked by
plain unit tests: which image, machine, accelerator and arguments, and which settings travel
to the job as ``FND_*`` variables. Secrets never do: a job's specification is readable by
anyone allowed to view Vertex AI jobs, so a database URL with a password is refused.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from fnd_core.settings import Settings

# Settings the job must not inherit: its own (home, store of the job's disk), secrets, and
# Airflow-only knobs. Everything else that differs from the default travels, so the job trains
# exactly as a local run would (preset, image size, folds, gate metric, store, ...).
_NOT_FORWARDED = {
    "home",
    "database_url",
    "data_docs_dir",
    "celery_broker_url",
    "train_queue",
    "train_backend",
    "ingest_schedule",
    "retrain_cron",
    "score_schedule",
    "landing_poke_seconds",
    "gcp_conn_id",
} | {f.name for f in dataclasses.fields(Settings) if f.name.startswith("vertex_")}
JOB_HOME = "/tmp/fnd"  # the job's working folder (feature cache, Data Docs of the snapshot)
MAX_SNAPSHOT_CHARS = 4096  # the snapshot travels as an argument: ids and timestamps only
_MACHINE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$")
_ACCELERATOR = re.compile(r"^[A-Z][A-Z0-9_]*$")
_REGION = re.compile(r"^[a-z]+(-[a-z0-9]+)+$")
_DISPLAY_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class VertexSpecError(ValueError):
    """The settings cannot make a valid Vertex AI job (named setting, what to change)."""


def check_region(region: str) -> str:
    """``region`` if it looks like a Google Cloud region (it becomes part of a host name)."""
    if not _REGION.match(region or ""):
        raise VertexSpecError(f"FND_VERTEX_REGION={region!r} is not a region like us-central1")
    return region


def job_spec(
    settings: Settings,
    *,
    snapshot: dict[str, Any],
    run_id: str,
    epochs: int,
    preset: str | None,
    result_uri: str,
    database_url: str,
) -> dict[str, Any]:
    """The CustomJob resource (REST/JSON field names) that trains this run's candidate.

    Args:
        settings: this deployment's settings (image, machine, accelerator, store, recipe).
        snapshot: the run's snapshot (small JSON from ``retrain.snapshot``).
        run_id: the Airflow run; with the snapshot and recipe it fixes the candidate's version.
        epochs, preset: the recipe (preset None: the job's ``FND_MODEL_PRESET``).
        result_uri: ``gs://`` file the job writes its candidate summary to.
        database_url: fnd's database as the job reaches it; must carry no password.

    Raises:
        VertexSpecError: no image, a local store, a malformed machine or accelerator, a
            password in the database URL, an oversized snapshot.
    """
    if not settings.vertex_image:
        raise VertexSpecError("FND_TRAIN_BACKEND=vertex needs FND_VERTEX_IMAGE (fnd's image)")
    if not settings.store.startswith("gs://"):
        raise VertexSpecError(
            f"FND_TRAIN_BACKEND=vertex needs a gs:// store (FND_STORE), not {settings.store!r}: "
            "the job writes the artifact there and reads the pictures from there"
        )
    if not result_uri.startswith(settings.store.rstrip("/") + "/"):
        raise VertexSpecError(f"result file {result_uri!r} is not inside the store")
    if not _MACHINE.match(settings.vertex_machine_type):
        raise VertexSpecError(
            f"FND_VERTEX_MACHINE_TYPE={settings.vertex_machine_type!r} is not a machine type "
            "like n1-standard-8"
        )
    _check_database_url(database_url)
    snap = json.dumps(snapshot, sort_keys=True, separators=(",", ":"))
    if len(snap) > MAX_SNAPSHOT_CHARS:
        raise VertexSpecError(f"snapshot is {len(snap)} characters, more than {MAX_SNAPSHOT_CHARS}")
    machine: dict[str, Any] = {"machineType": settings.vertex_machine_type}
    count, kind = settings.vertex_accelerator_count, settings.vertex_accelerator_type
    if count < 0 or count > 16:
        raise VertexSpecError(f"FND_VERTEX_ACCELERATOR_COUNT={count} is not in 0..16")
    if count:
        if not _ACCELERATOR.match(kind or ""):
            raise VertexSpecError(
                f"FND_VERTEX_ACCELERATOR_TYPE={kind!r} is not an accelerator like NVIDIA_L4"
            )
        machine |= {"acceleratorType": kind, "acceleratorCount": count}
    args = ["train", "--snapshot", snap, "--run-id", run_id, "--epochs", str(int(epochs))]
    args += ["--result-uri", result_uri]
    if preset:
        args += ["--preset", preset]
    job: dict[str, Any] = {
        "displayName": display_name(run_id),
        "labels": {"app": "fnd", "step": "train"},
        "jobSpec": {
            "workerPoolSpecs": [
                {
                    "machineSpec": machine,
                    "replicaCount": "1",
                    "diskSpec": {"bootDiskType": "pd-ssd", "bootDiskSizeGb": 100},
                    "containerSpec": {
                        "imageUri": settings.vertex_image,
                        "command": ["fnd"],
                        "args": args,
                        "env": job_env(settings, database_url),
                    },
                }
            ],
        },
    }
    if settings.vertex_service_account:
        job["jobSpec"]["serviceAccount"] = settings.vertex_service_account
    if settings.vertex_network:
        job["jobSpec"]["network"] = settings.vertex_network
    return job


def job_env(settings: Settings, database_url: str) -> list[dict[str, str]]:
    """``FND_*`` variables of the job: the settings that differ from the defaults, fnd's
    database (password-less) and the job's own home folder."""
    defaults = Settings()
    env = {"FND_HOME": JOB_HOME, "FND_DATABASE_URL": database_url}
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        if f.name in _NOT_FORWARDED or value is None or value == getattr(defaults, f.name):
            continue
        env[f.metadata["env"]] = str(value).lower() if isinstance(value, bool) else str(value)
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def display_name(run_id: str) -> str:
    """A Vertex-safe display name naming the Airflow run (at most 128 characters)."""
    return ("fnd-train-" + _DISPLAY_NAME_CHARS.sub("-", run_id))[:128]


def _check_database_url(url: str) -> None:
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 — any parse failure is the same user error
        raise VertexSpecError(
            f"fnd's database URL for the Vertex AI job is unreadable: {exc}"
        ) from exc
    if parsed.password:
        raise VertexSpecError(
            "fnd's database URL carries a password, and a Vertex AI job's specification is "
            "readable by anyone who may view jobs: set FND_VERTEX_DATABASE_URL to a "
            "password-less URL (Cloud SQL IAM database authentication, or a socket with peer auth)"
        )


def job_id(resource_name: str) -> str:
    """The job id from ``projects/P/locations/L/customJobs/ID`` (checked: it enters a URL)."""
    job = resource_name.rsplit("/", 1)[-1]
    if not job.isdigit() and not re.fullmatch(r"[a-z0-9-]{1,128}", job):
        raise ValueError(f"unexpected custom job name {resource_name!r}")
    return job
