"""Google Cloud pieces without Airflow: the Vertex AI job spec (a pure function), where
``gs://`` credentials come from outside Airflow, and the remote-training result check."""

from __future__ import annotations

import json

import pytest

from fnd_core.io import gcp
from fnd_core.pipeline import vertex
from fnd_core.settings import Settings

SNAP = {"as_of": "2026-03-01T02:00:00+00:00", "n_labelled": 240, "window": [None, None]}
STORE = "gs://fnd-models/prod"
RESULT = f"{STORE}/training-jobs/run-1/result.json"


def spec(settings: Settings, **kwargs) -> dict:
    args = {
        "snapshot": SNAP,
        "run_id": "scheduled__2026-03-01T02:00:00+00:00",
        "epochs": 40,
        "preset": None,
        "result_uri": RESULT,
        "database_url": "postgresql://fnd-sa@10.1.2.3/fnd",
    }
    return vertex.job_spec(settings, **(args | kwargs))


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({
        "FND_STORE": STORE,
        "FND_VERTEX_IMAGE": "us-docker.pkg.dev/acme/fnd/fnd:1.4",
        "FND_VERTEX_MACHINE_TYPE": "g2-standard-8",
        "FND_VERTEX_ACCELERATOR_TYPE": "NVIDIA_L4",
        "FND_VERTEX_SERVICE_ACCOUNT": "fnd-train@acme.iam.gserviceaccount.com",
        "FND_MODEL_PRESET": "seed",
        "FND_CV_FOLDS": "4",
        "FND_DATABASE_URL": "postgresql://fnd:hunter2@db/fnd",
        "FND_TRAIN_QUEUE": "gpu",
    })  # fmt: skip


def test_job_spec_carries_image_machine_accelerator_and_the_runs_arguments(settings):
    job = spec(settings, preset="tiny", epochs=7)
    [pool] = job["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {
        "machineType": "g2-standard-8",
        "acceleratorType": "NVIDIA_L4",
        "acceleratorCount": 1,
    }
    container = pool["containerSpec"]
    assert container["imageUri"] == "us-docker.pkg.dev/acme/fnd/fnd:1.4"
    assert container["command"] == ["fnd"]
    assert container["args"] == [
        "train", "--snapshot", json.dumps(SNAP, sort_keys=True, separators=(",", ":")),
        "--run-id", "scheduled__2026-03-01T02:00:00+00:00", "--epochs", "7",
        "--result-uri", RESULT, "--preset", "tiny",
    ]  # fmt: skip
    assert job["jobSpec"]["serviceAccount"] == "fnd-train@acme.iam.gserviceaccount.com"
    assert job["displayName"] == "fnd-train-scheduled__2026-03-01T02-00-00-00-00"


def test_job_env_forwards_the_recipe_but_no_secret_or_airflow_knob(settings):
    [pool] = spec(settings)["jobSpec"]["workerPoolSpecs"]
    env = {e["name"]: e["value"] for e in pool["containerSpec"]["env"]}
    assert env == {
        "FND_HOME": vertex.JOB_HOME,
        "FND_DATABASE_URL": "postgresql://fnd-sa@10.1.2.3/fnd",  # the job's, not the worker's
        "FND_STORE": STORE,
        "FND_MODEL_PRESET": "seed",
        "FND_CV_FOLDS": "4",
    }


def test_cpu_only_job_has_no_accelerator(settings):
    cpu = Settings.from_env({"FND_STORE": STORE, "FND_VERTEX_IMAGE": "img",
                             "FND_VERTEX_ACCELERATOR_COUNT": "0"})  # fmt: skip
    [pool] = spec(cpu)["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": "n1-standard-8"}


@pytest.mark.parametrize(
    ("env", "kwargs", "message"),
    [
        ({"FND_VERTEX_IMAGE": ""}, {}, "FND_VERTEX_IMAGE"),
        ({"FND_STORE": "/srv/fnd/store"}, {}, "gs:// store"),
        ({"FND_VERTEX_MACHINE_TYPE": "big; rm -rf /"}, {}, "machine type"),
        ({"FND_VERTEX_ACCELERATOR_TYPE": "nvidia l4"}, {}, "accelerator"),
        ({"FND_VERTEX_ACCELERATOR_COUNT": "99"}, {}, "0..16"),
        ({}, {"database_url": "postgresql://fnd:secret@10.1.2.3/fnd"}, "password"),
        ({}, {"result_uri": "gs://elsewhere/result.json"}, "not inside the store"),
        ({}, {"snapshot": {"as_of": "x", "ids": list(range(2000))}}, "characters"),
    ],
)
def test_job_spec_refuses_what_cannot_run_or_would_leak(settings, env, kwargs, message):
    changed = Settings.from_env({
        "FND_STORE": STORE, "FND_VERTEX_IMAGE": "img", **env,
    })  # fmt: skip
    with pytest.raises(vertex.VertexSpecError, match=message):
        spec(changed, **kwargs)


def test_region_and_job_names_are_checked_before_they_enter_urls():
    assert vertex.check_region("europe-west4") == "europe-west4"
    with pytest.raises(vertex.VertexSpecError):
        vertex.check_region("evil.example.com/")
    assert vertex.job_id("projects/p/locations/us-central1/customJobs/123") == "123"
    with pytest.raises(ValueError):
        vertex.job_id("projects/p/locations/l/customJobs/../../x?y")


def test_emulator_endpoint_defaults_to_storage_emulator_host():
    assert Settings.from_env({"STORAGE_EMULATOR_HOST": "localhost:9023"}).gcs_endpoint == (
        "http://localhost:9023"
    )
    explicit = {"STORAGE_EMULATOR_HOST": "http://a:1", "FND_GCS_ENDPOINT": "http://b:2"}
    assert Settings.from_env(explicit).gcs_endpoint == "http://b:2"
    assert Settings.from_env({}).gcs_endpoint is None


@pytest.fixture
def clean_gcp():
    yield
    gcp.configure(endpoint=None, provider=None)


def test_outside_airflow_credentials_are_adc_and_anonymous_only_on_an_emulator(
    clean_gcp, monkeypatch, tmp_path
):
    gcp.configure(endpoint="http://127.0.0.1:9")
    assert gcp.current_auth().credentials == gcp.ANONYMOUS
    # Real GCS without any credentials: a clear error that names ADC, not an anonymous try.
    gcp.configure(endpoint=None)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(gcp.GcpCredentialsError, match="Application Default Credentials"):
        gcp.current_auth()


def test_a_provider_is_asked_once_per_task_and_again_for_the_next(clean_gcp):
    calls, key = [], ["task-1"]

    def resolve(endpoint):
        calls.append(endpoint)
        return gcp.GcpAuth(gcp.ANONYMOUS, f"project-{len(calls)}", "test provider")

    provider = gcp.CredentialsProvider(resolve=resolve, cache_key=lambda: key[0])
    gcp.configure(endpoint="http://127.0.0.1:9", provider=provider)
    assert gcp.current_auth().project == "project-1"
    assert gcp.current_auth().project == "project-1"  # same task: cached
    key[0] = "task-2"
    assert gcp.current_auth().project == "project-2"
    assert calls == ["http://127.0.0.1:9", "http://127.0.0.1:9"]
    fs = gcp.gcs_filesystem()
    assert fs.project == "project-2"
