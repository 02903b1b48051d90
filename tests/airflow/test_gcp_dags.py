"""Google Cloud the Airflow way, under dag.test() against local stand-ins (tests/gcp_standins.py).

- A file dropped in a ``gs://`` landing prefix (gcp-storage-emulator) is seen by
  fnd_landing_watch's deferrable sensor, which starts fnd_ingest; the posts land and the file
  moves to ``archive/``. Every token used was minted for the key of the Airflow connection
  ``google_cloud_default``; when the test changes the connection, the next run's tokens follow.
- fnd_retrain with ``FND_TRAIN_BACKEND=vertex`` creates a CustomJob on the Vertex AI stand-in,
  which runs the job's ``fnd train`` here; the artifact it wrote to the ``gs://`` model store is
  verified (sha256), gated and promoted.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from fnd_core.io import storage
from fnd_core.stack.demo import generate_batch
from tests.airflow.test_pipeline_dags import load_dag, scalar, task_states
from tests.gcp_standins import TokenStandIn, VertexStandIn, gcs_emulator

pytest.importorskip("gcp_storage_emulator", reason="dev extra: pip install gcp-storage-emulator")
pytestmark = [pytest.mark.airflow, pytest.mark.slow, pytest.mark.timeout(600)]
BUCKET = "fnd-gcp"
ACCOUNT_A = ("fnd-a@project-a.iam.gserviceaccount.com", "project-a")
ACCOUNT_B = ("fnd-b@project-b.iam.gserviceaccount.com", "project-b")


@dataclass
class Gcp:
    endpoint: str
    tokens: TokenStandIn
    landing: str
    store: str
    monkeypatch: pytest.MonkeyPatch

    def use_connection(self, account: tuple[str, str]) -> None:
        """(Re)define the Airflow connection google_cloud_default with this account's key."""
        email, project = account
        conn = {
            "conn_type": "google_cloud_platform",
            "extra": {"keyfile_dict": self.tokens.key(email, project), "project": project},
        }
        self.monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(conn))

    def upload(self, local: Path, prefix: str) -> list[str]:
        """Copy a local folder's files under ``prefix`` (sub-folders first, top level last)."""
        files = sorted(local.rglob("*"), key=lambda p: (len(p.relative_to(local).parts) == 1, p))
        uris = []
        for path in (p for p in files if p.is_file()):
            uri = storage.join(prefix, *path.relative_to(local).parts)
            storage.write_bytes(uri, path.read_bytes(), gcs_endpoint=self.endpoint)
            uris.append(uri)
        return uris


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    with gcs_emulator(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture
def gcp(airflow_db, fnd_env, emulator, monkeypatch) -> Iterator[Gcp]:
    """fnd pointed at gs:// (landing and store) on the emulator, credentials from a
    google_cloud_default connection whose key the token stand-in verifies."""
    tokens = TokenStandIn()
    base = f"gs://{BUCKET}/{uuid.uuid4().hex[:8]}"
    env = {
        "FND_LANDING_DIR": f"{base}/landing",
        "FND_STORE": f"{base}/store",
        "FND_GCS_ENDPOINT": emulator,
        "STORAGE_EMULATOR_HOST": emulator,  # what the provider's hooks and triggers honour
        "FND_LANDING_POKE_SECONDS": "1",
        "FND_CV_FOLDS": "3",
        "FND_CV_REPEATS": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    g = Gcp(emulator, tokens, env["FND_LANDING_DIR"], env["FND_STORE"], monkeypatch)
    g.use_connection(ACCOUNT_A)
    yield g
    tokens.close()


def test_file_landing_on_gcs_starts_ingest_through_the_deferrable_sensor(gcp, clean_db, tmp_path):
    batch = generate_batch(tmp_path / "batch", 30, seed=11)
    gcp.upload(tmp_path / "batch" / "images", f"{gcp.landing}/images")  # not watched: a folder
    data_file = f"{gcp.landing}/{batch.data_file.name}"

    # The file is dropped only once the sensor has poked, found nothing and deferred: when the
    # provider's trigger starts running (observed, not replaced: the trigger runs as shipped).
    from airflow.providers.google.cloud.triggers.gcs import GCSBlobTrigger

    deferred = threading.Event()
    shipped_run = GCSBlobTrigger.run

    def observed_run(self):
        deferred.set()
        return shipped_run(self)

    def drop() -> None:
        if deferred.wait(120):
            storage.write_bytes(data_file, batch.data_file.read_bytes(), gcs_endpoint=gcp.endpoint)

    gcp.monkeypatch.setattr(GCSBlobTrigger, "run", observed_run)
    dropper = threading.Thread(target=drop, daemon=True)
    dropper.start()
    watch = load_dag("fnd_landing_watch").test(run_conf={"wait_for_ingest": False})
    dropper.join(5)
    states = task_states(watch)
    assert deferred.is_set(), "the sensor never deferred"
    assert watch.state == "success", states
    assert states == {"wait_for_landing_files": "success", "start_ingest": "success"}

    # The watch started an fnd_ingest run on the landing zone; the scheduler would run it:
    # here dag.test() runs fnd_ingest with that run's conf.
    [triggered] = [r for r in _runs_of("fnd_ingest") if (r.conf or {}).get("path") == gcp.landing]
    assert triggered.conf["path"] == gcp.landing
    ingest = load_dag("fnd_ingest").test(run_conf=triggered.conf)
    assert ingest.state == "success", task_states(ingest)
    assert scalar(clean_db, "select count(*) from fnd.posts") == 30
    assert scalar(clean_db, "select min(image_uri) from fnd.posts").startswith(gcp.store + "/")
    assert storage.list_files(gcp.landing, gcs_endpoint=gcp.endpoint) == []
    [archived] = storage.list_files(f"{gcp.landing}/archive", gcs_endpoint=gcp.endpoint)
    assert archived.endswith(f"-{batch.data_file.name}")  # archive/batchN-<name>
    # Every token the sensor, the trigger's hook and ingest's gcsfs used came from the
    # connection's key (the token stand-in only accepts grants signed by a key it issued).
    assert gcp.tokens.grants and set(gcp.tokens.grants) == {ACCOUNT_A[0]}

    # The connection changes: the next run's gs:// access uses the new key.
    before = len(gcp.tokens.grants)
    gcp.use_connection(ACCOUNT_B)
    again = generate_batch(tmp_path / "again", 20, seed=12)
    gcp.upload(tmp_path / "again", gcp.landing)
    assert load_dag("fnd_ingest").test().state == "success"
    assert scalar(clean_db, "select count(*) from fnd.posts") == 50
    assert not storage.exists(f"{gcp.landing}/{again.data_file.name}", gcs_endpoint=gcp.endpoint)
    assert gcp.tokens.grants[before:] and set(gcp.tokens.grants[before:]) == {ACCOUNT_B[0]}


def test_landing_watch_waits_for_its_ingest_run_by_default(airflow_db, fnd_env, monkeypatch):
    """The production shape of the watch (dag.test() has no scheduler to finish the run it
    triggers, so the test above turns the wait off): both steps deferrable, the wait on."""
    monkeypatch.setenv("FND_LANDING_DIR", "gs://bucket/landing")
    dag = load_dag("fnd_landing_watch")
    sensor, start = dag.get_task("wait_for_landing_files"), dag.get_task("start_ingest")
    assert (sensor.bucket, sensor.object, sensor.use_glob) == ("bucket", "landing/[!.]*", True)
    assert sensor.deferrable and start.deferrable
    assert dag.params["wait_for_ingest"] is True
    assert start.wait_for_completion == "{{ params.wait_for_ingest }}"
    assert dag.render_template_as_native_obj


def test_retrain_on_vertex_standin_promotes_the_verified_artifact(gcp, clean_db, tmp_path):
    from google.cloud.aiplatform_v1.types import AcceleratorType

    from fnd_core.model.artifacts import WEIGHTS
    from fnd_core.model.errors import ArtifactIntegrityError
    from fnd_core.pipeline import registry, retrain
    from fnd_core.settings import Settings

    generate_batch(tmp_path / "batch", 120, seed=13)
    gcp.upload(tmp_path / "batch", gcp.landing)
    assert load_dag("fnd_ingest").test().state == "success"

    vertex = VertexStandIn(gcp.tokens, tmp_path / "job")
    env = {
        "FND_TRAIN_BACKEND": "vertex",
        "FND_VERTEX_ENDPOINT": vertex.endpoint,
        "FND_VERTEX_REGION": "europe-west4",
        "FND_VERTEX_IMAGE": "europe-west4-docker.pkg.dev/project-a/fnd/fnd:test",
        "FND_VERTEX_MACHINE_TYPE": "g2-standard-8",
        "FND_VERTEX_ACCELERATOR_TYPE": "NVIDIA_L4",
        "FND_VERTEX_ACCELERATOR_COUNT": "1",
        "FND_VERTEX_POLL_SECONDS": "1",
    }
    for key, value in env.items():
        gcp.monkeypatch.setenv(key, value)
    try:
        run = load_dag("fnd_retrain").test(
            run_conf={"preset": "tiny", "epochs": 3, "force_promote": True, "min_accuracy": 0.6}
        )
    finally:
        vertex.close()
    states = task_states(run)
    [job] = vertex.jobs.values()
    assert run.state == "success", (states, job.output[-3000:])
    assert states["train_on_vertex"] == "success" and states["promote"] == "success", states
    assert "train" not in states  # the local training task is not part of this DAG

    # The request: the connection's account and project, the region, image, machine,
    # accelerator and the `fnd train` arguments of this run.
    assert job.caller == ACCOUNT_A[0]
    assert job.name.startswith("projects/project-a/locations/europe-west4/customJobs/")
    [pool] = job.body["jobSpec"]["workerPoolSpecs"]
    # Google's REST client sends enums as numbers: read the number as the API defines it.
    accelerator = AcceleratorType(pool["machineSpec"]["acceleratorType"]).name
    assert pool["machineSpec"] | {"acceleratorType": accelerator} == {
        "machineType": "g2-standard-8",
        "acceleratorType": "NVIDIA_L4",
        "acceleratorCount": 1,
    }
    container = pool["containerSpec"]
    assert container["imageUri"] == env["FND_VERTEX_IMAGE"]
    args = container["args"]
    assert args[0] == "train" and args[args.index("--run-id") + 1] == run.run_id
    assert args[args.index("--epochs") + 1] == "3" and args[args.index("--preset") + 1] == "tiny"
    assert json.loads(args[args.index("--snapshot") + 1])["n_labelled"] == 120
    job_env = {e["name"]: e["value"] for e in container["env"]}
    assert job_env["FND_STORE"] == gcp.store and job_env["FND_CV_FOLDS"] == "3"
    assert "FND_TRAIN_BACKEND" not in job_env and "FND_VERTEX_IMAGE" not in job_env
    assert ":" not in job_env["FND_DATABASE_URL"].split("@")[0].split("//")[1]  # no password

    # The artifact the job wrote to the gs:// store is the champion, and it is verified.
    with clean_db.connect() as conn:
        version, status, uri, sha = conn.execute(sa.text(
            "select version, status, artifact_uri, artifact_sha256 from fnd.model_versions"
        )).one()  # fmt: skip
    assert status == "champion" and uri == f"{gcp.store}/models/{version}"
    assert storage.exists(f"{uri}/manifest.json", gcs_endpoint=gcp.endpoint)
    weights = f"{uri}/{WEIGHTS}"
    storage.write_bytes(weights, b"tampered", gcs_endpoint=gcp.endpoint)
    settings = Settings.from_env()
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        retrain.evaluate(clean_db, settings, version)
    assert registry.get_version(clean_db, version).artifact_sha256 == sha


def test_connection_fallbacks(airflow_db, monkeypatch, tmp_path):
    """No google_cloud_default: ADC (None); a missing connection named on purpose: an error;
    an anonymous connection: anonymous; a key-less one against an emulator: anonymous."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    from fnd_airflow.gcp import connection_auth
    from fnd_core.io import gcp

    monkeypatch.delenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", raising=False)
    assert connection_auth("google_cloud_default", None) is None
    with pytest.raises(AirflowNotFoundException):
        connection_auth("fnd_gcp_prod", None)
    anonymous = {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True}}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(anonymous))
    assert connection_auth("google_cloud_default", None).credentials == gcp.ANONYMOUS
    keyless = {"conn_type": "google_cloud_platform", "extra": {}}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(keyless))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    assert connection_auth("google_cloud_default", "http://127.0.0.1:9").credentials == "anon"


def _runs_of(dag_id: str) -> list:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == dag_id).all()
        for r in runs:
            session.expunge(r)
    return runs
